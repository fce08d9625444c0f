"""Inbound throughput: coursebot on aiogram and on PTB vs a bare aiogram echo bot and a typical
aiogram + SQLAlchemy shop handler (one ORM read per update), all against one fake server.

Usage: python bench/inbound.py [N] [ROUNDS]   (default N=1000 updates, 3 rounds)
Prints updates/s for each bot (median of ROUNDS interleaved rounds) and the ratios, the same
with 50 ms of network latency on every Bot API call (coursebot's chat lanes vs one update at a
time), the p50/p99 pre-checkout answer latency of each runtime under a /catalog load, and
spawn → first getUpdates of `coursebot run` on each runtime and of the bare echo bot (medians
of ROUNDS).
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

from aiogram import Bot, Dispatcher, Router  # noqa: E402
from aiogram.client.session.aiohttp import AiohttpSession  # noqa: E402
from aiogram.client.telegram import TelegramAPIServer  # noqa: E402
from aiogram.types import Message  # noqa: E402
from sqlalchemy import BigInteger, String, select  # noqa: E402
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column  # noqa: E402

from bot.bootstrap import build_app  # noqa: E402
from bot.channels import configured_channels  # noqa: E402
from bot.channels.telegram_common import ChatLanes  # noqa: E402
from bot.demo import seed_demo  # noqa: E402
from bot.runner import start_channels  # noqa: E402
from tests.conftest import FixedClock, make_settings  # noqa: E402
from tests.fakes.telegram_api import FakeTelegram  # noqa: E402

RUNTIMES = ("aiogram", "ptb")
#: The network round trip of a Bot API call in the latency runs (seconds).
LATENCY = 0.05
ECHO = """
import asyncio, sys
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
dp = Dispatcher()
@dp.message()
async def echo(message):
    await message.answer(message.text or "")
