"""Start-up: `coursebot run` vs a bare aiogram echo bot, spawn → first update answered.

Usage: python bench/startup.py [--rounds N] [--interactions N] [--idle SECONDS]

Before each spawn a `/start` waits at the fake Bot API (tests/fakes/telegram_api.py); the clock
stops when the bot's answer reaches the fake. Runs are interleaved (ours, echo, ours, …) on a copy
of one database already at the newest migration with the demo catalog (a restart, the common
case). Prints each run, the medians and their ratio, and coursebot's idle RSS (VmRSS from
/proc/<pid>/status, `--idle` seconds after its first answer). `--interactions N` adds N stored
interactions (and N/10 learners) to that database, to show start-up does not grow with them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.telegram_api import FakeTelegram  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inbound import ECHO  # noqa: E402 - the same bare aiogram echo bot as bench/inbound.py

KINDS = ("view", "view", "view", "purchase", "rating", "rec_click", "faq_hit")


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bot_env(db: Path, tg: FakeTelegram) -> dict:
    """The environment of `coursebot run` polling the fake on the SQLite file `db`."""
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "TELEGRAM_BOT_TOKEN": tg.token,
        "TELEGRAM_API_URL": tg.base_url,
        "RECOMMENDER_MODEL_PATH": str(db.with_suffix(".npz")),
        "WEB_PORT": "0",
        "LOG_LEVEL": "WARNING",
    }


def prepare(folder: Path, tg: FakeTelegram, interactions: int) -> Path:
    """A database at head with the demo catalog and `interactions` stored interactions."""
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "template.db"
    env = bot_env(db, tg)
    subprocess.run([sys.executable, "-m", "bot", "seed-demo"], env=env, cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    if interactions:
        add_interactions(db, interactions)
    return db


def add_interactions(db: Path, n: int) -> None:
    """Insert n interactions from n/10 learners on the demo courses (raw SQL, fast)."""
    rnd = random.Random(7)
    with sqlite3.connect(db) as con:
        courses = [row[0] for row in con.execute("SELECT id FROM courses")]
        first = (con.execute("SELECT COALESCE(MAX(id), 0) FROM learners").fetchone()[0]) + 1
        learners = range(first, first + max(1, n // 10))
        stamp = "2026-01-01 00:00:00.000000"
        con.executemany(
            "INSERT INTO learners (id, display_name, announcements_opt_out, created_at) "
            "VALUES (?, '', 0, ?)",
            ((i, stamp) for i in learners),
        )
        start = datetime(2026, 1, 1, tzinfo=UTC)
        con.executemany(
            "INSERT INTO interactions (learner_id, course_id, kind, value, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                (
                    rnd.choice(learners), rnd.choice(courses), kind,
                    float(rnd.randint(1, 5)) if kind == "rating" else None,
                    (start + timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S.%f"),
                )
                for i, kind in enumerate(rnd.choice(KINDS) for _ in range(n))
            ),
        )


def fresh_copy(template: Path, folder: Path, name: str) -> Path:
    """A copy of the template database for one run."""
    db = folder / f"{name}.db"
    shutil.copyfile(template, db)
    return db


async def first_answer(
    tg: FakeTelegram, argv: list[str], env: dict, user_id: int, idle: float | None
) -> tuple[float, float]:
    """Seconds from spawn until the bot answered a waiting /start, and RSS (MB) `idle` s later."""
    await tg.user(user_id, language_code="zh").send("/start")
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await tg.wait_for_message(user_id, timeout=180)
        elapsed = time.perf_counter() - start
        if idle is None:
            return elapsed, float("nan")
        await asyncio.sleep(idle)  # idle: background warm-up done, nothing to answer
        return elapsed, rss_mb(proc.pid)
    finally:
        proc.terminate()
        await proc.wait()


async def main(args: argparse.Namespace) -> None:
    """Run the rounds and print the figures."""
    ours, echo, memory, scaled = [], [], [], []
    folder = Path(tempfile.mkdtemp(prefix="coursebot-startup-"))
    async with FakeTelegram() as tg:
        template = prepare(folder, tg, 0)
        big = prepare(folder / "big", tg, args.interactions) if args.interactions else None
        bot = [sys.executable, "-m", "bot", "run"]
        for n in range(args.rounds):
            db = fresh_copy(template, folder, f"run{n}")
            seconds, rss = await first_answer(tg, bot, bot_env(db, tg), 1000 + n, args.idle)
            ours.append(seconds)
            memory.append(rss)
            argv = [sys.executable, "-c", ECHO, tg.base_url, tg.token]
            seconds_echo, _ = await first_answer(tg, argv, dict(os.environ), 2000 + n, None)
            echo.append(seconds_echo)
            line = f"round {n + 1}: coursebot {seconds:.2f} s ({rss:.0f} MB), "
            line += f"echo {seconds_echo:.2f} s"
            if big is not None:
                db = fresh_copy(big, folder, f"big{n}")
                seconds_big, _ = await first_answer(tg, bot, bot_env(db, tg), 3000 + n, None)
                scaled.append(seconds_big)
                line += f", coursebot with {args.interactions:,} interactions {seconds_big:.2f} s"
            print(line, flush=True)
    report(ours, echo, memory, scaled, args.interactions)
    shutil.rmtree(folder, ignore_errors=True)


def report(ours, echo, memory, scaled, interactions: int) -> None:
    """Print the medians."""
    a, b = statistics.median(ours), statistics.median(echo)
    print(
        f"median spawn → first answer: coursebot {a:.2f} s, bare aiogram echo {b:.2f} s, "
        f"difference {a - b:+.2f} s, ratio {a / b:.2f}"
    )
    print(f"coursebot idle RSS after its first answer: median {statistics.median(memory):.0f} MB")
    if scaled:
        big = statistics.median(scaled)
        print(f"coursebot with {interactions:,} interactions: median {big:.2f} s")


def parse(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interactions", type=int, default=0)
    parser.add_argument("--idle", type=float, default=2.0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
