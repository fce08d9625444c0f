"""A WeChat admin sets a course cover: `/cover <id>`, then a picture (WeChat pictures carry no
caption); the channel fetches it as temporary media and the card then shows it as an image."""

from __future__ import annotations

from services.catalog import cover_of
from tests.bot.wechat_support import ADMIN_WX

PICTURE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


async def test_cover_then_a_picture_sets_the_cover(wechat, wx):
    app, _ = wechat
    admin = wx.user(ADMIN_WX)
    assert "#2" in (await admin.send_text("/cover 2")).reply
    assert "封面已更新" in (await admin.send_image(PICTURE)).reply
    assert [c for c in wx.api_calls if c[0] == "media/get"], "fetched as temporary media"
    async with app.uow() as uow:
        assert await cover_of(uow, 2) == PICTURE


async def test_a_learners_picture_changes_nothing(wechat, wx):
    app, _ = wechat
    learner = wx.user("oLearnerPic001")
    await learner.send_text("/cover 2")
    reply = (await learner.send_image(PICTURE)).reply
    assert reply and "封面" not in reply
    async with app.uow() as uow:
        assert await cover_of(uow, 2) is None
