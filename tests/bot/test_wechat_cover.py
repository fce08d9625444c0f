"""A WeChat admin sets a course cover: `/cover <id>`, then a picture (WeChat pictures carry no
caption); the channel fetches it as temporary media and the card then shows it as an image."""

from __future__ import annotations

import pytest

from services.catalog import cover_of
from tests.bot.wechat_support import ADMIN_WX, start_wechat_app
from tests.fakes.wechat_api import FakeWeChat

PICTURE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture
async def wechat(sqlite_url, clock, tmp_path):
    async with FakeWeChat(tmp_path / "keys") as wx:
        app, channel = await start_wechat_app(sqlite_url, clock, wx)
        yield app, wx
        await channel.stop()
        await app.close()


async def test_cover_then_a_picture_sets_the_cover(wechat):
    app, wx = wechat
    admin = wx.user(ADMIN_WX)
    assert "#2" in (await admin.send_text("/cover 2")).reply
    assert "封面已更新" in (await admin.send_image(PICTURE)).reply
    assert [c for c in wx.api_calls if c[0] == "media/get"], "fetched as temporary media"
    async with app.uow() as uow:
        assert await cover_of(uow, 2) == PICTURE


async def test_a_learners_picture_changes_nothing(wechat):
    app, wx = wechat
    learner = wx.user("oLearnerPic001")
    await learner.send_text("/cover 2")
    reply = (await learner.send_image(PICTURE)).reply
    assert reply and "封面" not in reply
    async with app.uow() as uow:
        assert await cover_of(uow, 2) is None
