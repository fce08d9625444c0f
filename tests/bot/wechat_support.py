"""Starting the app with the real WeChat channel against the fake WeChat servers."""

from __future__ import annotations

import re
import time

from bot.bootstrap import build_app
from bot.channels.wechat import WeChatChannel
from bot.core import Invoice, Reply
from bot.demo import seed_demo
from bot.runner import start_channels
from tests.conftest import ADMIN_TG, make_settings
from tests.fakes.wechat_api import free_port

ADMIN_WX = "oAdminWeChat0001"
CODE_URL = re.compile(r"weixin://\S+")


async def start_wechat_app(db_url: str, clock, wx, refresher: bool = True, **overrides):
    """The app serving `/wechat` on a free port, pointed at the fake; returns (app, channel)."""
    port = free_port()
    values = dict(
        web_port=port,
        wechatpay_notify_url=f"http://127.0.0.1:{port}/wechat/pay/notify",
        admins=frozenset({f"telegram:{ADMIN_TG}", f"wechat:{ADMIN_WX}", "console:me"}),
        **wx.settings(),
    )
    values.update(overrides)
    app = await build_app(make_settings(db_url, **values), clock=clock)
    async with app.uow() as uow:
        await seed_demo(uow)
        await uow.commit()
    channel = WeChatChannel(app, refresher=refresher)
    await start_channels(app, [channel])
    wx.bot_url = f"http://127.0.0.1:{port}"
    return app, channel


async def open_order(app, openid: str, course_id: int = 1, amount: int | None = None):
    """A pending CNY order of `openid` for a course (as the purchase handler makes it)."""
    async with app.uow() as uow:
        learner = await uow.learners.resolve("wechat", openid, "", None, app.settings)
        course = await uow.courses.get(course_id)
        order = await uow.orders.create(
            learner_id=learner.id,
            course_id=course.id,
            channel="wechat",
            currency="CNY",
            amount=course.price_fen if amount is None else amount,
        )
        await uow.commit()
        return order.id, order.amount


def invoice_reply(order_id: int, amount: int) -> Reply:
    """The reply the purchase handler returns for a WeChat order."""
    invoice = Invoice(
        title="Python 入门",
        description="Python 入门：从零开始学编程",
        payload=f"order:{order_id}",
        currency="CNY",
        amount=amount,
        label="Python 入门",
    )
    return Reply("请扫码支付", invoice=invoice)


async def invoice_code_url(app, channel, user, course_id: int = 1) -> tuple[int, str]:
    """Open an order for `user`, send its invoice, return (order id, code_url shown)."""
    user.fake.active[user.openid] = time.time()  # the learner just wrote (48-hour window)
    order_id, amount = await open_order(app, user.openid, course_id)
    await channel.send(user.openid, invoice_reply(order_id, amount))
    text = await user.wait_for(lambda m: m["type"] == "text" and "weixin://" in m["text"])
    return order_id, CODE_URL.search(text["text"]).group(0)