session = AiohttpSession(api=TelegramAPIServer.from_base(sys.argv[1]))
asyncio.run(dp.start_polling(Bot(sys.argv[2], session=session), handle_signals=False))
"""


async def start_app(runtime: str, tg: FakeTelegram):
    """coursebot polling the fake with the chosen Telegram runtime, on a fresh SQLite file."""
    db = Path(tempfile.mkdtemp()) / "bench.db"
    settings = make_settings(
        f"sqlite+aiosqlite:///{db}",
        telegram_bot_token=tg.token,
        telegram_api_url=tg.base_url,
        telegram_runtime=runtime,
        # handling throughput, not the send ceiling: replies are paced at SEND_RATE_PER_SECOND
        # (25 by default, Telegram's ~30 msg/s), which the echo bot does not do
        send_rate_per_second=100_000,
    )
    app = await build_app(settings, clock=FixedClock())
    async with app.uow() as uow:
        await seed_demo(uow)
    channels = configured_channels(app)
    await start_channels(app, channels)
    # throughput, not start-up (timed below, spawn → first getUpdates): jieba's load and the
    # catalogue index build in the background after start and would share the CPU with the
    # first second of updates
    await asyncio.gather(*app.tasks)
    return app, channels[0]


async def push_messages(tg: FakeTelegram, n: int, text: str) -> None:
    """Queue n messages from n/10 users."""
    users = [tg.user(10_000 + i, language_code="zh") for i in range(max(1, n // 10))]
    for i in range(n):
        await users[i % len(users)].send(text)


async def wait_for_replies(tg: FakeTelegram, n: int, before: int) -> None:
    """Wait until n more messages were sent by the bot."""
    await tg.wait_until(lambda: len(tg.sent) - before >= n, timeout=600, what=f"{n} replies")


async def catalog_rate(tg: FakeTelegram, n: int) -> float:
    """Push n /catalog messages and return replies per second until all were answered."""
    before = len(tg.sent)
    start = time.perf_counter()
    await push_messages(tg, n, "/catalog")
    await wait_for_replies(tg, n, before)
    return n / (time.perf_counter() - start)


async def run_ours(n: int, runtime: str, latency: float = 0.0, lanes: int | None = None) -> float:
    """Updates per second handled by coursebot (polling, SQLite file) on one runtime; `lanes=1`
    handles one update at a time."""
    async with FakeTelegram() as tg:
        app, channel = await start_app(runtime, tg)
        if lanes is not None:
            channel._lanes = ChatLanes(lanes)
        tg.latency = latency
        try:
            return await catalog_rate(tg, n)
        finally:
            await channel.stop()
            await app.close()


async def run_echo(n: int) -> float:
    """Updates per second handled by a bare aiogram echo bot in the same polling mode."""
    router = Router()

    @router.message()
    async def echo(message: Message) -> None:
        await message.answer(message.text or "")

    dp = Dispatcher()
    dp.include_router(router)
    return await poll_and_measure(dp, n)


class PeerBase(DeclarativeBase):
    pass


class Customer(PeerBase):
    """The one table of the typical shop bot."""

    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    name: Mapped[str] = mapped_column(String(64))


async def run_peer(n: int) -> float:
    """Updates per second of a typical aiogram + SQLAlchemy shop bot: a middleware opens one
    AsyncSession per update, the handler reads the customer (one ORM select) and answers."""
    db = Path(tempfile.mkdtemp()) / "peer.db"
    engine = create_async_engine(f"sqlite+aiosqlite:///{db}")
    async with engine.begin() as conn:
        await conn.run_sync(PeerBase.metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session:
        session.add_all(Customer(telegram_id=10_000 + i, name=f"c{i}") for i in range(n // 10))
        await session.commit()

    async def with_session(handler, event, data):
        async with sessions() as session:
            data["session"] = session
            return await handler(event, data)

    router = Router()

    @router.message()
    async def catalog(message: Message, session) -> None:
        query = select(Customer).where(Customer.telegram_id == message.from_user.id)
        customer = await session.scalar(query)
        await message.answer(f"Hello {customer.name if customer else 'guest'}: our catalog")

    dp = Dispatcher()
    dp.message.outer_middleware(with_session)
    dp.include_router(router)
    try:
        return await poll_and_measure(dp, n)
    finally:
        await engine.dispose()


async def poll_and_measure(dp: Dispatcher, n: int) -> float:
    """Run an aiogram dispatcher polling a fresh fake; its /catalog replies per second."""
    async with FakeTelegram() as tg:
        bot = Bot(tg.token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url)))
        task = asyncio.create_task(
            dp.start_polling(bot, handle_signals=False, handle_as_tasks=False)
        )
        try:
            return await catalog_rate(tg, n)
        finally:
            await dp.stop_polling()
            await asyncio.gather(task, return_exceptions=True)
            await bot.session.close()


async def pre_checkout_latency(payments: int, runtime: str) -> list[float]:
    """Seconds from a pre-checkout query to its answer, under a background /catalog load."""
    async with FakeTelegram() as tg:
        app, channel = await start_app(runtime, tg)
        latencies = []
        try:
            load = asyncio.create_task(push_messages(tg, payments * 5, "/catalog"))
            for i in range(payments):
                user = tg.user(50_000 + i, language_code="en")
                await user.send(f"/start course_{1 + i % 16}")
                await user.wait_for_message(lambda m: "#" in (m.get("text") or ""), timeout=60)
                await user.press(f"buy:{1 + i % 16}")
                await user.wait_for_message(lambda m: "invoice" in m, timeout=60)
                start = time.perf_counter()
                assert await user.pay(timeout=10) is not None, user.last_payment_error
                latencies.append(time.perf_counter() - start)
            await load
        finally:
            await channel.stop()
            await app.close()
    return latencies


async def time_to_first_poll(tg: FakeTelegram, argv: list[str], env: dict) -> float:
    """Seconds from spawn to the process's first getUpdates."""
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
        return time.perf_counter() - start
    finally:
        proc.terminate()
        await proc.wait()


