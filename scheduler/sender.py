"""The outbox sender: claims due rows atomically and delivers them at each channel's rate.

- Rows are claimed in one transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the single
  `BEGIN IMMEDIATE` writer on SQLite) and settled in small groups right after the sends; at
  most max(10, SENDER_CONCURRENCY) sent rows wait to be written, so a crash repeats at most
  those and the sends in flight; claimed rows of a dead sender are taken again once their lease
  (`SENDER_LEASE_SECONDS`) runs out. Rows of identities already flagged unreachable are settled
  'unreachable' at the claim, without a call.
- Per channel, a send holds its place in the rate window from its start until one second after
  its answer, so the platform never sees more than `SEND_RATE_PER_SECOND` sends in any second,
  whatever the network delay; sends are paced evenly, with a short catch-up after a stall. At
  most one send per second per chat, counted from the answer too.
- Several sender processes (PostgreSQL) share both limits through the database as well
  (`SharedLimits`, `storage.send_limits`): the ceiling per channel and 1 msg/s per chat hold
  for all of them together. SQLite has one process and keeps to the in-process limiter.
- Paid broadcasts (`TELEGRAM_PAID_BROADCAST`) have a limiter and shared slots of their own at
  `TELEGRAM_PAID_BROADCAST_RATE`; at that speed the shared limits are taken in bulk: the chat
  turns of a round in one statement, slots `PAID_BLOCK` at a time (`SlotBlocks`), and sent
  rows settled 50 ms of sends at a time.
- 429 → the channel pauses `retry_after` (from the answer) and the row is retried; 403 → the
  identity is marked unreachable and the row 'unreachable'; a rejected message → 'failed' at
  once; other errors → retried with exponential backoff, 'failed' after `SENDER_MAX_ATTEMPTS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from bot.core import RateLimited, RejectedMessage, Unreachable, reply_from_body
from services.announcements import report_finished
from services.outbox import Outgoing, enqueue

log = logging.getLogger(__name__)

Monotonic = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

#: How far behind its even pacing a channel may fall and then catch up in a burst (seconds).
CATCH_UP_SECONDS = 0.25
CHAT_GAP = 1.0
MAX_RATE_LIMITED_TRIES = 20
MAX_BACKOFF_SECONDS = 600


class RateLimiter:
    """At most `rate` sends in any second on the platform's clock, paced evenly; pausable.

    The platform stamps a send somewhere between our start and our receipt of the answer. A
    new send may start only while fewer than `cap` earlier sends are unanswered or answered
    less than `window` ago, so no platform-side window of that length ever holds more than
    `cap`, with no margin to guess. Pacing is a virtual schedule one `interval` per send that
    may be up to `CATCH_UP_SECONDS` ahead of it (a token bucket), so a short stall between
    batches is made up; a pause gives no catch-up.
    """

    def __init__(self, rate: float, monotonic: Monotonic, sleep: Sleep) -> None:
        self.rate = rate
        self.cap = max(1, math.floor(rate))
        self.window = max(1.0, self.cap / rate)
        self.interval = 1.0 / rate
        self.catch_up = CATCH_UP_SECONDS
        self.monotonic = monotonic
        self.sleep = sleep
        self.unanswered = 0
        #: Answer times of the sends still inside the window, oldest first (the clock only
        #: goes forward, so appending keeps them sorted and the oldest is always at the left).
        self.answers: deque[float] = deque()
        self.due = -math.inf
        self.paused_until = 0.0
        self._lock = asyncio.Lock()
        self._answered = asyncio.Event()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a send slot; the body is the send, which holds the slot until answered."""
        await self._acquire()
        try:
            yield
        finally:
            self.unanswered -= 1
            self.answers.append(self.monotonic())
            self._answered.set()

    async def _acquire(self) -> None:
        async with self._lock:
            while True:
                now = self.monotonic()
                wait = self._wait(now)
                if wait is None:
                    self._answered.clear()
                    await self._answered.wait()
                elif wait > 0:
                    await self.sleep(wait)
                else:
                    break
            self.unanswered += 1
            self.due = max(self.due, now) + self.interval

    def _wait(self, now: float) -> float | None:
        """Seconds until a send may start (None: wait for an answer)."""
        answers = self.answers
        while answers and answers[0] + self.window <= now:
            answers.popleft()
        wait = max(self.paused_until, self.due - self.catch_up) - now
        if self.unanswered + len(answers) < self.cap:
            return wait
        if not answers:
            return None
        return max(wait, answers[0] + self.window - now)

    def pause(self, seconds: float) -> None:
        """Send nothing on this channel for `seconds` from now (the platform said 429)."""
        self.paused_until = max(self.paused_until, self.monotonic() + seconds)
        self.due = max(self.due, self.paused_until + self.catch_up)


