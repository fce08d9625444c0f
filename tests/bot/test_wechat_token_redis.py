"""The access token in Redis (`REDIS_URL`): one refresher, workers of any database read it.

A real `redis-server` is started on a free port; without the binary the tests skip locally
and fail in CI (`COURSEBOT_REQUIRE_REDIS=1`, set by `.ci/run`)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time

import pytest

from bot.channels.wechat import WeChatChannel
from bot.channels.wechat_token import RedisTokenStore
from bot.core import ChannelError, Reply
from tests.bot.wechat_support import start_wechat_app
from tests.conftest import free_port

REQUIRE_REDIS = os.environ.get("COURSEBOT_REQUIRE_REDIS") == "1"


def _unavailable(reason: str) -> None:
    if REQUIRE_REDIS:
        pytest.fail(f"COURSEBOT_REQUIRE_REDIS=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def redis_url(tmp_path):
    """A real redis-server of this test on a free port (no persistence); its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable("redis-server is not installed (apt-get install redis-server)")
    try:
        import redis  # noqa: F401
    except ImportError:
        _unavailable('the redis package is not installed (pip install -e ".[redis]")')
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    process = subprocess.Popen(
        [*args, "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_listening(port, process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_listening(port: int, process: subprocess.Popen) -> None:
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited: {process.stderr.read().decode()[-500:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError("redis-server did not start listening")


def _users(wx, n: int) -> list:
    users = [wx.user(f"oRedis{i:04d}") for i in range(n)]
    for user in users:
        wx.active[user.openid] = 10**12  # inside the 48-hour window
    return users


async def _refresh_loop(keeper) -> None:
    """The scheduler role's token job, every 50 ms here."""
    for _ in range(60):
        await keeper.refresh_if_due()
        await asyncio.sleep(0.05)


async def test_workers_on_another_database_read_the_token_from_redis(
    tmp_path, clock, wx, redis_url
):
    """The refresher and four workers share only Redis (two SQLite files): an expired token
    meets all four workers, and one stable_token call serves them all."""
    db_a = f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"
    db_b = f"sqlite+aiosqlite:///{tmp_path / 'b.db'}"
    app, refresher = await start_wechat_app(db_a, clock, wx, refresher=True, redis_url=redis_url)
    other, first = await start_wechat_app(db_b, clock, wx, refresher=False, redis_url=redis_url)
    workers = [first] + [WeChatChannel(other, refresher=False) for _ in range(3)]
    try:
        assert isinstance(refresher.tokens.store, RedisTokenStore)
        await refresher.tokens.refresh_if_due()
        assert wx.stable_fetches == 1
        key = refresher.tokens.key
        assert 7000 < await refresher.tokens.store.redis.ttl(key) <= 7200
        async with app.uow() as uow:
            assert await uow.kv.get(key) is None  # not in the database
        users = _users(wx, 4)
        wx.expire_tokens()
        loop = asyncio.create_task(_refresh_loop(refresher.tokens))
        await asyncio.gather(
            *(w.send(u.openid, Reply("你好")) for w, u in zip(workers, users, strict=True))
        )
        loop.cancel()
        assert wx.stable_fetches == 2
        assert all(u.texts() == ["你好"] for u in users)
    finally:
        for channel in [*workers, refresher]:
            await channel.stop()
        await other.close()
        await app.close()


async def test_four_refreshers_at_once_fetch_once_through_the_redis_lease(
    sqlite_url, clock, wx, redis_url
):
    app, first = await start_wechat_app(sqlite_url, clock, wx, redis_url=redis_url)
    channels = [first] + [WeChatChannel(app, refresher=True) for _ in range(3)]
    try:
        users = _users(wx, 4)
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
        for channel in channels:
            await channel.stop()
        await app.close()


async def test_a_worker_leaves_its_request_in_redis_for_the_refresher(
    sqlite_url, clock, wx, redis_url
):
    app, worker = await start_wechat_app(
        sqlite_url,
        clock,
        wx,
        refresher=False,
        wechat_token_wait_seconds=0.2,
        redis_url=redis_url,
    )
    try:
        (user,) = _users(wx, 1)
        with pytest.raises(ChannelError):
            await worker.send(user.openid, Reply("hi"))
        assert wx.token_fetches == 0
        assert await worker.tokens.store.get(worker.tokens.stale_key) is not None
        assert await worker.tokens.refresh_if_due()  # what the scheduler job does
        assert await worker.tokens.store.get(worker.tokens.stale_key) is None
        await worker.send(user.openid, Reply("hi"))
        assert user.texts() == ["hi"] and wx.token_fetches == 1
    finally:
        await worker.stop()
        await app.close()
