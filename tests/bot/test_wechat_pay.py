"""WeChat Pay APIv3 Native against the fake: QR code, verified notifications, idempotency,
forged and wrong-amount notifications, the order query job, refunds."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bot.channels.wechat_pay import FRESH_SECONDS, fresh
from storage.models import Enrolment, Order, Payment, WeChatPayOrder
from tests.bot.wechat_support import ADMIN_WX, invoice_code_url, start_wechat_app


async def count(app, model, *where) -> int:
    async with app.uow() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(model).where(*where)))


@pytest.fixture
async def wechat(db_url, clock, wx):
    app, channel = await start_wechat_app(db_url, clock, wx)
    yield app, channel
    await channel.stop()
    await app.close()


async def test_invoice_is_a_qr_image_and_code_url_of_a_native_order(wechat, wx):
    app, channel = wechat
    user = wx.user("oBuyer0001")
    order_id, code_url = await invoice_code_url(app, channel, user)
    image = next(m for m in user.messages if m["type"] == "image")
    assert image["image"].startswith(b"\x89PNG")
    order = wx.order_by_code(code_url)
    assert order["out_trade_no"].startswith(f"CB{order_id}X") and order["total"] == 19900
    # The same invoice again reuses the open Native order.
    async with app.uow() as uow:
        assert await uow.wechat.pay.count_of(order_id) == 1


async def test_five_concurrent_notifications_give_one_payment_and_one_enrolment(wechat, wx):
    app, channel = wechat
    user = wx.user("oBuyer0002")
    order_id, code_url = await invoice_code_url(app, channel, user)
    order, statuses = await wx.pay(code_url, user.openid, copies=5)
    assert statuses == [200] * 5
    assert await count(app, Payment, Payment.provider_charge_id == order["transaction_id"]) == 1
    assert await count(app, Enrolment) == 1
    await user.wait_for(lambda m: "支付成功" in m.get("text", ""))
    assert len([t for t in user.texts() if "支付成功" in t]) == 1
    async with app.uow() as uow:
        assert (await uow.orders.get(order_id)).status == "paid"
        row = await uow.wechat.pay.get(order["out_trade_no"])
        assert row.status == "paid" and row.transaction_id == order["transaction_id"]


async def test_forged_and_wrong_amount_notifications_change_nothing(wechat, wx):
    app, channel = wechat
    user = wx.user("oBuyer0003")
    order_id, code_url = await invoice_code_url(app, channel, user)
    order = wx.order_by_code(code_url)
    wx.mark_paid(order, user.openid)
    assert await wx.notify(order, forge=True) == 401
    assert await wx.notify(order, total=1) == 400
    assert await count(app, Payment) == 0 and await count(app, Enrolment) == 0
    async with app.uow() as uow:
        assert (await uow.orders.get(order_id)).status == "pending"
        assert (await uow.wechat.pay.get(order["out_trade_no"])).status == "pending"
    assert await wx.notify(order) == 200  # the genuine one still enrols
    assert await count(app, Enrolment) == 1


async def test_stale_or_future_notifications_are_replays_and_change_nothing(wechat, wx):
    """Wechatpay-Timestamp more than 5 minutes from now: refused, even correctly signed."""
    app, channel = wechat
    user = wx.user("oBuyer0009")
    order_id, code_url = await invoice_code_url(app, channel, user)
    order = wx.order_by_code(code_url)
    wx.mark_paid(order, user.openid)
    assert await wx.notify(order, age=FRESH_SECONDS + 5) == 401  # an old one replayed
    assert await wx.notify(order, age=-(FRESH_SECONDS + 5)) == 401  # signed "in the future"
    assert await count(app, Payment) == 0 and await count(app, Enrolment) == 0
    async with app.uow() as uow:
        assert (await uow.orders.get(order_id)).status == "pending"
        assert (await uow.wechat.pay.get(order["out_trade_no"])).status == "pending"
    assert await wx.notify(order, age=FRESH_SECONDS - 30) == 200  # late but inside the window
    assert await count(app, Enrolment) == 1


def test_freshness_window_edges():
    now = 1_800_000_000
    assert fresh({"Wechatpay-Timestamp": str(now - FRESH_SECONDS)}, now)
    assert not fresh({"Wechatpay-Timestamp": str(now - FRESH_SECONDS - 1)}, now)
    assert not fresh({"Wechatpay-Timestamp": str(now + FRESH_SECONDS + 1)}, now)
    assert not fresh({"Wechatpay-Timestamp": "soon"}, now) and not fresh({}, now)


async def test_a_missing_notification_is_settled_by_the_order_query(wechat, wx, clock):
    app, channel = wechat
    user = wx.user("oBuyer0004")
    _, code_url = await invoice_code_url(app, channel, user)
    order, _ = await wx.pay(code_url, user.openid, notify=False)
    assert (await channel.settle_unpaid())["queried"] == 0  # too young to query
    clock.advance(minutes=2)
    assert (await channel.settle_unpaid())["paid"] == 1
    assert await count(app, Enrolment) == 1
    assert (await channel.settle_unpaid())["queried"] == 0  # settled: never queried again
    assert await wx.notify(order) == 200  # the late notification is a duplicate
    assert await count(app, Payment) == 1


async def test_an_unpaid_expired_order_is_closed_by_the_query(wechat, wx, clock):
    app, channel = wechat
    user = wx.user("oBuyer0005")
    _, code_url = await invoice_code_url(app, channel, user)
    clock.advance(hours=3)
    assert (await channel.settle_unpaid())["closed"] == 1
    assert wx.order_by_code(code_url)["trade_state"] == "CLOSED"
    assert await count(app, WeChatPayOrder, WeChatPayOrder.status == "closed") == 1
    assert await count(app, Enrolment) == 0


async def test_admin_refund_goes_through_the_refund_api_and_revokes(wechat, wx):
    app, channel = wechat
    user = wx.user("oBuyer0006")
    _, code_url = await invoice_code_url(app, channel, user)
    order, _ = await wx.pay(code_url, user.openid)
    async with app.uow() as uow:
        payment = await uow.payments.by_charge(order["transaction_id"])
    admin = wx.user(ADMIN_WX)
    asked = await admin.send_text(f"/refund {payment.id}")
    assert f"#{payment.id}" in asked.reply and not wx.refunds, "/refund asks first"
    done = await admin.send_text("1")  # 1. ✅ Yes, refund ¥199.00
    assert done.reply and wx.refunds and wx.refunds[0]["amount"]["refund"] == 19900
    assert await count(app, Enrolment) == 0
    assert await count(app, Order, Order.status == "refunded") == 1
