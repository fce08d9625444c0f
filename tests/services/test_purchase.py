"""Buying in any currency: orders priced per channel, checked and paid against the order."""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import select

from bot.core import Channels
from bot.i18n import CNY, STARS
from services import admin, purchase
from services.catalog import currency_of, price_in
from services.purchase import CheckFailure, OrderStatus, PaymentFacts, PaymentOutcome
from storage.models import Enrolment, Interaction, OutboxMessage, Payment
from tests.fakes.collecting import CollectingChannel
from tests.handlers.support import learner_for

PYTHON = 1  # demo course #1: 150 ⭐ or ¥199.00


def test_a_course_has_one_price_per_currency():
    course = SimpleNamespace(price_stars=150, price_fen=19900)
    assert price_in(course, STARS) == 150
    assert price_in(course, CNY) == 19900
    assert price_in(course, "USD") is None
    assert price_in(SimpleNamespace(price_stars=0, price_fen=100), STARS) is None


def test_the_channel_says_the_currency_and_an_unknown_channel_means_stars():
    channels = Channels([CollectingChannel("wechat", currency=CNY), CollectingChannel("console")])
    assert currency_of(channels, "wechat") == CNY
    assert currency_of(channels, "console") == STARS
    assert currency_of(channels, "telegram") == STARS
    assert currency_of(None, "wechat") == STARS


class Refunds:
    """A refund callable that records its calls and answers `ok`."""

    def __init__(self, ok: bool = True) -> None:
        self.ok, self.calls = ok, 0

    async def __call__(self) -> bool:
        self.calls += 1
        return self.ok


async def open_cny_order(app, learner_id: int):
    async with app.uow() as uow:
        result = await purchase.open_order(uow, learner_id, PYTHON, "wechat", CNY, app.clock.now())
        await uow.commit()
    return result


async def pay(app, learner_id: int, facts: PaymentFacts, refund=None, channel="wechat"):
    refund = refund or Refunds()
    async with app.uow() as uow:
        result = await purchase.record_payment(
            uow, facts, learner_id, channel, "u1", app.clock.now(), refund
        )
        await uow.commit()
    return result, refund


def facts(order_id: int, charge: str, currency: str = CNY, amount: int = 19900) -> PaymentFacts:
    return PaymentFacts("wechatpay", charge, f"order:{order_id}", currency, amount)


async def rows(app, model, *where) -> list:
    async with app.uow() as uow:
        return list((await uow.session.execute(select(model).where(*where))).scalars())


async def test_an_order_is_priced_in_the_channel_currency_and_reused(app):
    learner = await learner_for(app, "wechat", "u1")
    first = await open_cny_order(app, learner)
    assert first.status is OrderStatus.OK
    assert (first.order.currency, first.order.amount) == (CNY, 19900)
    again = await open_cny_order(app, learner)
    assert again.order.id == first.order.id, "a pending order at today's price is reused"
    async with app.uow() as uow:
        stars = await purchase.open_order(uow, learner, PYTHON, "console", STARS, app.clock.now())
        await uow.commit()
    assert stars.order.id != first.order.id
    assert (stars.order.currency, stars.order.amount) == (STARS, 150)


async def test_a_course_not_sold_in_a_currency_opens_no_order(app):
    learner = await learner_for(app, "console", "u1")
    async with app.uow() as uow:
        result = await purchase.open_order(uow, learner, PYTHON, "console", "USD", app.clock.now())
    assert result.status is OrderStatus.NO_PRICE and result.order is None


async def test_pay_again_reprices_an_order_opened_in_another_currency(app):
    learner = await learner_for(app, "wechat", "u1")
    order = (await open_cny_order(app, learner)).order
    async with app.uow() as uow:
        same = await purchase.reopen_order(uow, learner, order.id, "wechat", CNY, app.clock.now())
        other = await purchase.reopen_order(
            uow, learner, order.id, "console", STARS, app.clock.now()
        )
        stranger = await purchase.reopen_order(
            uow, learner + 999, order.id, "wechat", CNY, app.clock.now()
        )
    assert same.order.id == order.id
    assert (other.order.currency, other.order.amount) == (STARS, 150)
    assert stranger.status is OrderStatus.NOT_YOURS


async def test_pre_checkout_compares_amount_and_currency_with_the_order(app):
    learner = await learner_for(app, "wechat", "u1")
    order = (await open_cny_order(app, learner)).order
    payload = f"order:{order.id}"
    async with app.uow() as uow:
        ok = await purchase.check_pre_checkout(uow, learner, payload, CNY, 19900, app.clock.now())
        cheaper = await purchase.check_pre_checkout(
            uow, learner, payload, CNY, 100, app.clock.now()
        )
        stars = await purchase.check_pre_checkout(
            uow, learner, payload, STARS, 19900, app.clock.now()
        )
        stranger = await purchase.check_pre_checkout(
            uow, learner + 999, payload, CNY, 19900, app.clock.now()
        )
        garbage = await purchase.check_pre_checkout(
            uow, learner, "order:x", CNY, 19900, app.clock.now()
        )
    assert ok.ok
    assert (cheaper.failure, stars.failure) == (CheckFailure.AMOUNT, CheckFailure.AMOUNT)
    assert stranger.failure is CheckFailure.ORDER and garbage.failure is CheckFailure.ORDER


