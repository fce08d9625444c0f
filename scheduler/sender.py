"""The outbox sender: claims due rows atomically and delivers them at each channel's rate.

- Rows are claimed in one transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the single
  `BEGIN IMMEDIATE` writer on SQLite) and marked sent in small groups right after the sends
  (max(10, SENDER_CONCURRENCY) rows), so a crash repeats at most the sends in flight; claimed
  rows of a dead sender are taken again once their lease (`SENDER_LEASE_SECONDS`) runs out.
- At most `SEND_RATE_PER_SECOND` sends start in any window of a little over one second per
  channel, spaced evenly, and at most one per second per chat.
- 429 → the channel pauses `retry_after` and the row is retried; 403 → the identity is marked
  unreachable and the row 'unreachable'; a rejected message → 'failed' at once; other errors →
  retried with exponential backoff, 'failed' with the reason after `SENDER_MAX_ATTEMPTS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from bot.core import RateLimited, RejectedMessage, Unreachable, reply_from_body

log = logging.getLogger(__name__)

Monotonic = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

#: The rate window is this much longer than a second, so jitter between our clock and the
#: platform's never shows more than the ceiling inside any one-second window.
WINDOW_MARGIN = 0.03
CHAT_GAP = 1.0
MAX_RATE_LIMITED_TRIES = 20
MAX_BACKOFF_SECONDS = 600


class RateLimiter:
    """At most `rate` starts in any `1 + WINDOW_MARGIN` seconds, evenly spaced; pausable."""

    def __init__(self, rate: float, monotonic: Monotonic, sleep: Sleep) -> None:
        self.rate = rate
        self.cap = max(1, math.floor(rate))
        self.window = (1.0 + WINDOW_MARGIN) * max(1.0, self.cap / rate)
        self.interval = 1.0 / rate
        self.monotonic = monotonic
        self.sleep = sleep
        self.starts: deque[float] = deque()
        self.next_at = 0.0
        self.paused_until = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait for a send slot."""
        async with self._lock:
            while True:
                now = self.monotonic()
                while self.starts and now - self.starts[0] >= self.window:
                    self.starts.popleft()
                wait = max(self.paused_until, self.next_at) - now
                if len(self.starts) >= self.cap:
                    wait = max(wait, self.starts[0] + self.window - now)
                if wait <= 0:
                    break
                await self.sleep(wait)
            self.starts.append(now)
            self.next_at = now + self.interval

    def pause(self, seconds: float) -> None:
        """Send nothing on this channel for `seconds` (the platform said 429)."""
        self.paused_until = max(self.paused_until, self.monotonic() + seconds)


@dataclass
class SenderState:
    """Per-process sending state: one limiter per channel, the last send per chat."""

    monotonic: Monotonic = time.monotonic
    sleep: Sleep = asyncio.sleep
    limiters: dict[str, RateLimiter] = field(default_factory=dict)
    chat_last: dict[tuple[str, str], float] = field(default_factory=dict)

    def limiter(self, channel: str, rate: float) -> RateLimiter:
        """The limiter of a channel (created on first use)."""
        limiter = self.limiters.get(channel)
        if limiter is None or limiter.rate != rate:
            limiter = self.limiters[channel] = RateLimiter(rate, self.monotonic, self.sleep)
        return limiter

    def forget_old_chats(self) -> None:
        """Drop per-chat times older than the chat gap (keeps the dict small)."""
        if len(self.chat_last) > 5000:
            horizon = self.monotonic() - CHAT_GAP
            self.chat_last = {k: v for k, v in self.chat_last.items() if v > horizon}


def sender_state(app, monotonic: Monotonic | None = None, sleep: Sleep | None = None):
    """The app's sender state (created on first use; clock and sleep may be injected)."""
    state = getattr(app, "sender_state", None)
    if state is None:
        state = SenderState()
        app.sender_state = state
    if monotonic is not None:
        state.monotonic = monotonic
    if sleep is not None:
        state.sleep = sleep
    return state


async def drain_once(
    app,
    channel: str | None = None,
    limit: int = 100,
    *,
    monotonic: Monotonic | None = None,
    sleep: Sleep | None = None,
) -> int:
    """Claim up to `limit` due outbox rows and send them; returns the number sent."""
    state = sender_state(app, monotonic, sleep)
    names = [channel] if channel else app.channels.names()
    if not names:
        return 0
    settings = app.settings
    now = app.clock.now()
    async with app.uow() as uow:
        rows = await uow.claims.claim(
            names, now, limit, timedelta(seconds=settings.sender_lease_seconds)
        )
        await uow.commit()
    if not rows:
        return 0
    first, later = [], []
    seen: set[tuple[str, str]] = set()
    for row in rows:
        key = (row.channel, row.user_ref)
        (later if key in seen else first).append(row)
        seen.add(key)
    if later:  # one message per chat per round: the rest wait for the next drain
        async with app.uow() as uow:
            for row in later:
                await uow.claims.release(row.id, now)
            await uow.commit()
    gate = asyncio.Semaphore(settings.sender_concurrency)
    done = _SentRows(app, flush_every=max(10, settings.sender_concurrency))
    try:
        results = await asyncio.gather(*(_deliver(app, state, row, gate, done) for row in first))
    finally:
        await done.flush()
    state.forget_old_chats()
    return sum(results)


