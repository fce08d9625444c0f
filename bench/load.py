"""Latency under load: 50 learners buying and rating at once through the Telegram webhook.

    python bench/load.py [--learners 50] [--rounds 3] [--think 0 2]
        [--pg postgresql+asyncpg://postgres@127.0.0.1:55432/bench_load]

The app runs as `coursebot run` runs it in webhook mode (aiogram runtime, `/telegram` on its
web server) against the fake Bot API in this process, on a fresh SQLite file and, with `--pg`,
on PostgreSQL too (a database of this process's own on that server, its schema wiped). Each
learner, all at once, `--rounds` times, with a think time before each action (`--think`: 0 is
a closed loop at full speed, a saturation test; 2 s is closer to people tapping): opens a
course card by deep link, presses buy, pays (pre-checkout query, then the successful
payment), and rates the course in three steps. An answer time is from the update leaving the
fake until the bot's next message to that learner arrives; the pre-checkout time is the
fake's own (query sent → answerPreCheckoutQuery). Printed per database: p50/p95/p99/max
answer time, pre-checkout p50/p99/max, per step p50/p95 (ms), answers/s. Goal: p95 answer
< 200 ms, pre-checkout p99 < 500 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.core import SystemClock  # noqa: E402
from tests.conftest import free_port, reset_postgres, start_telegram_app  # noqa: E402
from tests.fakes.telegram_api import FakeTelegram  # noqa: E402

FIRST_USER = 4_000_000
COURSES = 16  # the demo catalog


def has(text: str):
    """A message predicate: its text contains `text`."""
    return lambda m: text in (m.get("text") or m.get("caption") or "")


def button(data: str):
    """A message predicate: one of its buttons' callback data starts with `data`."""

    def found(message: dict) -> bool:
        rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
        return any(str(b.get("callback_data", "")).startswith(data) for row in rows for b in row)

    return found


def either(*predicates):
    """A message predicate: any of these."""
    return lambda m: any(p(m) for p in predicates)


class Timings:
    """Answer times and pre-checkout times of one run, in seconds."""

    def __init__(self, think: float = 0.0, seed: int = 1) -> None:
        self.think = think
        self.rng = random.Random(seed)
        self.answers: list[float] = []
        self.precheckout: list[float] = []
        self.steps: dict[str, list[float]] = {}

    async def pause(self) -> None:
        """A learner's think time before an action: uniform in [0.5, 1.5] × `think`."""
        if self.think:
            await asyncio.sleep(self.think * (0.5 + self.rng.random()))

    def note(self, step: str, seconds: float) -> None:
        """One answer time of a step."""
        self.answers.append(seconds)
        self.steps.setdefault(step, []).append(seconds)

    async def answer(self, step: str, user, action, predicate=None) -> dict:
        """Think, run one user action and wait for the bot's next message to that user."""
        await self.pause()
        start = time.perf_counter()
        await action
        message = await user.wait_for_message(predicate, timeout=60)
        self.note(step, time.perf_counter() - start)
        return message


async def learner(tg: FakeTelegram, timings: Timings, n: int, rounds: int) -> None:
    """One learner's rounds: card, buy, pay, rate in three steps."""
    user = tg.user(FIRST_USER + n, language_code="en")
    for r in range(rounds):
        course = 1 + (n + r) % COURSES
        await timings.answer("card", user, user.send(f"/start course_{course}"), has(f"#{course}"))
        await timings.answer("buy", user, user.press(f"buy:{course}"), lambda m: "invoice" in m)
        await timings.pause()
        start = time.perf_counter()
        assert await user.pay(timeout=30) is not None, user.last_payment_error
        await user.wait_for_message(timeout=60)  # the payment's confirmation
        timings.note("pay", time.perf_counter() - start)
        step1, pick = button(f"rt:{course}:"), button(f"rate:{course}")
        shown = await timings.answer("/rate", user, user.send("/rate"), either(pick, step1))
        if pick(shown):  # several owned courses: pick this one first
            await timings.answer("rate pick", user, user.press(f"rate:{course}"), step1)
        prefix = f"rt:{course}"
        for stars in (5, 4, 5):
            prefix += f":{stars}"
            last = prefix.count(":") == 4
            expect = button("rvskip" if last else prefix)
            await timings.answer("rate step", user, user.press(prefix), expect)


async def run(url: str, learners: int, rounds: int, think: float = 0.0) -> str:
    """One load run on the database at `url`; its line of figures."""
    async with FakeTelegram() as tg:
        port = free_port()
        app, channel = await start_telegram_app(
            url,
            SystemClock(),
            tg,
            web_port=port,
            telegram_webhook_url=f"http://127.0.0.1:{port}/telegram",
            telegram_webhook_secret="load-secret",
            send_rate_per_second=100_000,  # latency, not the send ceiling
        )
        timings = Timings(think)
        try:
            started, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(learner(tg, timings, n, rounds) for n in range(learners)))
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            timings.precheckout = [a["seconds"] for a in tg.precheckout_answers.values()]
        finally:
            await channel.stop()
            await app.close()
    return figures(timings, elapsed, cpu)


def pct(values: list[float], p: int) -> float:
    """The p-th percentile in ms."""
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] * 1000


def figures(t: Timings, elapsed: float, cpu: float) -> str:
    """Answer p50/p95/p99/max, pre-checkout p50/p99/max (ms), updates/s."""
    a, p = t.answers, t.precheckout
    steps = ", ".join(f"{name} {pct(v, 50):.0f}/{pct(v, 95):.0f}" for name, v in t.steps.items())
    return (
        f"answers {len(a)}: p50 {pct(a, 50):.0f}, p95 {pct(a, 95):.0f}, p99 {pct(a, 99):.0f}, "
        f"max {max(a) * 1000:.0f} ms; pre-checkout {len(p)}: p50 {pct(p, 50):.0f}, "
        f"p99 {pct(p, 99):.0f}, max {max(p) * 1000:.0f} ms; {len(a) / elapsed:.0f} answers/s; "
        f"process CPU {cpu / elapsed * 100:.0f}% of a core (bot and fake together)\n"
        f"    per step p50/p95 ms: {steps}"
    )


async def main() -> None:
    """SQLite, then PostgreSQL when given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg", help="PostgreSQL URL (a database of its own is made there)")
    parser.add_argument(
        "--think", type=float, nargs="+", default=[0.0, 2.0], help="mean think times (s)"
    )
    args = parser.parse_args()
    print(f"{args.learners} learners at once, {args.rounds} rounds (card, buy, pay, rate ×3)")
    for think in args.think:
        print(
            f"think time {think:g} s (uniform {think / 2:g}–{think * 1.5:g} s before each action)"
        )
        folder = Path(tempfile.mkdtemp(prefix="coursebot-load-"))
        sqlite = f"sqlite+aiosqlite:///{folder / 'load.db'}"
        print("  SQLite:    ", await run(sqlite, args.learners, args.rounds, think), flush=True)
        if args.pg:
            url = await reset_postgres(args.pg)
            print("  PostgreSQL:", await run(url, args.learners, args.rounds, think), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