#: How long a send may hold a shared slot or chat turn before it counts as lost (a crash).
SHARED_HOLD_SECONDS = 30.0
#: How long a shared chat turn is kept once free (the table holds recent chats only).
SHARED_CHAT_KEEP_SECONDS = 60.0


class SharedLimits:
    """The ceiling per channel and the 1 msg/s per chat of every sender process together,
    through the database (`storage.send_limits`, PostgreSQL): on top of each process's own
    limiter, a send also takes one of the channel's shared slots, and the chat's shared turn.
    """

    def __init__(self, app, sleep: Sleep) -> None:
        self.app = app
        self.sleep = sleep
        self._caps: dict[str, int] = {}
        self._sends = 0
        self._blocks: dict[str, SlotBlocks] = {}

    async def _run(self, op: str, *args):
        async with self.app.uow() as uow:
            result = await getattr(uow.send_limits, op)(*args)
            await uow.commit()
        return result

    @contextlib.asynccontextmanager
    async def turn(self, channel: str, user_ref: str, rate: float, local) -> AsyncIterator[None]:
        """Hold the chat's shared turn, then the `local` limiter's slot, then one of the
        channel's shared slots, for the body (the send). The shared slot frees one window and
        the chat `CHAT_GAP` after the body, both given back in one transaction."""
        while (wait := await self._run("take_chat", channel, user_ref, SHARED_HOLD_SECONDS)) > 0:
            await self.sleep(min(wait, CHAT_GAP))
        slot, cap = None, max(1, math.floor(rate))
        try:
            async with local:
                slot = await self._take_slot(channel, cap)
                yield
        finally:
            async with self.app.uow() as uow:
                if slot is not None:
                    await uow.send_limits.free_slot(channel, slot, max(1.0, cap / rate))
                await uow.send_limits.free_chat(channel, user_ref, CHAT_GAP)
                await uow.commit()
            await self._tidy()

    async def _take_slot(self, channel: str, cap: int) -> int:
        if self._caps.get(channel) != cap:
            await self._run("ensure_slots", channel, cap)
            self._caps[channel] = cap
        while True:
            taken, wait = await self._run("take_slot", channel, SHARED_HOLD_SECONDS)
            if taken is not None:
                return taken
            await self.sleep(min(max(wait, 0.005), 1.0))

    async def _tidy(self) -> None:
        self._sends += 1
        if self._sends % 1000 == 0:
            await self._run("forget_chats", SHARED_CHAT_KEEP_SECONDS)

    def blocks(self, channel: str, rate: float) -> SlotBlocks:
        """The block taker of a channel's shared slots (paid broadcasts)."""
        blocks = self._blocks.get(channel)
        if blocks is None or blocks.rate != rate:
            blocks = self._blocks[channel] = SlotBlocks(self, channel, rate)
        return blocks

    async def take_chats(self, rows) -> tuple[list, list]:
        """Take the shared turns of the rows' chats (distinct), one statement per channel;
        returns the rows whose turn was taken and the rest (another sender is at them)."""
        by_channel: dict[str, list] = {}
        for row in rows:
            by_channel.setdefault(row.channel, []).append(row)
        taken, busy = [], []
        async with self.app.uow() as uow:
            for channel, group in by_channel.items():
                refs = [row.user_ref for row in group]
                got = await uow.send_limits.take_chats(channel, refs, SHARED_HOLD_SECONDS)
                for row in group:
                    (taken if row.user_ref in got else busy).append(row)
            await uow.commit()
        return taken, busy

    async def give_back(self, rows) -> None:
        """After a round: the chats of `rows` free `CHAT_GAP` from now (every send of the
        round was answered by then), and the slot blocks left over, in one transaction."""
        by_channel: dict[str, list[str]] = {}
        for row in rows:
            by_channel.setdefault(row.channel, []).append(row.user_ref)
        for blocks in self._blocks.values():
            await blocks.settle_ahead()  # its own statement, before this transaction
        async with self.app.uow() as uow:
            for channel, refs in by_channel.items():
                await uow.send_limits.free_chats(channel, refs, CHAT_GAP)
            for blocks in self._blocks.values():
                await blocks.finish(uow)
            await uow.commit()


