"""Buying a course: invoice, pre-checkout check, idempotent payment and enrolment."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from bot.core import (
    Button,
    ChannelError,
    Incoming,
    Invoice,
    PreCheckoutAnswer,
    Reply,
    Router,
    call_with_deps,
    esc,
)
from handlers.catalog import course_title

log = logging.getLogger(__name__)
router = Router()
STARS = "XTR"

AfterPurchase = Callable[..., Awaitable[list[Reply]]]
AFTER_PURCHASE: list[AfterPurchase] = []


def after_purchase(fn: AfterPurchase) -> AfterPurchase:
    """Register replies after a purchase; fn names any of learner, course, uow, t, clock, msg,
    recommender."""
    AFTER_PURCHASE.append(fn)
    return fn


def order_id_of(invoice_payload: str) -> int | None:
    """The order id inside an invoice payload `order:<id>`, or None."""
    prefix, _, number = invoice_payload.partition(":")
    return int(number) if prefix == "order" and number.isdigit() else None


def invoice_for(order, course, t) -> Invoice:
    """The Stars invoice of an order (Telegram limits: title 32, description 255)."""
    title = course_title(course, t)[:32]
    description = (t.pick(course.description_zh, course.description_en) or title)[:255]
    return Invoice(
        title=title,
        description=description,
        payload=f"order:{order.id}",
        currency=STARS,
        amount=order.amount,
        label=title,
    )


@router.button("buy")
async def buy(msg: Incoming, uow, learner, t) -> Reply:
    """Open (or reuse) an order for a course and send its invoice."""
    course_id = msg.payload.partition(":")[2]
    course = await uow.courses.get(int(course_id)) if course_id.isdigit() else None
    if course is None or not course.active:
        return Reply(t("buy.unavailable"))
    if await uow.enrolments.owns(learner.id, course.id):
        return Reply(t("buy.owned"), [[Button(t("pay.mine"), "mine")]])
    order = await uow.orders.open_for(learner.id, course.id)
    if order is None or order.amount != course.price_stars:
        order = await uow.orders.create(
            learner_id=learner.id,
            course_id=course.id,
            channel=msg.channel,
            currency=STARS,
            amount=course.price_stars,
        )
    return Reply(t("buy.invoice"), invoice=invoice_for(order, course, t))


@router.button("pay")
async def pay_again(msg: Incoming, uow, learner, t) -> Reply:
    """Send the invoice of one of the learner's own open orders again."""
    order_id = msg.payload.partition(":")[2]
    order = await uow.orders.get(int(order_id)) if order_id.isdigit() else None
    if order is None or order.learner_id != learner.id or order.status != "pending":
        return Reply(t("buy.not_your_order"))
    course = await uow.courses.get(order.course_id)
    if course is None or not course.active:
        return Reply(t("buy.unavailable"))
    return Reply(t("buy.invoice"), invoice=invoice_for(order, course, t))


@router.on("pre_checkout")
async def pre_checkout(msg: Incoming, uow, learner, t) -> PreCheckoutAnswer:
    """Approve a payment only for the learner's own open order at the current price."""
    info = msg.payment
    order_id = order_id_of(info.invoice_payload)
    order = await uow.orders.get(order_id) if order_id else None
    if order is None or order.learner_id != learner.id or order.status != "pending":
        return PreCheckoutAnswer(False, t("pay.check.failed"))
    course = await uow.courses.get(order.course_id)
    if course is None or not course.active:
        return PreCheckoutAnswer(False, t("buy.unavailable"))
    if await uow.enrolments.owns(learner.id, course.id):
        return PreCheckoutAnswer(False, t("pay.check.owned"))
    if (info.currency, info.amount) != (order.currency, order.amount):
        return PreCheckoutAnswer(False, t("pay.check.amount"))
    if order.amount != course.price_stars:
        return PreCheckoutAnswer(False, t("pay.check.amount"))
    return PreCheckoutAnswer(True)


@router.on("payment")
async def successful_payment(
    msg: Incoming, uow, learner, t, clock, channels, recommender
) -> list[Reply]:
    """Record the payment and enrol in one transaction, once per charge id."""
    info = msg.payment
    if await uow.payments.by_charge(info.charge_id):
        return [Reply(t("pay.duplicate"))]
    order_id = order_id_of(info.invoice_payload)
    order = await uow.orders.get(order_id) if order_id else None
    valid = order is not None and order.learner_id == learner.id
    payment = (
        await uow.payments.add(
            provider=info.provider or msg.channel,
            provider_charge_id=info.charge_id,
            order_id=order.id if valid else None,
            learner_id=learner.id,
            course_id=order.course_id,
            channel=msg.channel,
            user_ref=msg.user_ref,
            currency=info.currency,
            amount=info.amount,
            created_at=clock.now(),
        )
        if valid
        else None
    )
    if payment is None:
        log.error("payment %s for an invalid order payload; refunding", info.charge_id[:8])
        await _record_orphan(msg, uow, learner, clock)
        return [Reply(t("pay.orphan"))] if await _refund(msg, channels) else []
    course = await uow.courses.get(order.course_id)
    if not await uow.enrolments.add(learner.id, course.id, payment.id):
        return [await _refund_surplus(msg, payment, uow, t, clock, channels)]
    order.status, order.paid_at = "paid", clock.now()
    await uow.interactions.add(learner.id, course.id, "purchase", when=clock.now())
    replies = [
        Reply(t("pay.done", title=esc(course_title(course, t))), [[Button(t("pay.mine"), "mine")]])
    ]
    context = dict(
        learner=learner, course=course, uow=uow, t=t, clock=clock, msg=msg, recommender=recommender
    )
    for hook in AFTER_PURCHASE:
        replies += await call_with_deps(hook, context)
    return replies


async def _record_orphan(msg: Incoming, uow, learner, clock) -> None:
    info = msg.payment
    await uow.payments.add(
        provider=info.provider or msg.channel,
        provider_charge_id=info.charge_id,
        order_id=None,
        learner_id=learner.id,
        course_id=None,
        channel=msg.channel,
        user_ref=msg.user_ref,
        currency=info.currency,
        amount=info.amount,
        status="refunded",
        note="invalid order payload",
        created_at=clock.now(),
        refunded_at=clock.now(),
    )


async def _refund(msg: Incoming, channels) -> bool:
    try:
        await channels.refund(msg.channel, msg.user_ref, msg.payment.charge_id)
    except ChannelError as error:
        log.error("automatic refund of %s failed: %s", msg.payment.charge_id[:8], error)
        return False
    return True


async def _refund_surplus(msg, payment, uow, t, clock, channels) -> Reply:
    log.warning(
        "surplus payment #%s for course %s by learner %s; refunding automatically",
        payment.id,
        payment.course_id,
        payment.learner_id,
    )
    if await _refund(msg, channels):
        payment.status, payment.refunded_at, payment.note = "refunded", clock.now(), "surplus"
        return Reply(t("pay.surplus_refunded"))
    payment.status, payment.note = "surplus", "surplus; automatic refund failed"
    return Reply(t("pay.surplus_pending"))
