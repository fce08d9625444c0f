"""Group commit: units of work submitted at the same time run in one transaction.

SQLite has one writer at a time, so concurrent chat updates queue for its write lock anyway;
a BEGIN, a COMMIT and the turn-taking around them cost more than an update's own statements.
`GroupCommit` collects what was submitted while the previous group ran and runs it as one
group, one item after another in one transaction (`run_group`). A group that fails as a whole
(a handler raised, a unique race) is rolled back and its items run again one by one
(`run_one`), each with the error handling it would have had alone. An item submitted when
nothing is running starts a group of its own at once: under light load nothing waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")
#: Items run in one transaction at most (the write lock is held while they run).
MAX_GROUP = 32


class GroupCommit(Generic[Item, Result]):
    """Runs submitted items in groups: `run_group(items)` returns their results in order (and
    commits once); when it raises, `run_one(item)` runs each item alone."""

    def __init__(
        self,
        run_group: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        run_one: Callable[[Item], Awaitable[Result]],
        max_group: int = MAX_GROUP,
    ) -> None:
        self._run_group = run_group
        self._run_one = run_one
        self._max = max_group
        self._waiting: list[tuple[Item, asyncio.Future]] = []
        self._runner: asyncio.Task | None = None
        #: The group running now: its members and its task.
        self._group: tuple[list[tuple[Item, asyncio.Future]], asyncio.Task] | None = None
        #: Groups run and items run in them (for benchmarks and tests).
        self.groups = 0
        self.grouped = 0

    async def submit(self, item: Item) -> Result:
        """Run `item` in the next group and return its result (or raise its error)."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._runner is None or self._runner.done():
            # A task of its own: a submitter cancelled while waiting does not cancel the
            # others' group; its item still commits (a durable update keeps its replies).
            self._runner = asyncio.create_task(self._run(), name="group-commit")
        try:
            return await future
        except asyncio.CancelledError:
            self._stop_if_abandoned()
            raise

    def _stop_if_abandoned(self) -> None:
        """Every submitter of the group at hand was cancelled (the channel aborts, as in a
        crash): cancel the group too, so its transaction rolls back as a crash's would."""
        if self._group is None:
            return
        members, task = self._group
        if all(future.done() for _, future in members) and not task.done():
            task.cancel()

    async def _run(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting[: self._max], self._waiting[self._max :]
                self._group = (group, asyncio.create_task(self._run_together(group)))
                await asyncio.wait({self._group[1]})
        finally:  # cancelled itself (the loop is closing): nobody waits for ever
            if self._group is not None and not self._group[1].done():
                self._group[1].cancel()
            for _, future in self._waiting:
                future.cancel()
            self._group = None

    async def _run_together(self, group: list[tuple[Item, asyncio.Future]]) -> None:
        if len(group) == 1:
            await self._run_alone(*group[0])
            return
        try:
            results = await self._run_group([item for item, _ in group])
        except Exception as error:  # rolled back: each runs again with its own handling
            log.info("a group of %s failed (%s); running them one by one", len(group), error)
            for item, future in group:
                await self._run_alone(item, future)
            return
        self.groups += 1
        self.grouped += len(group)
        for (_, future), result in zip(group, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _run_alone(self, item: Item, future: asyncio.Future) -> None:
        try:
            result = await self._run_one(item)
        except Exception as error:
            if not future.done():
                future.set_exception(error)
            return
        if not future.done():
            future.set_result(result)

    async def aclose(self) -> None:
        """Wait for the group at hand (items already submitted still run)."""
        runner = self._runner
        if runner is not None and not runner.done():
            await asyncio.gather(runner, return_exceptions=True)
