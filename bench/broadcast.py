"""Broadcast benchmark: N learners through the fake Bot API with a ceiling the fake enforces.

    python bench/broadcast.py [--learners 10000] [--ceiling 30] [--paid] [--skip-start]

`--paid` turns on TELEGRAM_PAID_BROADCAST with the ceiling as TELEGRAM_PAID_BROADCAST_RATE
(e.g. `--ceiling 1000 --paid`) and prints the sender's CPU time per message.

Prints, with and without injected 429 (every 300 sends) and 403 (5% of chats): the sustained
rate divided by the ceiling, lost and duplicated messages; then the time from a live session's
scheduled start to the last learner's link message. Goal: ratio ≥ 0.95, none lost or duplicated.

The headline ratio is delivered messages per second (first to last delivery) over the ceiling.
Also printed: every sendMessage call (403s and 429s are calls the server answered) per second
over the ceiling, and the same over only the time the server allowed sending (the span minus
the `retry_after` pauses it imposed) — labelled, never in place of the headline.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import logging
import math
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.bootstrap import build_app  # noqa: E402
from bot.channels.telegram_aiogram import AiogramChannel  # noqa: E402
from bot.core import SystemClock  # noqa: E402
from bot.demo import seed_demo  # noqa: E402
from bot.settings import Settings  # noqa: E402
from scheduler.sender import Sender  # noqa: E402
from scheduler.service import SchedulerService  # noqa: E402
from services.announcements import fan_out  # noqa: E402
from services.live import plan_notices  # noqa: E402
from storage.models import OutboxMessage  # noqa: E402
from tests.fakes.telegram_api import FakeTelegram, TelegramError  # noqa: E402
from tests.scheduler.support import add_learners, count_rows  # noqa: E402

FIRST_ID = 1_000_000


async def make_app(tg: FakeTelegram, ceiling: float, folder: Path, name: str, **extra):
    """A fresh SQLite app with the aiogram channel pointed at the fake (no polling)."""
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{folder / name}",
        telegram_bot_token=tg.token,
        telegram_api_url=tg.base_url,
        send_rate_per_second=ceiling,
        sender_concurrency=16,
        _env_file=None,
        **extra,
    )
    app = await build_app(settings, clock=SystemClock())
    channel = AiogramChannel(app)
    app.channels.add(channel)
    async with app.uow() as uow:
        await seed_demo(uow)
    return app, channel


class TimedTelegram(FakeTelegram):
    """The fake Bot API, also noting when each sendMessage call arrived and its answer."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.call_log: list[tuple[float, int, float]] = []  # (time, status, retry_after)

    async def call(self, method: str, params: dict):
        """Run the method as the fake does; note sendMessage calls."""
        at, status, pause = self.clock(), 200, 0.0
        try:
            return await super().call(method, params)
        except TelegramError as error:
            status = error.status
            pause = float((error.parameters or {}).get("retry_after", 0)) if status == 429 else 0
            raise
        finally:
            if method.lower() == "sendmessage":
                self.call_log.append((at, status, pause))


