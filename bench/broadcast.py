"""Broadcast benchmark: N learners through the fake Bot API with a ceiling the fake enforces.

    python bench/broadcast.py [--learners 10000] [--ceiling 30] [--paid] [--skip-start]
    python bench/broadcast.py --paid --ceiling 1000 --pg postgresql+asyncpg://…/bench \
        [--senders 1,2]

`--paid` turns on TELEGRAM_PAID_BROADCAST with the ceiling as TELEGRAM_PAID_BROADCAST_RATE
(e.g. `--ceiling 1000 --paid`) and prints the sender's CPU time per message.

Prints, with and without injected 429 (every 300 sends) and 403 (5% of chats): the sustained
rate divided by the ceiling, lost and duplicated messages; then the time from a live session's
scheduled start to the last learner's link message. Goal: ratio ≥ 0.95, none lost or duplicated.

The headline ratio is delivered messages per second (first to last delivery) over the ceiling.
`--pg` (with `--paid`) runs the processes apart instead, on PostgreSQL: the fake Bot API in a
process of its own (`--serve-fake`) and 1, 2, … `coursebot run --role sender` processes sharing
the ceiling through the database. Per sender count it prints msg/s (first to last delivery) over
the ceiling, the CPU ms per message of the sender processes together (start-up excluded; the
fake's and this process's fan-out not included), the most sends the fake saw in any second
(delivered, and all calls), and how many learners got exactly one message.

Also printed: every sendMessage call (403s and 429s are calls the server answered) per second
over the ceiling, and the same over only the time the server allowed sending (the span minus
the `retry_after` pauses it imposed) — labelled, never in place of the headline.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import logging
import math
import os
import signal
import subprocess
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
from tests.conftest import make_settings, reset_postgres  # noqa: E402
from tests.fakes.telegram_api import FakeTelegram, TelegramError  # noqa: E402
from tests.scheduler.support import add_learners, count_rows  # noqa: E402

FIRST_ID = 1_000_000
ROOT = Path(__file__).resolve().parents[1]


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


async def serve_fake(n: int, ceiling: float, stats: Path) -> None:
    """`--serve-fake`: the fake Bot API alone in this process, knowing the n learners; prints
    its URL, serves until SIGTERM, then writes what it saw to `stats` (JSON)."""
    async with TimedTelegram() as tg:
        for user_id in range(FIRST_ID, FIRST_ID + n):
            tg.user(user_id)
        tg.max_per_second = int(ceiling)
        tg.max_per_chat_per_second = 1
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print(tg.base_url, flush=True)
        await stop.wait()
        seen = dict(
            sends=tg.send_times,
            calls=[at for at, _, _ in tg.call_log],
            counts={str(k): v for k, v in tg.send_counts.items()},
            violations=tg.rate_violations + sum(tg.chat_rate_violations.values()),
        )
        stats.write_text(json.dumps(seen))


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def settled(procs: list[subprocess.Popen], quiet: float = 0.2) -> float:
    """Wait until the processes are idle (start-up done); their CPU seconds by then."""
    before = -1.0
    while True:
        await asyncio.sleep(1.0)
        now = sum(cpu_seconds(p.pid) for p in procs)
        if now - before < quiet:
            return now
        before = now


def sender_process(url: str, base_url: str, ceiling: float, folder: Path, n: int):
    """One `coursebot run --role sender` process, paid broadcasts on at `ceiling`."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": url,
        "TELEGRAM_BOT_TOKEN": FakeTelegram().token,
        "TELEGRAM_API_URL": base_url,
        "TELEGRAM_PAID_BROADCAST": "true",
        "TELEGRAM_PAID_BROADCAST_RATE": str(ceiling),
        "SEND_RATE_PER_SECOND": str(min(ceiling, 30)),
        "SENDER_CONCURRENCY": "16",
        "SENDER_BATCH_SIZE": os.environ.get("SENDER_BATCH_SIZE", "100"),
        "LOG_LEVEL": "WARNING",
    }
    log = (folder / f"sender{n}.log").open("w")
    command = [sys.executable, "-m", "bot", "run", "--role", "sender"]
    return subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)


async def prepare_pg(pg: str, ids: list[int]) -> str:
    """A fresh schema with the demo catalog and the learners; returns its URL."""
    url = await reset_postgres(pg)
    app = await build_app(make_settings(url), clock=SystemClock())
    async with app.uow() as uow:
        await seed_demo(uow)
        await uow.commit()
    await add_learners(app, ids)
    await app.close()
    return url


