"""Start-up: `coursebot run` vs a bare aiogram echo bot, spawn → first update answered.

Usage: python bench/startup.py [--rounds N] [--interactions N] [--idle SECONDS] [--before DIR]

Before each spawn a `/start` waits at the fake Bot API (tests/fakes/telegram_api.py); the clock
stops when the bot's answer reaches the fake. Runs are interleaved (ours, echo, ours, …) on a copy
of one database already at the newest migration with the demo catalog (a restart, the common
case). Prints each run, the medians and their ratio, and coursebot's idle RSS (VmRSS from
/proc/<pid>/status, `--idle` seconds after its first answer; the default 5 s lets the background
warm-up, jieba's dictionary and the catalogue index, finish on a busy 2-core machine).
`--interactions N` adds N stored interactions (and N/10 learners) to that database, to show
start-up does not grow with them.
`--before DIR` also runs the coursebot of another checkout (e.g. `git archive <commit>` unpacked
there) in the same rounds, on its own database, for before/after figures from one run.
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


def prepare(folder: Path, tg: FakeTelegram, interactions: int, code: Path = ROOT) -> Path:
    """A database at head (of `code`) with the demo catalog and `interactions` interactions."""
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "template.db"
    env = bot_env(db, tg)
    subprocess.run(
        [sys.executable, "-m", "bot", "seed-demo"],
        env=env,
        cwd=code,
        check=True,
        stdout=subprocess.DEVNULL,
    )
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
                    rnd.choice(learners),
                    rnd.choice(courses),
                    kind,
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
    tg: FakeTelegram, argv: list[str], env: dict, user_id: int, cwd: Path, idle: float
) -> tuple[float, float]:
    """Seconds from spawn until the bot answered a waiting /start, and RSS (MB) `idle` s later."""
    await tg.user(user_id, language_code="zh").send("/start")
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await tg.wait_for_message(user_id, timeout=180)
        elapsed = time.perf_counter() - start
        await asyncio.sleep(idle)  # idle: background warm-up done, nothing to answer
        return elapsed, rss_mb(proc.pid)
    finally:
        proc.terminate()
        await proc.wait()


def contenders(args, folder: Path, tg: FakeTelegram) -> list[tuple[str, Path, Path | None]]:
    """(label, code folder, template database or None for the echo bot) of each bot to time."""
    out = [("coursebot", ROOT, prepare(folder / "ours", tg, 0))]
    if args.before:
        before = Path(args.before).resolve()
        out.append(("coursebot before", before, prepare(folder / "before", tg, 0, before)))
    out.append(("bare aiogram echo", ROOT, None))
    if args.interactions:
        big = prepare(folder / "big", tg, args.interactions)
        out.append((f"coursebot, {args.interactions:,} interactions", ROOT, big))
        if args.before:
            big = prepare(folder / "big-before", tg, args.interactions, before)
            out.append((f"coursebot before, {args.interactions:,} interactions", before, big))
    return out


async def main(args: argparse.Namespace) -> None:
    """Run the rounds (each bot once per round, interleaved) and print the figures."""
    folder = Path(tempfile.mkdtemp(prefix="coursebot-startup-"))
    results: dict[str, list[tuple[float, float]]] = {}
    async with FakeTelegram() as tg:
        bots = contenders(args, folder, tg)
        for n in range(args.rounds):
            line = []
            for i, (label, code, template) in enumerate(bots):
                user = 1000 * (i + 1) + n
                if template is None:
                    argv, env = [sys.executable, "-c", ECHO, tg.base_url, tg.token], os.environ
                else:
                    db = fresh_copy(template, template.parent, f"run{n}")
                    argv, env = [sys.executable, "-m", "bot", "run"], bot_env(db, tg)
                result = await first_answer(tg, argv, dict(env), user, code, args.idle)
                results.setdefault(label, []).append(result)
                line.append(f"{label} {result[0]:.2f} s ({result[1]:.0f} MB)")
            print(f"round {n + 1}: " + ", ".join(line), flush=True)
    report(results)
    shutil.rmtree(folder, ignore_errors=True)


def report(results: dict[str, list[tuple[float, float]]]) -> None:
    """Print the median time to the first answer and the median idle RSS of each bot."""
    echo = statistics.median(t for t, _ in results["bare aiogram echo"])
    print("median spawn → first answer, idle RSS after it:")
    for label, runs in results.items():
        seconds = statistics.median(t for t, _ in runs)
        rss = statistics.median(m for _, m in runs)
        print(
            f"  {label:42s} {seconds:6.2f} s  {rss:4.0f} MB  "
            f"(vs echo {seconds - echo:+.2f} s, ×{seconds / echo:.2f})"
        )


def parse(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interactions", type=int, default=0)
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--before", help="another checkout of coursebot to time alongside")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