async def test_the_same_charge_enrols_once_in_cny(app):
    learner = await learner_for(app, "wechat", "u1")
    order = (await open_cny_order(app, learner)).order
    first, refund = await pay(app, learner, facts(order.id, "tx-1"))
    assert first.outcome is PaymentOutcome.ENROLLED and first.course.id == PYTHON
    second, refund_again = await pay(app, learner, facts(order.id, "tx-1"))
    assert second.outcome is PaymentOutcome.DUPLICATE
    assert refund.calls == refund_again.calls == 0
    assert len(await rows(app, Payment)) == 1
    assert len(await rows(app, Enrolment, Enrolment.learner_id == learner)) == 1
    kinds = [i.kind for i in await rows(app, Interaction, Interaction.learner_id == learner)]
    assert kinds == ["purchase"]


async def test_a_payment_in_another_currency_is_recorded_refunded_and_never_enrols(app):
    learner = await learner_for(app, "wechat", "u1")
    order = (await open_cny_order(app, learner)).order
    result, refund = await pay(app, learner, facts(order.id, "tx-2", currency=STARS, amount=150))
    assert result.outcome is PaymentOutcome.MISMATCH_REFUNDED and refund.calls == 1
    (payment,) = await rows(app, Payment)
    assert (payment.status, payment.currency, payment.amount) == ("refunded", STARS, 150)
    assert payment.order_id == order.id
    assert not await rows(app, Enrolment)
    async with app.uow() as uow:
        assert (await uow.orders.get(order.id)).status == "pending"


async def test_a_wrong_amount_whose_refund_fails_stays_refundable_by_an_admin(app):
    learner = await learner_for(app, "wechat", "u1")
    order = (await open_cny_order(app, learner)).order
    result, _ = await pay(app, learner, facts(order.id, "tx-3", amount=1), refund=Refunds(False))
    assert result.outcome is PaymentOutcome.MISMATCH_PENDING
    assert result.payment.status == "mismatch" and "refund failed" in result.payment.note
    assert not await rows(app, Enrolment)
    wechat = CollectingChannel("wechat", currency=CNY)
    app.channels.add(wechat)
    async with app.uow() as uow:
        done = await admin.refund(
            uow, app.channels, app.settings, result.payment.id, app.clock.now()
        )
        await uow.commit()
    assert done.status is admin.RefundStatus.DONE and not done.revoked
    assert wechat.refunds == [("u1", "tx-3")]


async def test_an_orphan_payment_is_recorded_and_refunded(app):
    learner = await learner_for(app, "wechat", "u1")
    result, refund = await pay(app, learner, facts(424242, "tx-4"))
    assert result.outcome is PaymentOutcome.ORPHAN_REFUNDED and refund.calls == 1
    (payment,) = await rows(app, Payment)
    assert payment.status == "refunded" and payment.order_id is None


async def test_admin_refund_of_a_surplus_payment_keeps_the_enrolment(app):
    learner = await learner_for(app, "wechat", "u1")
    order = (await open_cny_order(app, learner)).order
    paid, _ = await pay(app, learner, facts(order.id, "tx-5"))
    surplus, _ = await pay(app, learner, facts(order.id, "tx-6"), refund=Refunds(False))
    assert surplus.outcome is PaymentOutcome.SURPLUS_PENDING
    wechat = CollectingChannel("wechat", currency=CNY)
    app.channels.add(wechat)
    async with app.uow() as uow:
        extra = await admin.refund(
            uow, app.channels, app.settings, surplus.payment.id, app.clock.now()
        )
        await uow.commit()
    assert extra.status is admin.RefundStatus.DONE and not extra.revoked
    assert len(await rows(app, Enrolment, Enrolment.learner_id == learner)) == 1
    async with app.uow() as uow:
        assert (await uow.orders.get(order.id)).status == "paid"
        real = await admin.refund(
            uow, app.channels, app.settings, paid.payment.id, app.clock.now()
        )
        again = await admin.refund(
            uow, app.channels, app.settings, paid.payment.id, app.clock.now()
        )
        await uow.commit()
        assert (await uow.orders.get(order.id)).status == "refunded"
    assert real.revoked and again.status is admin.RefundStatus.NOT_REFUNDABLE
    assert not await rows(app, Enrolment, Enrolment.learner_id == learner)
    assert wechat.refunds == [("u1", "tx-6"), ("u1", "tx-5")]
    notices = await rows(app, OutboxMessage, OutboxMessage.kind == "notice")
    assert len(notices) == 2 and all(n.learner_id == learner for n in notices)
    kinds = [i.kind for i in await rows(app, Interaction, Interaction.learner_id == learner)]
    assert kinds == ["purchase", "refund"]


async def test_stats_add_money_up_per_currency(app):
    learner = await learner_for(app, "wechat", "u1")
    order = (await open_cny_order(app, learner)).order
    await pay(app, learner, facts(order.id, "tx-7"))
    async with app.uow() as uow:
        stars = await purchase.open_order(uow, learner, 2, "console", STARS, app.clock.now())
        await uow.commit()
    await pay(app, learner, facts(stars.order.id, "tg-1", STARS, 300), channel="console")
    async with app.uow() as uow:
        figures = await admin.stats(uow)
    assert figures.enrolments == 2
    assert figures.paid == [admin.Money(CNY, 1, 19900), admin.Money(STARS, 1, 300)]
    assert figures.refunded == []
