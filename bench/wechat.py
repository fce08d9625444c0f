"""WeChat benchmark against the fake WeChat (and the fake Bot API for the comparison).

    python bench/wechat.py [--senders 50] [--messages 10] [--think 1] [--safe]

Prints:
- p50 / p99 / max `/wechat` answer time under N concurrent senders, each typing `messages`
  keywords in turn (课程, 帮助, 搜索 Python, numbers …) — passive replies; goal p99 < 100 ms;
  how many answers were passive, and how many messages WeChat had to push again (no answer
  within its 5 s: the 5-second rule broken). Twice:
  - closed loop (saturation): each sender types its next message the moment the answer
    arrives, so the figures are the throughput ceiling and latency ≈ senders / throughput;
  - paced (`--think`, realistic learners): each sender waits `think` seconds (±50 %, random)
    after each answer, so N senders offer about N / think messages a second;
  with the CPU per answer of this process (bot and fake), steadier than wall time when the
  machine is shared;
- how many access-token fetches the run caused (goal: 1);
- the same learner journey (browse → card → buy → pay → my courses) timed on WeChat and on
  Telegram, each against its fake.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.bootstrap import build_app  # noqa: E402
from bot.channels.telegram_aiogram import AiogramChannel  # noqa: E402
from bot.channels.wechat import WeChatChannel  # noqa: E402
from bot.core import SystemClock  # noqa: E402
from bot.demo import seed_demo  # noqa: E402
from bot.runner import start_channels  # noqa: E402
from bot.settings import Settings  # noqa: E402
from tests.bot.wechat_support import invoice_code_url  # noqa: E402
from tests.fakes.telegram_api import FakeTelegram, has  # noqa: E402
from tests.fakes.wechat_api import FakeWeChat, free_port  # noqa: E402

WORDS = ["课程", "1", "帮助", "搜索 Python", "我的课程", "/start course_2", "推荐", "2"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def make_app(folder: Path, name: str, **values):
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{folder / (name + '.db')}",
        recommender_model_path=str(folder / "none.npz"),
        log_level="WARNING",
        **values,
    )
    app = await build_app(settings, clock=SystemClock())
    async with app.uow() as uow:
        await seed_demo(uow)
        await uow.commit()
    return app


async def load(wx, senders: int, messages: int, safe: bool, think: float, prefix: str) -> None:
    """Push `messages` keywords from each of `senders` users at once; print the figures."""
    times: list[float] = []
    passive = retried = 0
    rng = random.Random(11)

    async def sender(n: int) -> None:
        nonlocal passive, retried
        user = wx.user(f"{prefix}{n:05d}", safe=safe)
        await asyncio.sleep(rng.uniform(0, think))  # paced senders do not start in step
        for i in range(messages):
            if i and think:
                await asyncio.sleep(think * rng.uniform(0.5, 1.5))
            delivery = await user.send_text(WORDS[(n + i) % len(WORDS)])
            times.extend(delivery.answer_times)
            passive += delivery.reply is not None
            retried += len(delivery.tries) > 1

    started, cpu, loop_cpu = time.perf_counter(), time.process_time(), time.thread_time()
    await asyncio.gather(*(sender(n) for n in range(senders)))
    wall = time.perf_counter() - started
    cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
    ms = [t * 1000 for t in times]
    mode = "safe (AES)" if safe else "plain"
    if think:
        print(
            f"/wechat PACED: {senders} senders × {messages} messages, each waiting {think:g} s"
            f" (±50 %) after an answer: about {senders / think:.0f} msg/s offered, {mode} mode:"
        )
    else:
        print(
            f"/wechat CLOSED LOOP (saturation): {senders} senders × {messages} messages, the"
            f" next one sent as soon as the answer arrives, {mode} mode:"
        )
    print(
        f"  answers {len(ms)} in {wall:.1f} s ({len(ms) / wall:.0f}/s), passive {passive}"
        f" (others: `success`, then customer service); retried by WeChat after 5 s: {retried}"
    )
    print(
        f"  p50 {statistics.median(ms):.1f} ms   p99 {percentile(ms, 0.99):.1f} ms   "
        f"max {max(ms):.1f} ms   (goal p99 < 100 ms)"
    )
    # CPU is steadier than wall time on a shared machine; the fake runs in this process too.
    print(
        f"  CPU per answer (bot and fake WeChat, one process): {cpu / len(ms) * 1000:.1f} ms,"
        f" {loop_cpu / len(ms) * 1000:.1f} ms of it on the event loop's thread"
    )


async def wechat_load(folder: Path, senders: int, messages: int, safe: bool, think: float):
    """The load runs (closed loop, then paced when `think` > 0) and the token fetches."""
    async with FakeWeChat(folder / "keys") as wx:
        port = free_port()
        app = await make_app(
            folder,
            "load",
            web_port=port,
            wechatpay_notify_url=f"http://127.0.0.1:{port}/wechat/pay/notify",
            **wx.settings(),
        )
        channel = WeChatChannel(app, refresher=True)
        await start_channels(app, [channel])
        wx.bot_url = f"http://127.0.0.1:{port}"
        try:
            await wx.user("oWarm").send_text("帮助")  # first contact, token not needed yet
            await load(wx, senders, messages, safe, 0.0, "oBench")
            if think:
                await load(wx, senders, messages, safe, think, "oPaced")
            # Replies that need the API (QR codes, slow handlers) use the token: fetch once.
            users = [wx.user(f"oPay{n:03d}") for n in range(10)]
            await asyncio.gather(*(invoice_code_url(app, channel, u) for u in users))
            print(
                f"access-token fetches during the runs: {wx.token_fetches} "
                f"(10 concurrent QR invoices at the end; goal 1)"
            )
        finally:
            await channel.stop()
            await app.close()


async def wechat_journey(folder: Path) -> float:
    async with FakeWeChat(folder / "keys-j") as wx:
        port = free_port()
        app = await make_app(
            folder,
            "wx-journey",
            web_port=port,
            wechatpay_notify_url=f"http://127.0.0.1:{port}/wechat/pay/notify",
            **wx.settings(),
        )
        channel = WeChatChannel(app, refresher=True)
        await start_channels(app, [channel])
        wx.bot_url = f"http://127.0.0.1:{port}"
        try:
            user = wx.user("oJourney")
            started = time.perf_counter()
            await user.send_text("课程")
            await user.send_text("1")
            await user.send_text("/start course_1")
            _, code_url = await invoice_code_url(app, channel, user)
            await wx.pay(code_url, user.openid)
            await user.wait_for(lambda m: "🎉" in m.get("text", ""))
            mine = await user.send_text("我的课程")
            assert "Python" in (mine.reply or "")
            return time.perf_counter() - started
        finally:
            await channel.stop()
            await app.close()


async def telegram_journey(folder: Path) -> float:
    async with FakeTelegram() as tg:
        app = await make_app(
            folder, "tg-journey", telegram_bot_token=tg.token, telegram_api_url=tg.base_url
        )
        channel = AiogramChannel(app)
        await start_channels(app, [channel])
        try:
            user = tg.user(4242, first_name="Li", language_code="zh")
            started = time.perf_counter()
            await user.send("/catalog")
            await user.wait_for_message(lambda m: "cat:1:0" in str(m.get("reply_markup")))
            await user.press("cat:1:0")
            await user.wait_for_message(has("1/1"))
            await user.send("/start course_1")
            await user.wait_for_message(has("#1"))
            await user.press("buy:1")
            await user.wait_for_message(lambda m: "invoice" in m)
            assert await user.pay()
            await user.wait_for_message(lambda m: "🎉" in (m.get("text") or ""))
            await user.send("/mycourses")
            await user.wait_for_message(has("Python"))
            return time.perf_counter() - started
        finally:
            await channel.stop()
            await app.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument(
        "--think",
        type=float,
        default=1.0,
        help="paced run: seconds between answer and next message (0: closed loop only)",
    )
    parser.add_argument("--safe", action="store_true", help="safe (AES) mode")
    parser.add_argument("--words", default="", help="comma-separated words instead of the mix")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    folder = Path(tempfile.mkdtemp(prefix="coursebot-bench-wechat-"))
    if args.words:
        WORDS[:] = args.words.split(",")
    await wechat_load(folder, args.senders, args.messages, args.safe, args.think)
    wx = await wechat_journey(folder)
    tg = await telegram_journey(folder)
    print("same journey (browse → card → buy → pay → my courses), each against its fake:")
    print(f"  WeChat {wx * 1000:.0f} ms   Telegram {tg * 1000:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