async def announce(url: str) -> None:
    """Write one announcement to every learner into the outbox (this process)."""
    app = await build_app(make_settings(url, telegram_paid_broadcast=True), clock=SystemClock())
    async with app.uow() as uow:
        b = await uow.broadcasts.add(text="Benchmark announcement", status="sending")
        await fan_out(uow, b, app.settings, app.clock.now())
        await uow.commit()
    await app.close()


async def wait_drained(url: str, timeout: float = 600) -> None:
    """Until no outbox row is pending or being sent."""
    app = await build_app(make_settings(url), clock=SystemClock())
    open_rows = OutboxMessage.status.in_(["pending", "sending"])
    deadline = time.monotonic() + timeout
    try:
        while await count_rows(app, OutboxMessage, open_rows):
            if time.monotonic() > deadline:
                raise TimeoutError("the senders did not drain the outbox")
            await asyncio.sleep(0.2)
    finally:
        await app.close()


async def apart(args, senders: int, folder: Path) -> str:
    """The fake in its own process, `senders` sender processes on PostgreSQL; figures."""
    ids = list(range(FIRST_ID, FIRST_ID + args.learners))
    url = await prepare_pg(args.pg, ids)
    stats = folder / f"fake-{senders}.json"
    fake_cmd = [
        sys.executable,
        __file__,
        "--serve-fake",
        "--learners",
        str(args.learners),
        "--ceiling",
        str(args.ceiling),
        "--stats",
        str(stats),
    ]
    fake = subprocess.Popen(fake_cmd, stdout=subprocess.PIPE, text=True)
    procs = []
    try:
        base_url = fake.stdout.readline().strip()
        procs = [sender_process(url, base_url, args.ceiling, folder, n) for n in range(senders)]
        cpu = await settled(procs)
        fake_cpu = cpu_seconds(fake.pid)
        await announce(url)
        await wait_drained(url)
        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu
        fake_cpu = cpu_seconds(fake.pid) - fake_cpu
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
        fake.send_signal(signal.SIGTERM)
        fake.wait(60)
    seen = json.loads(stats.read_text())
    return apart_figures(seen, ids, args.ceiling, senders, (cpu, fake_cpu))


def apart_figures(seen: dict, ids: list[int], ceiling: float, senders: int, cpu) -> str:
    """One line of the `--pg` run."""
    sends, calls = seen["sends"], sorted(seen["calls"])
    rate = per_second(len(sends), sends)
    cpu, fake_cpu = cpu
    exact = sum(1 for u in ids if seen["counts"].get(str(u), 0) == 1)
    return (
        f"{senders} sender(s): {rate:.0f} msg/s = {rate / ceiling:.3f} of ceiling, "
        f"sender CPU {cpu / max(1, len(sends)) * 1000:.2f} ms/message "
        f"({cpu / senders / max(1e-9, sends[-1] - sends[0]) * 100:.0f}% of a core each; "
        f"the fake {fake_cpu / max(1, len(sends)) * 1000:.2f} ms/message), "
        f"max in any 1 s: delivered {peak(sends)}, all calls {peak(calls)} "
        f"(ceiling {ceiling:g}); 429s from the fake's limits {seen['violations']}; "
        f"exactly one message {exact}/{len(ids)}"
    )


async def main() -> None:
    """Run the three measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=10_000)
    parser.add_argument("--ceiling", type=float, default=30.0)
    parser.add_argument("--paid", action="store_true", help="TELEGRAM_PAID_BROADCAST on")
    parser.add_argument("--skip-start", action="store_true", help="no session-start run")
    parser.add_argument("--pg", help="PostgreSQL URL: fake and senders in processes apart")
    parser.add_argument("--senders", default="1,2", help="sender process counts (with --pg)")
    parser.add_argument("--serve-fake", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.serve_fake:
        return await serve_fake(args.learners, args.ceiling, args.stats)
    folder = Path(tempfile.mkdtemp(prefix="coursebot-bench-"))
    if args.pg:
        print(
            f"paid broadcast on PostgreSQL, processes apart: {args.learners} learners, "
            f"ceiling {args.ceiling:g} msg/s (logs {folder})"
        )
        for senders in (int(n) for n in args.senders.split(",")):
            print(await apart(args, senders, folder), flush=True)
        return
    print(f"broadcast benchmark: {args.learners} learners, ceiling {args.ceiling:g} msg/s")
    paid = args.paid
    print("clean:        ", await broadcast(args.learners, args.ceiling, False, folder, paid))
    print("429+403 (5%): ", await broadcast(args.learners, args.ceiling, True, folder, paid))
    if not args.skip_start:
        print("session start:", await session_start(args.learners, args.ceiling, folder))


if __name__ == "__main__":
    asyncio.run(main())
