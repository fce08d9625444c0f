"""One learner across Telegram and WeChat: /link codes, the merge, the channel used last."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from bot.bootstrap import build_app
from bot.channels.telegram_aiogram import AiogramChannel
from bot.channels.wechat import WeChatChannel
from bot.demo import seed_demo
from bot.runner import start_channels
from storage.models import Enrolment, Learner
from tests.bot.wechat_support import invoice_code_url
from tests.conftest import make_settings
from tests.fakes.telegram_api import has
from tests.fakes.wechat_api import FakeWeChat, free_port

CODE = re.compile(r"\b(\d{6})\b")


@pytest.fixture
async def both(sqlite_url, clock, tg, tmp_path):
    """One app serving Telegram (polling the fake Bot API) and WeChat (the fake WeChat)."""
    async with FakeWeChat(tmp_path / "keys") as wx:
        port = free_port()
        settings = make_settings(
            sqlite_url,
            telegram_bot_token=tg.token,
            telegram_api_url=tg.base_url,
            web_port=port,
            wechatpay_notify_url=f"http://127.0.0.1:{port}/wechat/pay/notify",
            **wx.settings(),
        )
        app = await build_app(settings, clock=clock)
        async with app.uow() as uow:
            await seed_demo(uow)
            await uow.commit()
        telegram, wechat = AiogramChannel(app), WeChatChannel(app, refresher=True)
        await start_channels(app, [telegram, wechat])
        wx.bot_url = f"http://127.0.0.1:{port}"
        yield app, wechat, wx
        await telegram.stop()
        await wechat.stop()
        await app.close()


async def test_buy_on_wechat_link_then_telegram_sees_the_course(both, tg, clock):
    app, wechat, wx = both
    wx_user = wx.user("oLinker0001")
    _, code_url = await invoice_code_url(app, wechat, wx_user)
    await wx.pay(code_url, wx_user.openid)
    await wx_user.wait_for(lambda m: "支付成功" in m.get("text", ""))

    tg_user = tg.user(5001, first_name="Li", language_code="zh")
    await tg_user.send("/mycourses")
    await tg_user.wait_for_message(has("还没有"))

    given = await wx_user.send_text("/link")
    code = CODE.search(given.reply).group(1)
    await tg_user.send(f"/link {code}")
    await tg_user.wait_for_message(has("已绑定"))
    await tg_user.send("/mycourses")
    mine = await tg_user.wait_for_message(has("Python 入门"))
    assert "我的课程" in mine["text"]
    async with app.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Learner)) == 1
        assert await uow.session.scalar(select(func.count()).select_from(Enrolment)) == 1
        learner_id = (await uow.learners.identity("telegram", "5001")).learner_id
        # A reminder goes to the channel used last: Telegram (the link was entered there) …
        recipient = (await uow.audience.of_learners([learner_id]))[learner_id]
        assert recipient.channel == "telegram"
    # … and to WeChat once the learner writes there again.
    wechat.seen_every = 0.0  # record every message (the default is once a minute per user)
    await wx_user.send_text("帮助")
    await wechat.writes.flush()  # "last seen" is written behind the reply, in a batch
    async with app.uow() as uow:
        recipient = (await uow.audience.of_learners([learner_id]))[learner_id]
        assert (recipient.channel, recipient.user_ref) == ("wechat", wx_user.openid)
        # Falling back: when WeChat is unreachable the other channel gets it.
        await uow.learners.mark_unreachable("wechat", wx_user.openid, clock.now())
        await uow.commit()
    async with app.uow() as uow:
        assert (await uow.audience.of_learners([learner_id]))[learner_id].channel == "telegram"


async def test_codes_are_one_time_expire_and_refuse_guessing(both, tg, clock):
    app, wechat, wx = both
    wx_user = wx.user("oLinker0002")
    code = CODE.search((await wx_user.send_text("/link")).reply).group(1)
    assert "另一个渠道" in (await wx_user.send_text(f"/link {code}")).reply  # own code
    clock.advance(minutes=11)
    tg_user = tg.user(5002, language_code="zh")
    await tg_user.send(f"/link {code}")
    await tg_user.wait_for_message(has("过期"))
    fresh = CODE.search((await wx_user.send_text("/link")).reply).group(1)
    wrong = f"{(int(fresh) + 1) % 1_000_000:06d}"
    for _ in range(5):
        await tg_user.send(f"/link {wrong}")
        await tg_user.wait_for_message(has("无效"))
    await tg_user.send(f"/link {fresh}")
    await tg_user.wait_for_message(has("太多"))
    async with app.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Learner)) == 2


async def test_merge_keeps_one_enrolment_when_both_owned_the_course(app):
    """Both learners bought course 1: after the merge one learner owns it once, both
    payments stay recorded."""
    from services import linking

    async with app.uow() as uow:
        a = await uow.learners.resolve("telegram", "7001", "", None, app.settings)
        b = await uow.learners.resolve("wechat", "oMerge0001", "", None, app.settings)
        for learner in (a, b):
            await uow.enrolments.add(learner.id, 1, None)
        await uow.enrolments.add(b.id, 2, None)
        code = await linking.issue_code(uow, a.id, app.clock.now())
        result = await linking.redeem(uow, code, b, app.clock.now())
        await uow.commit()
        assert result.outcome == "linked" and result.channels == ("telegram", "wechat")
    async with app.uow() as uow:
        assert await uow.enrolments.course_ids_of(b.id) == {1, 2}
        assert await uow.learners.get(a.id) is None
        assert (await uow.learners.identity("telegram", "7001")).learner_id == b.id