#: Shared slots a paid-broadcast sender takes from the database at once (one statement).
PAID_BLOCK = 50


@dataclass
class _Block:
    """Shared slots taken together: handed out one per send, given back together."""

    slots: list[int]
    handed: int = 0
    out: int = 0
    closed: bool = False
    freed: bool = False


class SlotBlocks:
    """A channel's shared slots for paid broadcasts, taken `PAID_BLOCK` at a time (one
    statement per block instead of three per send). Each send still holds its own slot from
    before its start until one window after its answer (the block's last answer), so every
    sender together stays under the ceiling; slots a round did not use come back at once."""

    def __init__(self, shared: SharedLimits, channel: str, rate: float) -> None:
        self.shared = shared
        self.channel = channel
        self.rate = rate
        self.cap = max(1, math.floor(rate))
        self.window = max(1.0, self.cap / rate)
        self.block: _Block | None = None
        self._lock = asyncio.Lock()
        #: The next block, taken in the background once half of the current one is handed out
        #: (sends do not stall while it is taken).
        self._next: asyncio.Task | None = None

    @contextlib.asynccontextmanager
    async def slot(self, local) -> AsyncIterator[None]:
        """Hold the `local` limiter's slot, then one shared slot, for the body (the send)."""
        async with local:
            block = await self._hand_out()
            try:
                yield
            finally:
                block.out -= 1
                if block.closed and block.out == 0:
                    async with self.shared.app.uow() as uow:
                        await self._free(uow, block)
                        await uow.commit()

    async def _hand_out(self) -> _Block:
        async with self._lock:
            block = self.block
            if block is None or block.closed:
                task, self._next = self._next, None
                slots = await task if task else []
                block = self.block = _Block(slots or await self._take())
            block.handed += 1
            block.out += 1
            block.closed = block.handed == len(block.slots)  # the last answer frees it
            if self._next is None and 2 * block.handed >= len(block.slots):
                self._next = asyncio.create_task(self._take(wait=False))
            return block

    async def _take(self, wait: bool = True) -> list[int]:
        """Up to `PAID_BLOCK` slots; waits for one unless `wait` is False (then maybe none)."""
        shared = self.shared
        if shared._caps.get(self.channel) != self.cap:
            await shared._run("ensure_slots", self.channel, self.cap)
            shared._caps[self.channel] = self.cap
        while True:
            slots = await shared._run("take_slots", self.channel, PAID_BLOCK, SHARED_HOLD_SECONDS)
            if slots or not wait:
                return slots
            wait = await shared._run("slot_wait", self.channel)
            await shared.sleep(min(max(wait, 0.005), 1.0))

    async def _free(self, uow, block: _Block) -> None:
        if block.freed:
            return
        block.freed = True
        send_limits = uow.send_limits
        used, unused = block.slots[: block.handed], block.slots[block.handed :]
        await send_limits.free_slots(self.channel, used, self.window)
        await send_limits.free_slots(self.channel, unused, 0.0)

    async def settle_ahead(self) -> None:
        """End of a round: wait for the block being taken ahead; it becomes the block at hand
        (with none handed out), so `finish` gives its slots back."""
        task, self._next = self._next, None
        if task is None:
            return
        with contextlib.suppress(Exception):  # a failed take holds nothing
            if slots := await task:
                if self.block is not None and not self.block.closed:
                    self.block.slots += slots  # unused: given back at once by finish
                else:
                    self.block = _Block(slots)

    async def finish(self, uow) -> None:
        """End of a round: close the block at hand, giving back its unused slots now."""
        block, self.block = self.block, None
        if block is not None and not block.closed:
            block.closed = True
            if block.out == 0:
                await self._free(uow, block)


