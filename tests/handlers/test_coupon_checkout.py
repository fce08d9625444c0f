"""A coupon through the whole checkout: discounted invoice, pre-checkout, one counted use."""

from __future__ import annotations

from bot.core import PaymentInfo, PreCheckoutAnswer
from tests.handlers.support import Chat, collecting_channel

ADMIN = "me"  # console:me is an admin in the test settings


async def pay(app, chat: Chat, invoice, amount: int, charge: str):
    """Pre-checkout then payment, as Telegram would send them; returns the pre-checkout answer."""
    channel = collecting_channel(app, chat.channel)
    info = PaymentInfo(invoice.currency, amount, invoice.payload, provider="collecting-test")
    outputs = await channel.receive(app, chat.user_ref, kind="pre_checkout", payment=info)
    answer = next(o for o in outputs if isinstance(o, PreCheckoutAnswer))
    if answer.ok:
        paid = PaymentInfo(invoice.currency, amount, invoice.payload, charge_id=charge)
        await channel.receive(app, chat.user_ref, kind="payment", payment=paid)
    return answer


async def test_a_promo_link_discounts_the_invoice_and_counts_one_use(app):
    admin = Chat(app, ADMIN)
    await admin.send("/coupon create HALF 50% 5 - #1")
    learner = Chat(app, "coupon-buyer")
    await learner.send("/start promo_HALF")
    invoice = (await learner.press("buy:1")).invoice
    async with app.uow() as uow:
        list_price = (await uow.courses.get(1)).price_stars
    assert invoice.amount == list_price // 2
    refused = await pay(app, learner, invoice, list_price, "full-price")
    assert not refused.ok, "the invoice's discounted amount is the only one accepted"
    assert (await pay(app, learner, invoice, invoice.amount, "half-price")).ok
    learner_id = await learner.learner_id()
    async with app.uow() as uow:
        coupon = await uow.coupons.by_code("HALF")
        assert (await uow.coupons.redemption(coupon.id, learner_id)).status == "used"
        assert await uow.enrolments.owns(learner_id, 1)


async def test_without_a_coupon_the_list_price_stands(app):
    learner = Chat(app, "no-coupon")
    invoice = (await learner.press("buy:1")).invoice
    async with app.uow() as uow:
        assert invoice.amount == (await uow.courses.get(1)).price_stars