def per_second(count: int, times: list[float]) -> float:
    """Events per second between the first and the last of `times`."""
    return (count - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def forbidden_seconds(log: list[tuple[float, int, float]], end: float) -> float:
    """Seconds of retry_after pauses the server imposed (overlaps counted once, up to `end`)."""
    total, covered = 0.0, -math.inf
    for at, _status, pause in log:
        stop = min(at + pause, end)
        if pause and stop > covered:
            total += stop - max(at, covered)
            covered = stop
    return total


def peak(times: list[float], window: float = 1.0) -> int:
    """Most events inside any window of this length (times sorted)."""
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def figures(tg: TimedTelegram, ids: list[int], blocked: set[int], ceiling: float) -> str:
    """Rate / ceiling (delivered; all calls; all calls over allowed time), lost, duplicated."""
    times = tg.send_times
    rate = per_second(len(times), times)
    calls = [at for at, _, _ in tg.call_log]
    call_rate = per_second(len(calls), calls)
    span = calls[-1] - calls[0] if len(calls) > 1 else 0.0
    paused = forbidden_seconds(tg.call_log, calls[-1]) if calls else 0.0
    allowed = (len(calls) - 1) / (span - paused) if span > paused else 0.0
    lost = sum(1 for u in ids if u not in blocked and tg.send_counts[u] == 0)
    duplicated = sum(max(0, tg.send_counts[u] - 1) for u in ids)
    return (
        f"sent {len(times)}, sustained {rate:.2f}/s = {rate / ceiling:.3f} of ceiling; "
        f"all {len(calls)} sendMessage calls incl. 403/429: {call_rate / ceiling:.3f} of ceiling "
        f"over {span:.1f} s, {allowed / ceiling:.3f} over the {span - paused:.1f} s the server "
        f"allowed sending (429 pauses {paused:.1f} s); peak(1s) delivered {tg.peak_rate(1.0)}, "
        f"all calls {peak(calls)}; lost {lost}, duplicated {duplicated}, "
        f"blocked flagged {len(blocked)}"
    )


async def broadcast(n: int, ceiling: float, faults: bool, folder: Path, paid: bool = False) -> str:
    """One announcement to n learners; returns the printed figures."""
    extra = {}
    if paid:
        extra = dict(telegram_paid_broadcast=True, telegram_paid_broadcast_rate=ceiling)
    async with TimedTelegram() as tg:
        app, channel = await make_app(tg, ceiling, folder, f"bc-{faults}.db", **extra)
        ids = list(range(FIRST_ID, FIRST_ID + n))
        blocked = set(ids[::20]) if faults else set()
        for user_id in ids:
            tg.user(user_id)
        for user_id in blocked:
            tg.block(user_id)
        await add_learners(app, ids)
        tg.max_per_second = int(ceiling)
        if faults:
            tg.rate_limit_every(300, retry_after=1)
        async with app.uow() as uow:
            b = await uow.broadcasts.add(text="Benchmark announcement", status="sending")
            await fan_out(uow, b, app.settings, app.clock.now())
            await uow.commit()
        sender = Sender(app)
        started, cpu = time.monotonic(), time.process_time()
        open_rows = OutboxMessage.status.in_(["pending", "sending"])
        while await count_rows(app, OutboxMessage, open_rows):
            await sender.run_once()
        elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
        result = figures(tg, ids, blocked, ceiling) + f", wall {elapsed:.1f} s"
        result += f", CPU {cpu / max(1, len(tg.send_times)) * 1000:.2f} ms/message (fake incl.)"
        result += f", 429s {sum(1 for e in tg.errors if e[1] == 429)}"
        await channel.bot.session.close()
        await app.close()
        return result


async def session_start(n: int, ceiling: float, folder: Path) -> str:
    """n enrolled learners; the time from the scheduled start to the last link message."""
    async with FakeTelegram() as tg:
        app, channel = await make_app(tg, ceiling, folder, "start.db", reminder_offsets="1h")
        ids = list(range(FIRST_ID, FIRST_ID + n))
        for user_id in ids:
            tg.user(user_id)
        await add_learners(app, ids)
        tg.max_per_second = int(ceiling)
        async with app.uow() as uow:
            from storage.live import insert_ignore_many
            from storage.models import Enrolment

            await insert_ignore_many(
                uow.session,
                Enrolment,
                [dict(learner_id=i + 1, course_id=1) for i in range(n)],
            )
            now = app.clock.now()
            session = await uow.sessions.add(
                course_id=1,
                starts_at=now + timedelta(seconds=3),
                url="https://live.example/bench",
                status="scheduled",
                duration_minutes=60,
            )
            await plan_notices(uow, session, app.settings, now)
            await uow.commit()
        start_wall = time.time() + (session.starts_at - app.clock.now()).total_seconds()
        service = SchedulerService(app)
        await service.start()
        sender = Sender(app)
        sender.start()

        def links() -> int:
            return sum(1 for m in tg.sent if "live.example/bench" in (m.get("text") or ""))

        while links() < n:
            await asyncio.sleep(0.5)
        last = time.time()
        await sender.stop()
        await service.stop()
        await channel.bot.session.close()
        await app.close()
        return f"{n} learners: last link {last - start_wall:.1f} s after the scheduled start"


async def main() -> None:
    """Run the three measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=10_000)
    parser.add_argument("--ceiling", type=float, default=30.0)
    parser.add_argument("--paid", action="store_true", help="TELEGRAM_PAID_BROADCAST on")
    parser.add_argument("--skip-start", action="store_true", help="no session-start run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    folder = Path(tempfile.mkdtemp(prefix="coursebot-bench-"))
    print(f"broadcast benchmark: {args.learners} learners, ceiling {args.ceiling:g} msg/s")
    paid = args.paid
    print("clean:        ", await broadcast(args.learners, args.ceiling, False, folder, paid))
    print("429+403 (5%): ", await broadcast(args.learners, args.ceiling, True, folder, paid))
    if not args.skip_start:
        print("session start:", await session_start(args.learners, args.ceiling, folder))


if __name__ == "__main__":
    asyncio.run(main())