@dataclass
class SenderState:
    """Per-process sending state: one limiter per channel, the last send per chat; and, when
    several sender processes may exist (PostgreSQL), the limits they share (`shared`)."""

    monotonic: Monotonic = time.monotonic
    sleep: Sleep = asyncio.sleep
    limiters: dict[str, RateLimiter] = field(default_factory=dict)
    chat_last: dict[tuple[str, str], float] = field(default_factory=dict)
    shared: SharedLimits | None = None
    #: Set once `quiet_start` looked for a previous process's sends.
    quiet_checked: bool = False
    #: When sending may start (monotonic clock), after a previous process's sends.
    quiet_until: float = -math.inf

    def limiter(self, channel: str, rate: float) -> RateLimiter:
        """The limiter of a channel (created on first use, paused until `quiet_until`)."""
        limiter = self.limiters.get(channel)
        if limiter is None or limiter.rate != rate:
            limiter = self.limiters[channel] = RateLimiter(rate, self.monotonic, self.sleep)
            quiet = self.quiet_until - self.monotonic()
            if quiet > 0:
                limiter.pause(quiet)
        return limiter

    async def chat_turn(self, chat: tuple[str, str]) -> None:
        """Wait until the chat's last send was answered at least `CHAT_GAP` ago."""
        gap = self.chat_last.get(chat, -math.inf) + CHAT_GAP - self.monotonic()
        if gap > 0:
            await self.sleep(gap)
        self.chat_last[chat] = self.monotonic()

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
        if shares_limits(app):
            state.shared = SharedLimits(app, state.sleep)
        app.sender_state = state
    if monotonic is not None:
        state.monotonic = monotonic
        state.shared = None  # an injected clock is one process under test: nobody to share with
    if sleep is not None:
        state.sleep = sleep
    return state


def shares_limits(app) -> bool:
    """True when several sender processes may share this database (PostgreSQL): they then
    share the send ceilings through it; SQLite has one process, its limiter is enough."""
    engine = getattr(app, "engine", None)
    return engine is not None and engine.dialect.name == "postgresql"


async def quiet_start(app) -> bool:
    """Once per process, before its first send: when another process may have sent in the
    last seconds (one killed mid-round leaves claimed rows), pause every channel for one rate
    window, direct replies included, so the platform never sees both in the same second (the
    per-channel ceiling and the 1 msg/s per chat hold across a crash and restart). True when
    it paused."""
    state = sender_state(app)
    if state.quiet_checked:
        return False
    state.quiet_checked = True
    try:
        async with app.uow() as uow:
            busy = await uow.claims.recently_active(
                app.clock.now(), timedelta(seconds=2 * CHAT_GAP)
            )
    except Exception:
        log.exception("could not check for a previous sender; pausing to be safe")
        busy = True
    if busy:
        state.quiet_until = state.monotonic() + CHAT_GAP
        for limiter in state.limiters.values():
            limiter.pause(CHAT_GAP)
        log.info("a previous sender was active: first send in %s s", CHAT_GAP)
    return busy


def paid_broadcast(settings, row) -> bool:
    """True for an announcement row on Telegram while TELEGRAM_PAID_BROADCAST is on."""
    paid = settings.telegram_paid_broadcast and row.broadcast_id is not None
    return bool(paid and row.channel == "telegram")


def send_rate(settings, channel: str) -> float:
    """The channel's own ceiling (`WECHAT_SEND_RATE_PER_SECOND`) or `SEND_RATE_PER_SECOND`."""
    return getattr(settings, f"{channel}_send_rate_per_second", None) or (
        settings.send_rate_per_second
    )


@dataclass(frozen=True)
class Round:
    """What one drain did: rows claimed (settled at the claim included) and rows sent."""

    claimed: int
    sent: int


async def drain_once(
    app,
    channel: str | None = None,
    limit: int = 100,
    *,
    monotonic: Monotonic | None = None,
    sleep: Sleep | None = None,
) -> int:
    """Claim up to `limit` due outbox rows and send them; returns the number sent."""
    done = await drain_round(app, channel, limit, monotonic=monotonic, sleep=sleep)
    return done.sent


