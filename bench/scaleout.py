"""Scale-out on PostgreSQL: 1, 2 and 3 `coursebot run --role web` processes behind a round-robin
proxy in Telegram webhook mode, one `--role scheduler` and one `--role sender`, one fake Bot API.

    python bench/scaleout.py --pg postgresql+asyncpg://postgres@127.0.0.1:55432/bench
        [--updates 600] [--learners 200] [--processes 1,2,3]

The database's public schema is wiped before each run. Each run pushes `--updates` /catalog
updates from `--updates`/10 users, 50 at a time (the fake posts each to the webhook and waits
for its answer, as Telegram does), and prints updates/s until every reply arrived. Meanwhile a
live session of course 1 with `--learners` enrolled learners starts; the run then checks that
every learner got its reminder and its link exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.bootstrap import build_app  # noqa: E402
from bot.core import SystemClock  # noqa: E402
from bot.demo import seed_demo  # noqa: E402
from services.live import plan_notices  # noqa: E402
from storage.live import insert_ignore_many  # noqa: E402
from storage.models import Enrolment, Learner  # noqa: E402
from tests.conftest import free_port, make_settings, reset_postgres  # noqa: E402
from tests.fakes.telegram_api import FakeTelegram  # noqa: E402
from tests.scheduler.support import add_learners  # noqa: E402

SECRET = "scaleout-secret"
LIVE_URL = "https://live.example/scaleout"
FIRST_LEARNER = 2_000_000
FIRST_TALKER = 3_000_000


async def prepare(url: str, learners: int, starts_in: float) -> None:
    """Migrate, seed the demo catalog, enrol `learners` in course 1, plan a session."""
    app = await build_app(make_settings(url, reminder_offsets="3s"), clock=SystemClock())
    ids = list(range(FIRST_LEARNER, FIRST_LEARNER + learners))
    async with app.uow() as uow:
        await seed_demo(uow)
        await uow.commit()
    await add_learners(app, ids)
    async with app.uow() as uow:
        # add_learners writes explicit ids: move the sequence past them for the web processes
        table = Learner.__tablename__
        await uow.session.execute(
            text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}")
        )
        first = (await uow.learners.resolve("telegram", str(ids[0]), "", None, app.settings)).id
        await insert_ignore_many(
            uow.session,
            Enrolment,
            [dict(learner_id=first + i, course_id=1) for i in range(learners)],
        )
        now = app.clock.now()
        session = await uow.sessions.add(
            course_id=1,
            starts_at=now + timedelta(seconds=starts_in),
            url=LIVE_URL,
            status="scheduled",
            duration_minutes=60,
        )
        await plan_notices(uow, session, app.settings, now)
        await uow.commit()
    await app.close()


class RoundRobin:
    """A tiny load balancer: each webhook POST goes to the next web process."""

    def __init__(self, ports: list[int]) -> None:
        self.targets = itertools.cycle(ports)
        self.port = free_port()
        self.http: aiohttp.ClientSession | None = None
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen on a free port."""
        app = web.Application()
        app.router.add_post("/telegram", self._forward)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        self.http = aiohttp.ClientSession()

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        url = f"http://127.0.0.1:{next(self.targets)}/telegram"
        async with self.http.post(url, data=body, headers=dict(request.headers)) as resp:
            return web.Response(status=resp.status, body=await resp.read())

    async def stop(self) -> None:
        """Close the proxy."""
        await self.http.close()
        await self.runner.cleanup()


def spawn(role: str, url: str, tg: FakeTelegram, web_port: int, proxy: RoundRobin, log: Path):
    """One `coursebot run --role …` process."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": url,
        "TELEGRAM_BOT_TOKEN": tg.token,
        "TELEGRAM_API_URL": tg.base_url,
        "TELEGRAM_WEBHOOK_URL": f"http://127.0.0.1:{proxy.port}/telegram",
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "WEB_PORT": str(web_port),
        "SEND_RATE_PER_SECOND": "100000",
        "REMINDER_OFFSETS": "3s",
        "LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "bot", "run", "--role", role]
    return subprocess.Popen(command, cwd=log.parent, env=env, stdout=log.open("w"), stderr=-2)


async def healthy(port: int, timeout: float = 60) -> None:
    """Wait until a web process answers /healthz."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"web process on {port} never became healthy")


async def push(tg: FakeTelegram, n: int) -> float:
    """n /catalog updates, 50 in flight; updates/s until every reply arrived."""
    users = [tg.user(FIRST_TALKER + i, language_code="zh") for i in range(max(1, n // 10))]
    gate = asyncio.Semaphore(50)
    before = len(tg.sent)

    async def one(i: int) -> None:
        async with gate:
            await users[i % len(users)].send("/catalog")

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    await tg.wait_until(lambda: len(tg.sent) - before >= n, timeout=600, what="replies")
    return n / (time.perf_counter() - started)


def notices_once(tg: FakeTelegram, learners: int) -> tuple[int, int]:
    """(learners with exactly one reminder and one link, learners with any duplicate)."""
    exact = duplicated = 0
    for user_id in range(FIRST_LEARNER, FIRST_LEARNER + learners):
        texts = [m.get("text") or "" for m in tg.messages_for(user_id)]
        links = sum(LIVE_URL in t for t in texts)
        reminders = len(texts) - links
        exact += links == 1 and reminders == 1
        duplicated += links > 1 or reminders > 1
    return exact, duplicated


async def run(pg: str, processes: int, updates: int, learners: int, folder: Path) -> str:
    """One scale-out run; returns its line of figures."""
    url = await reset_postgres(pg)
    await prepare(url, learners, starts_in=40)
    ports = [free_port() for _ in range(processes)]
    proxy = RoundRobin(ports)
    await proxy.start()
    children = []
    async with FakeTelegram() as tg:
        for user_id in range(FIRST_LEARNER, FIRST_LEARNER + learners):
            tg.user(user_id)
        try:
            for n, port in enumerate(ports):
                children.append(spawn("web", url, tg, port, proxy, folder / f"web{n}.log"))
            for port in ports:
                await healthy(port)
            for role in ("scheduler", "sender"):
                children.append(spawn(role, url, tg, free_port(), proxy, folder / f"{role}.log"))
            rate = await push(tg, updates)
            await tg.wait_until(
                lambda: notices_once(tg, learners)[0] == learners, timeout=120, what="notices"
            )
            await asyncio.sleep(2)  # a duplicate would arrive now
            exact, duplicated = notices_once(tg, learners)
        finally:
            for child in children:
                child.terminate()
            for child in children:
                child.wait(10)
            await proxy.stop()
    return (
        f"{processes} web process(es): {rate:7.1f} updates/s; notices exactly once "
        f"{exact}/{learners}, duplicated {duplicated}"
    )


async def main() -> None:
    """Run the scale-out measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", required=True, help="a PostgreSQL URL (its schema is wiped)")
    parser.add_argument("--updates", type=int, default=600)
    parser.add_argument("--learners", type=int, default=200)
    parser.add_argument("--processes", default="1,2,3")
    args = parser.parse_args()
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"coursebot-scaleout-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"scale-out on PostgreSQL, webhook mode, {args.updates} /catalog (logs {folder})")
    for processes in (int(p) for p in args.processes.split(",")):
        print(await run(args.pg, processes, args.updates, args.learners, folder), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
