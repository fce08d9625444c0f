"""Start-up: `coursebot run` vs a bare aiogram echo bot, spawn → first getUpdates, same fake.

Usage: python bench/startup.py [ROUNDS]   (default 3 rounds each, interleaved)
Prints each run, the medians, their ratio, and coursebot's idle RSS after start-up.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.telegram_api import FakeTelegram  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inbound import ECHO  # noqa: E402 - the same bare aiogram echo bot as bench/inbound.py


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def time_to_first_poll(tg: FakeTelegram, argv: list[str], env: dict) -> tuple[float, float]:
    """Seconds from spawn to the process's first getUpdates, and its RSS (MB) then."""
    since = len(tg.requests)
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await tg.wait_for_request("getUpdates", timeout=120, since=since)
        elapsed = time.perf_counter() - start
        await asyncio.sleep(1.0)  # let start-up settle before reading memory
        return elapsed, rss_mb(proc.pid)
    finally:
        proc.terminate()
        await proc.wait()


async def main(rounds: int) -> None:
    ours, echo, memory = [], [], []
    async with FakeTelegram() as tg:
        for n in range(rounds):
            folder = Path(tempfile.mkdtemp(prefix="coursebot-startup-"))
            env = {
                **os.environ,
                "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'bench.db'}",
                "TELEGRAM_BOT_TOKEN": tg.token,
                "TELEGRAM_API_URL": tg.base_url,
                "RECOMMENDER_MODEL_PATH": str(folder / "model.npz"),
                "WEB_PORT": "0",
                "LOG_LEVEL": "WARNING",
            }
            seconds, rss = await time_to_first_poll(tg, [sys.executable, "-m", "bot", "run"], env)
            ours.append(seconds)
            memory.append(rss)
            seconds_echo, _ = await time_to_first_poll(
                tg, [sys.executable, "-c", ECHO, tg.base_url, tg.token], dict(os.environ)
            )
            echo.append(seconds_echo)
            print(
                f"round {n + 1}: coursebot {seconds:.2f} s ({rss:.0f} MB)",
                f"echo {seconds_echo:.2f} s",
            )
    a, b = statistics.median(ours), statistics.median(echo)
    print(
        f"median spawn → first getUpdates: coursebot {a:.2f} s, bare aiogram echo {b:.2f} s, "
        f"ratio {a / b:.2f}"
    )
    print(f"coursebot RSS after start-up: {statistics.median(memory):.0f} MB")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