async def drain_round(
    app,
    channel: str | None = None,
    limit: int = 100,
    *,
    monotonic: Monotonic | None = None,
    sleep: Sleep | None = None,
) -> Round:
    """Claim up to `limit` due outbox rows and send them; returns rows claimed and sent."""
    state = sender_state(app, monotonic, sleep)
    names = [channel] if channel else app.channels.names()
    if not names:
        return Round(0, 0)
    batch = await _claim(app, names, limit)
    first, later = _one_per_chat(batch.rows)
    if later:  # one message per chat per round: the rest wait for the next drain
        await _release_now(app, later)
    paid = [row for row in first if paid_broadcast(app.settings, row)]
    if state.shared is not None and paid:  # their chat turns in one go (see SlotBlocks)
        paid, busy = await state.shared.take_chats(paid)
        if busy:
            await _release_now(app, busy, delay=CHAT_GAP)
            busy_ids = {row.id for row in busy}
            first = [row for row in first if row.id not in busy_ids]
    gate = asyncio.Semaphore(app.settings.sender_concurrency)
    book = _Book(app, limit=book_limit(app.settings, bool(paid)))
    try:
        results = await asyncio.gather(*(_deliver(app, state, row, gate, book) for row in first))
    finally:
        await book.flush()
        if state.shared is not None and paid:
            await state.shared.give_back(paid)
    state.forget_old_chats()
    return Round(len(batch.rows) + batch.skipped, sum(results))


async def _claim(app, names: list[str], limit: int):
    lease = timedelta(seconds=app.settings.sender_lease_seconds)
    async with app.uow() as uow:
        batch = await uow.claims.claim(names, app.clock.now(), limit, lease)
        await uow.commit()
    return batch


def _one_per_chat(rows) -> tuple[list, list]:
    """Split rows into the first of each chat and the rest."""
    first, later = [], []
    seen: set[tuple[str, str]] = set()
    for row in rows:
        key = (row.channel, row.user_ref)
        (later if key in seen else first).append(row)
        seen.add(key)
    return first, later


#: Seconds of paid-broadcast sends one round claims at most (TELEGRAM_PAID_BROADCAST on).
PAID_ROUND_SECONDS = 0.5


def claim_size(settings) -> int:
    """Rows one round of `Sender` claims: SENDER_BATCH_SIZE, or with paid broadcasts on half a
    second of TELEGRAM_PAID_BROADCAST_RATE (up to 1000), so the pause between rounds (settle,
    report, claim) is a small share of the round; claimed rows not sent come back by lease."""
    size = settings.sender_batch_size
    if settings.telegram_paid_broadcast:
        paid = math.ceil(settings.telegram_paid_broadcast_rate * PAID_ROUND_SECONDS)
        size = max(size, min(1000, paid))
    return size


def book_limit(settings, paid: bool) -> int:
    """Sent rows that may wait to be written: max(10, SENDER_CONCURRENCY), or 50 ms of
    TELEGRAM_PAID_BROADCAST_RATE in a round with paid broadcasts (fewer, larger settles)."""
    limit = max(10, settings.sender_concurrency)
    if paid:
        limit = max(limit, math.ceil(settings.telegram_paid_broadcast_rate / 20))
    return limit


async def _release_now(app, rows, delay: float = 0.0) -> None:
    when = app.clock.now() + timedelta(seconds=delay)
    async with app.uow() as uow:
        for row in rows:
            await uow.claims.release(row.id, when)
        await uow.commit()


