"""Inbound throughput: our bot vs a bare aiogram echo bot on the same fake Bot API server.

Usage: python bench/inbound.py [N]   (default N=1000 updates)
Prints updates/s for each bot, their ratio, and the p50/p99 pre-checkout answer latency.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiogram import Bot, Dispatcher, Router  # noqa: E402
from aiogram.client.session.aiohttp import AiohttpSession  # noqa: E402
from aiogram.client.telegram import TelegramAPIServer  # noqa: E402
from aiogram.types import Message  # noqa: E402

from tests.conftest import FixedClock, start_telegram_app  # noqa: E402
from tests.fakes.telegram_api import FakeTelegram  # noqa: E402


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


async def run_ours(n: int) -> float:
    """Updates per second handled by coursebot (polling, SQLite file)."""
    async with FakeTelegram() as tg:
        db = Path(tempfile.mkdtemp()) / "bench.db"
        app, channel = await start_telegram_app(f"sqlite+aiosqlite:///{db}", FixedClock(), tg)
        try:
            return await catalog_rate(tg, n)
        finally:
            await channel.stop()
            await app.close()


async def run_echo(n: int) -> float:
    """Updates per second handled by a bare aiogram echo bot in the same polling mode."""
    async with FakeTelegram() as tg:
        bot = Bot(tg.token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url)))
        router = Router()

        @router.message()
        async def echo(message: Message) -> None:
            await message.answer(message.text or "")

        dp = Dispatcher()
        dp.include_router(router)
        task = asyncio.create_task(
            dp.start_polling(bot, handle_signals=False, handle_as_tasks=False)
        )
        try:
            return await catalog_rate(tg, n)
        finally:
            await dp.stop_polling()
            await asyncio.gather(task, return_exceptions=True)
            await bot.session.close()


async def pre_checkout_latency(payments: int) -> list[float]:
    """Seconds from a pre-checkout query to its answer, under a background /catalog load."""
    async with FakeTelegram() as tg:
        db = Path(tempfile.mkdtemp()) / "bench.db"
        app, channel = await start_telegram_app(f"sqlite+aiosqlite:///{db}", FixedClock(), tg)
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


def main() -> None:
    """Run both bots and print the figures."""
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    ours = asyncio.run(run_ours(n))
    echo = asyncio.run(run_echo(n))
    latencies = sorted(asyncio.run(pre_checkout_latency(100)))
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"updates: {n} (polling, sequential handling, SQLite file)")
    print(f"coursebot       : {ours:8.1f} updates/s")
    print(f"aiogram echo bot: {echo:8.1f} updates/s")
    print(f"ratio ours/echo : {ours / echo:8.2f}")
    print(f"pre-checkout answer latency over {len(latencies)} payments under load: "
          f"p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")


if __name__ == "__main__":
    main()
