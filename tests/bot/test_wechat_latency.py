"""The passive-reply path under load: the write-behind of options and "last seen", and the
budget that covers every wait (the 5-second rule)."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.channels.wechat import options_key
from bot.core import Button
from tests.bot.wechat_support import start_wechat_app
from tests.fakes.wechat_api import FakeWeChat


@pytest.fixture
async def wx(tmp_path):
    async with FakeWeChat(tmp_path / "keys", timeout=2.0) as fake:
        yield fake


async def test_a_typed_number_right_after_the_reply_uses_the_options_not_yet_written(wechat, wx):
    app, channel = wechat
    channel.writes.delay = 5.0  # the batch is not written before the number comes
    user = wx.user("oFastTyper")
    listing = await user.send_text("课程")
    assert "\n1. " in listing.reply
    seen = []
    real = app.dispatcher.dispatch

    async def spy(msg):
        seen.append((msg.kind, msg.payload))
        return await real(msg)

    app.dispatcher.dispatch = spy
    shown = channel.writes.pending(user.openid)
    assert shown is not None  # not in the database yet
    await user.send_text("1")
    assert seen == [("button", shown[0][1])]
    await channel.writes.flush()
    async with app.uow() as uow:  # then every worker reads the latest from the database
        stored = await uow.kv.get(options_key(user.openid))
    assert stored["options"] == channel._shown[user.openid]


async def test_a_burst_of_replies_writes_its_options_in_one_transaction(wechat):
    app, channel = wechat
    users = [f"oBurst{n:03d}" for n in range(20)]
    for n, user_ref in enumerate(users):  # 20 passive replies in a burst
        await channel._remember(user_ref, [Button(f"第 {n} 课", f"course:{n + 1}")])
    while channel.writes.pending(users[-1]) is not None:
        await asyncio.sleep(0.01)
    assert channel.writes.batches == 1
    async with app.uow() as uow:
        stored = [await uow.kv.get(options_key(u)) for u in users]
    assert [s["options"][0][1] for s in stored] == [f"course:{n + 1}" for n in range(20)]


async def test_waiting_for_the_database_stays_inside_the_budget(sqlite_url, clock, wx):
    """A slow handler holds SQLite's write lock; another learner's typed number waits behind
    it, yet WeChat gets `success` within the budget and the reply follows by customer service."""
    app, channel = await start_wechat_app(sqlite_url, clock, wx, wechat_reply_budget_seconds=0.5)
    try:
        await _slow_one_ahead(app, wx)
    finally:
        await channel.stop()
        await app.close()


async def _slow_one_ahead(app, wx) -> None:
    real = app.dispatcher.dispatch

    async def slow_for_one(msg):
        if msg.user_ref == "oSlowOne":  # a long write transaction
            async with app.uow() as uow:
                await uow.kv.put("slow", {"holding": "the write lock"})
                await asyncio.sleep(1.0)
                await uow.commit()
        return await real(msg)

    app.dispatcher.dispatch = slow_for_one
    slow, other = wx.user("oSlowOne"), wx.user("oWaiting")
    first = asyncio.create_task(slow.send_text("帮助"))
    await asyncio.sleep(0.1)
    started = time.perf_counter()
    behind = await other.send_text("1")  # a typed number: reads the options, then dispatches
    assert time.perf_counter() - started < 0.9 and behind.reply is None and not behind.failed
    await first
    await other.wait_for(lambda m: m["via"] == "custom", timeout=5)