class _Book:
    """Settles sent and 403'd rows in groups, one transaction per group, off the send path.

    At most `limit` rows wait to be written (queued or being written), since a send first waits
    for room: a crash repeats at most `limit` sends plus those in flight.
    """

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.group = max(1, limit // 2)
        self.sent: list[int] = []
        self.unreachable: list[tuple] = []
        self.writing = 0
        self._lock = asyncio.Lock()
        self._room = asyncio.Condition()

    def _queued(self) -> int:
        return len(self.sent) + len(self.unreachable)

    async def room(self) -> None:
        """Wait until fewer than `limit` rows wait to be written."""
        async with self._room:
            await self._room.wait_for(lambda: self._queued() + self.writing < self.limit)

    async def add_sent(self, row) -> None:
        """Remember a sent row; write a group once enough are queued."""
        self.sent.append(row.id)
        await self._write(self.group)

    async def add_unreachable(self, row, error: str) -> None:
        """Remember a row the platform refused with 403 (its identity gets flagged)."""
        self.unreachable.append((row, error))
        await self._write(self.group)

    async def flush(self) -> None:
        """Write every remembered row."""
        await self._write(1, wait=True)

    async def _write(self, at_least: int, wait: bool = False) -> None:
        if self._lock.locked() and not wait:
            return  # the writer at work takes these rows too
        async with self._lock:
            while self._queued() >= at_least:
                sent, self.sent = self.sent, []
                unreachable, self.unreachable = self.unreachable, []
                self.writing = len(sent) + len(unreachable)
                try:
                    await self._commit(sent, unreachable)
                finally:
                    self.writing = 0
                    async with self._room:
                        self._room.notify_all()

    async def _commit(self, sent: list[int], unreachable: list[tuple]) -> None:
        now = self.app.clock.now()
        async with self.app.uow() as uow:
            await uow.claims.settle_sent(sent, now)
            for row, error in unreachable:
                await uow.claims.settle(row.id, "unreachable", now, error)
                await uow.learners.mark_unreachable(row.channel, row.user_ref, now)
                await _fall_back(uow, row, now)
            await uow.commit()


async def _fall_back(uow, row, now) -> None:
    """Re-send to the learner's other reachable channel (linked accounts), if there is one."""
    if row.learner_id is None:
        return
    other = (await uow.audience.of_learners([row.learner_id])).get(row.learner_id)
    if other is None or not other.reachable or other.channel == row.channel:
        return
    again = Outgoing(
        other.channel,
        other.user_ref,
        reply_from_body(row.body),
        row.kind,
        learner_id=row.learner_id,
        dedupe_key=f"fallback:{row.id}",
    )
    await enqueue(uow, again, now)


async def _deliver(app, state: SenderState, row, gate: asyncio.Semaphore, book: _Book) -> int:
    channel = app.channels.get(row.channel)
    reply = reply_from_body(row.body)
    chat = (row.channel, row.user_ref)
    shared = state.shared
    blocks = None
    if paid_broadcast(app.settings, row):
        # outside the free ceiling, on a limiter and shared slots of its own; the chat's
        # shared turn was taken for the whole round (drain_round)
        key = f"{row.channel}:paid"
        limiter = state.limiter(key, app.settings.telegram_paid_broadcast_rate)
        reply = dataclasses.replace(reply, paid_broadcast=True)
        blocks, shared = shared and shared.blocks(key, limiter.rate), None
    else:
        limiter = state.limiter(row.channel, send_rate(app.settings, row.channel))
    async with gate:
        for _ in range(MAX_RATE_LIMITED_TRIES):
            await book.room()
            await state.chat_turn(chat)
            try:
                slot = limiter.slot()
                if blocks is not None:
                    slot = blocks.slot(slot)
                async with shared.turn(*chat, limiter.rate, slot) if shared else slot:
                    try:
                        await channel.send(row.user_ref, reply)
                    finally:
                        state.chat_last[chat] = state.monotonic()
            except RateLimited as error:
                log.info("429 on %s: pausing %s s", row.channel, error.retry_after)
                limiter.pause(float(error.retry_after))
                continue
            except Unreachable as error:
                await book.add_unreachable(row, str(error))
                return 0
            except RejectedMessage as error:
                log.warning("outbox row %s rejected: %s", row.id, error)
                await _settle(app, row, "failed", str(error))
                return 0
            except Exception as error:  # network, server errors, bugs: bounded retries
                await _retry_later(app, row, f"{type(error).__name__}: {error}")
                return 0
            await book.add_sent(row)
            return 1
    await _release(app, row, "rate limited too often", delay=1.0, count=False)
    return 0


async def _settle(app, row, status: str, error: str | None) -> None:
    async with app.uow() as uow:
        await uow.claims.settle(row.id, status, app.clock.now(), error)
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
        return (await self._round()).sent

    async def _round(self) -> Round:
        done = await drain_round(self.app, self.channel, claim_size(self.app.settings))
        await report_broadcasts(self.app)
        return done

    async def run(self) -> None:
        """Loop until stopped; wait for a wake-up or the poll only when nothing was due."""
        await quiet_start(self.app)
        while not self._stop.is_set():
            try:
                claimed = (await self._round()).claimed
            except Exception:
                log.exception("sender round failed; retrying")
                claimed = 0
            if claimed == 0:
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
