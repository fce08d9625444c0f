"""Fixtures of the channel tests: the fake WeChat servers and the app serving them."""

from __future__ import annotations

import pytest

from tests.bot.wechat_support import start_wechat_app
from tests.fakes.wechat_api import FakeWeChat


@pytest.fixture
async def wx(tmp_path):
    """The fake WeChat servers (Official Account API and WeChat Pay)."""
    async with FakeWeChat(tmp_path / "keys") as fake:
        yield fake


@pytest.fixture
async def wechat(sqlite_url, clock, wx):
    """The app serving `/wechat` on SQLite against the fake; yields (app, channel)."""
    app, channel = await start_wechat_app(sqlite_url, clock, wx)
    yield app, channel
    await channel.stop()
    await app.close()