async def startup_times(rounds: int) -> dict[str, list[float]]:
    """`coursebot run` on each runtime and the bare echo bot, interleaved, spawn → getUpdates."""
    times: dict[str, list[float]] = {name: [] for name in (*RUNTIMES, "echo")}
    async with FakeTelegram() as tg:
        for _ in range(rounds):
            for runtime in RUNTIMES:
                folder = Path(tempfile.mkdtemp(prefix="coursebot-inbound-"))
                env = {
                    **os.environ,
                    "DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'bench.db'}",
                    "TELEGRAM_BOT_TOKEN": tg.token,
                    "TELEGRAM_API_URL": tg.base_url,
                    "TELEGRAM_RUNTIME": runtime,
                    "RECOMMENDER_MODEL_PATH": str(folder / "model.npz"),
                    "WEB_PORT": "0",
                    "LOG_LEVEL": "WARNING",
                }
                argv = [sys.executable, "-m", "bot", "run"]
                times[runtime].append(await time_to_first_poll(tg, argv, env))
            argv = [sys.executable, "-c", ECHO, tg.base_url, tg.token]
            times["echo"].append(await time_to_first_poll(tg, argv, dict(os.environ)))
    return times


def p99(values: list[float]) -> float:
    """The 99th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> None:
    """Run every bot and print the figures."""
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    rounds_of = {name: [] for name in (*RUNTIMES, "echo", "peer")}
    for _ in range(rounds):  # interleaved: the machine's drift touches every bot alike
        for runtime in RUNTIMES:
            rounds_of[runtime].append(asyncio.run(run_ours(n, runtime)))
        rounds_of["echo"].append(asyncio.run(run_echo(n)))
        rounds_of["peer"].append(asyncio.run(run_peer(n)))
    rates = {name: statistics.median(values) for name, values in rounds_of.items()}
    echo, peer = rates["echo"], rates["peer"]
    slow = max(100, n // 5)
    delayed = {
        (runtime, lanes): asyncio.run(run_ours(slow, runtime, LATENCY, lanes))
        for runtime in RUNTIMES
        for lanes in (1, None)
    }
    latencies = {runtime: asyncio.run(pre_checkout_latency(100, runtime)) for runtime in RUNTIMES}
    startup = asyncio.run(startup_times(rounds))
    print(
        f"updates: {n} /catalog (polling, SQLite file; echo: plain echo handler), "
        f"median of {rounds} interleaved rounds"
    )
    labels = {"echo": "bare aiogram echo bot", "peer": "typical one-read shop"}
    for name, values in rounds_of.items():
        label = labels.get(name, f"coursebot on {name}")
        each = ", ".join(f"{v:.0f}" for v in values)
        print(f"{label:<22}: {rates[name]:8.1f} updates/s ({each})")
    for runtime in RUNTIMES:
        print(
            f"{'ratio ' + runtime:<22}: {rates[runtime] / echo:8.2f} × echo, "
            f"{rates[runtime] / peer:.2f} × typical shop"
        )
    print(f"with {LATENCY * 1000:.0f} ms per Bot API call, {slow} updates:")
    for (runtime, lanes), rate in delayed.items():
        how = "one update at a time" if lanes == 1 else "chat lanes"
        print(f"  coursebot on {runtime:<8} {how:<21}: {rate:8.1f} updates/s")
    for runtime in RUNTIMES:
        lat = latencies[runtime]
        print(
            f"pre-checkout answer on {runtime:<8} over {len(lat)} payments under load: "
            f"p50 {statistics.median(lat) * 1000:.1f} ms, p99 {p99(lat) * 1000:.1f} ms"
        )
    for name, values in startup.items():
        label = "bare aiogram echo" if name == "echo" else f"coursebot run ({name})"
        print(
            f"spawn → first getUpdates, {label:<22}: median {statistics.median(values):.2f} s "
            f"({', '.join(f'{v:.2f}' for v in values)})"
        )


if __name__ == "__main__":
    main()
