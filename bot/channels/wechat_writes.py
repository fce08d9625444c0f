"""Write-behind for the WeChat channel's small per-user state (the numbered options shown, the
"last seen" stamp): kept in memory at once, written to the database in one batched transaction
shortly after, off the passive reply's path.

On SQLite every write transaction takes the one write lock; two extra transactions per message
(options, last seen) queued behind every other message's dispatch were most of a passive
reply's time under load. Batched, a burst of replies costs one transaction. Until the batch is
committed, this process answers from memory (`pending`); another worker reads the database,
which lags by at most one batch (tens of milliseconds, far below a person's typing). A crash
loses at most the last batch: a typed number then reads the options shown before (payloads are
re-checked anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

log = logging.getLogger(__name__)

#: Seconds a write waits for others to join its batch.
BATCH_DELAY = 0.02
#: Seconds before retrying after a failed batch.
RETRY_DELAY = 1.0

Writer = Callable[[object, dict[str, list], dict[str, datetime]], Awaitable[None]]


class WriteBehind:
    """Pending options and last-seen stamps, flushed in one transaction per batch."""

    def __init__(self, uow_factory, write: Writer, delay: float = BATCH_DELAY, turn=None) -> None:
        self.uow = uow_factory
        self.turn = turn or contextlib.nullcontext  # the channel's turn to write
        self.write = write
        self.delay = delay
        self.options: dict[str, list] = {}
        self.seen: dict[str, datetime] = {}  # user -> when they wrote (not when flushed)
        self._writing: dict[str, list] = {}
        self._task: asyncio.Task | None = None
        self.batches = 0

    def put_options(self, user_ref: str, shown: list) -> None:
        """Store the options shown to a user (soon)."""
        self.options[user_ref] = shown
        self._wake()

    def touch(self, user_ref: str) -> None:
        """Store that a user wrote to us now (soon)."""
        # Stamped now: a stamp taken at the flush could postdate the learner's next message on
        # another channel, which then would not count as the channel used last.
        self.seen[user_ref] = datetime.now(UTC)
        self._wake()

    def pending(self, user_ref: str) -> list | None:
        """Options of a user not yet committed (newest first), None when none are pending."""
        return self.options.get(user_ref) or self._writing.get(user_ref)

    def _wake(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self.options or self.seen:
            await asyncio.sleep(self.delay)
            if not await self.flush():
                await asyncio.sleep(RETRY_DELAY)

    async def flush(self) -> bool:
        """Write everything pending in one transaction; False when it failed (kept)."""
        options, seen = self.options, self.seen
        if not options and not seen:
            return True
        self.options, self.seen, self._writing = {}, {}, options
        try:
            async with self.turn(), self.uow() as uow:
                await self.write(uow, options, seen)
                await uow.commit()
        except Exception:  # noqa: BLE001 - kept for the next batch
            log.exception("writing WeChat state failed; retrying")
            self.options = {**options, **self.options}
            self.seen = {**seen, **self.seen}
            return False
        finally:
            self._writing = {}
        self.batches += 1
        return True

    async def close(self) -> None:
        """Write what is pending now and stop."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
