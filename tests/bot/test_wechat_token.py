"""The access token: one refresher, stored in the database, workers only read it."""

from __future__ import annotations

import asyncio

import pytest

from bot.channels.wechat import WeChatChannel
from bot.core import ChannelError, Reply
from tests.bot.wechat_support import start_wechat_app


async def _users(wx, n: int) -> list:
    users = [wx.user(f"oWorker{i:04d}") for i in range(n)]
    for user in users:
        wx.active[user.openid] = 10**12  # inside the 48-hour window
    return users


async def test_four_workers_meeting_an_expired_token_cause_one_fetch(sqlite_url, clock, wx):
    """Four worker processes (own channel and token keeper each, one database) and the one
    refresher: WeChat says 42001 to all four; one stable_token call serves them all."""
    app, refresher = await start_wechat_app(sqlite_url, clock, wx, refresher=True)
    workers = [WeChatChannel(app, refresher=False) for _ in range(4)]
    try:
        await refresher.tokens.refresh_if_due()
        assert wx.stable_fetches == 1
        users = await _users(wx, 4)
        wx.expire_tokens()

        async def refresher_loop() -> None:  # the scheduler role's job, every 50 ms here
            for _ in range(60):
                await refresher.tokens.refresh_if_due()
                await asyncio.sleep(0.05)

        loop = asyncio.create_task(refresher_loop())
        await asyncio.gather(
            *(w.send(u.openid, Reply("你好")) for w, u in zip(workers, users, strict=True))
        )
        loop.cancel()
        assert wx.stable_fetches == 2
        assert all(u.texts() == ["你好"] for u in users)
    finally:
        for channel in workers:
            await channel.stop()
        await refresher.stop()
        await app.close()


async def test_even_four_refreshers_at_once_fetch_once(sqlite_url, clock, wx):
    """The lease: however many refreshers meet the expired token together, one fetches."""
    app, first = await start_wechat_app(sqlite_url, clock, wx, refresher=True)
    channels = [first] + [WeChatChannel(app, refresher=True) for _ in range(3)]
    try:
        users = await _users(wx, 4)
        await asyncio.gather(
            *(c.send(u.openid, Reply("一")) for c, u in zip(channels, users, strict=True))
        )
        assert wx.stable_fetches == 1
        wx.expire_tokens()
        await asyncio.gather(
            *(c.send(u.openid, Reply("二")) for c, u in zip(channels, users, strict=True))
        )
        assert wx.stable_fetches == 2
        assert all(u.texts() == ["一", "二"] for u in users)
    finally:
        for channel in channels[1:]:
            await channel.stop()
        await first.stop()
        await app.close()


async def test_a_worker_without_refresher_gives_up_and_the_outbox_retries(sqlite_url, clock, wx):
    app, worker = await start_wechat_app(
        sqlite_url, clock, wx, refresher=False, wechat_token_wait_seconds=0.2
    )
    try:
        (user,) = await _users(wx, 1)
        with pytest.raises(ChannelError):
            await worker.send(user.openid, Reply("hi"))
        assert wx.token_fetches == 0
        async with app.uow() as uow:  # the request for the refresher was left
            assert await uow.kv.get(worker.tokens.stale_key) is not None
        assert await worker.tokens.refresh_if_due()  # what the scheduler job does
        await worker.send(user.openid, Reply("hi"))
        assert user.texts() == ["hi"] and wx.token_fetches == 1
    finally:
        await worker.stop()
        await app.close()


async def test_token_expiring_soon_is_renewed_by_the_job_only(sqlite_url, clock, wx):
    app, channel = await start_wechat_app(sqlite_url, clock, wx, refresher=True)
    try:
        assert await channel.tokens.refresh_if_due()
        assert not await channel.tokens.refresh_if_due()  # fresh: nothing to do
        clock.advance(seconds=7200 - 100)
        assert await channel.tokens.refresh_if_due() or wx.stable_fetches == 2
        assert wx.stable_fetches == 2
    finally:
        await channel.stop()
        await app.close()