class _SentRows:
    """Marks sent rows in small groups (one UPDATE per group) instead of a commit per send."""

    def __init__(self, app, flush_every: int) -> None:
        self.app = app
        self.flush_every = flush_every
        self.ids: list[int] = []
        self._lock = asyncio.Lock()

    async def add(self, row_id: int) -> None:
        """Remember a sent row; write the group once it is full."""
        self.ids.append(row_id)
        if len(self.ids) >= self.flush_every:
            await self.flush()

    async def flush(self) -> None:
        """Write every remembered row as sent."""
        async with self._lock:
            ids, self.ids = self.ids, []
            if not ids:
                return
            async with self.app.uow() as uow:
                await uow.claims.settle_sent(ids, self.app.clock.now())
                await uow.commit()


async def _deliver(app, state: SenderState, row, gate: asyncio.Semaphore, done) -> int:
    settings = app.settings
    channel = app.channels.get(row.channel)
    limiter = state.limiter(row.channel, settings.send_rate_per_second)
    reply = reply_from_body(row.body)
    chat = (row.channel, row.user_ref)
    async with gate:
        for _ in range(MAX_RATE_LIMITED_TRIES):
            gap = state.chat_last.get(chat, -math.inf) + CHAT_GAP - state.monotonic()
            if gap > 0:
                await state.sleep(gap)
            await limiter.acquire()
            state.chat_last[chat] = state.monotonic()
            try:
                await channel.send(row.user_ref, reply)
            except RateLimited as error:
                log.info("429 on %s: pausing %s s", row.channel, error.retry_after)
                limiter.pause(float(error.retry_after))
                continue
            except Unreachable as error:
                await _settle(app, row, "unreachable", str(error), unreachable=True)
                return 0
            except RejectedMessage as error:
                log.warning("outbox row %s rejected: %s", row.id, error)
                await _settle(app, row, "failed", str(error))
                return 0
            except Exception as error:  # network, server errors, bugs: bounded retries
                await _retry_later(app, row, f"{type(error).__name__}: {error}")
                return 0
            await done.add(row.id)
            return 1
    await _release(app, row, "rate limited too often", delay=1.0, count=False)
    return 0


async def _settle(app, row, status: str, error: str | None, unreachable: bool = False) -> None:
    now = app.clock.now()
    async with app.uow() as uow:
        await uow.claims.settle(row.id, status, now, error)
        if unreachable:
            await uow.learners.mark_unreachable(row.channel, row.user_ref, now)
        await uow.commit()


async def _release(app, row, error: str, delay: float, count: bool) -> None:
    async with app.uow() as uow:
        when = app.clock.now() + timedelta(seconds=delay)
        await uow.claims.release(row.id, when, error, count_attempt=count)
        await uow.commit()


async def _retry_later(app, row, error: str) -> None:
    attempts = row.attempts + 1
    if attempts >= app.settings.sender_max_attempts:
        log.error("outbox row %s failed after %s attempts: %s", row.id, attempts, error)
        async with app.uow() as uow:
            await uow.claims.release(row.id, app.clock.now(), error, count_attempt=True)
            await uow.claims.settle(row.id, "failed", app.clock.now(), error)
            await uow.commit()
        return
    delay = min(2.0**attempts, MAX_BACKOFF_SECONDS)
    log.info("outbox row %s: %s; retry %s in %s s", row.id, error, attempts, delay)
    await _release(app, row, error, delay=delay, count=True)


async def report_broadcasts(app) -> int:
    """Send delivery reports of announcements that are done."""
    from handlers.announce import report_finished

    async with app.uow() as uow:
        done = await report_finished(uow, app.settings, app.clock.now())
        await uow.commit()
    return done


class Sender:
    """The long-running sender of `coursebot run`: drain, report, wait, repeat."""

    def __init__(self, app, channel: str | None = None) -> None:
        self.app = app
        self.channel = channel
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        app.sender = self

    def wake(self) -> None:
        """Drain now instead of at the next poll (new rows were written)."""
        self._wake.set()

    async def run_once(self) -> int:
        """One drain and one check for finished announcements; returns rows sent."""
        settings = self.app.settings
        sent = await drain_once(self.app, self.channel, settings.sender_batch_size)
        await report_broadcasts(self.app)
        return sent

    async def run(self) -> None:
        """Loop until stopped."""
        while not self._stop.is_set():
            try:
                sent = await self.run_once()
            except Exception:
                log.exception("sender round failed; retrying")
                sent = 0
            if sent == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wake.wait(), self.app.settings.sender_poll_seconds
                    )
                self._wake.clear()

    def start(self) -> asyncio.Task:
        """Run in the background."""
        self._task = asyncio.create_task(self.run(), name="outbox-sender")
        return self._task

    async def stop(self, timeout: float = 10.0) -> None:
        """Finish the current round (up to `timeout`), then stop."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except TimeoutError:
                log.warning("sender did not stop in %s s; cancelled", timeout)
        if getattr(self.app, "sender", None) is self:
            self.app.sender = None
