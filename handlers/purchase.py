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
from bot.parsing import payload_id
from handlers.catalog import course_title
from services import purchase as service
from services.catalog import currency_of
from services.purchase import CheckFailure, OrderStatus, PaymentFacts, PaymentOutcome

log = logging.getLogger(__name__)
router = Router()

AfterPurchase = Callable[..., Awaitable[list[Reply]]]
AFTER_PURCHASE: list[AfterPurchase] = []

#: Telegram's limits on an invoice (other channels take less).
MAX_INVOICE_TITLE = 32
MAX_INVOICE_DESCRIPTION = 255


def after_purchase(fn: AfterPurchase) -> AfterPurchase:
    """Register replies after a purchase; fn names any of learner, course, uow, t, clock, msg,
    recommender."""
    AFTER_PURCHASE.append(fn)
    return fn


def clip(text: str, limit: int) -> str:
    """`text` in at most `limit` UTF-16 code units (how Telegram counts), with `…` when cut;
    never empty (Telegram wants 1 character at least)."""
    text = " ".join(text.split()) or "·"
    if _utf16(text) <= limit:
        return text
    text = text[: limit - 1]
    while _utf16(text) > limit - 1:
        text = text[:-1]
    return text.rstrip() + "…"


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def invoice_for(order, course, t) -> Invoice:
    """The invoice of an order, in the order's currency and amount. Stored titles may be longer
    than Telegram's invoice limits (title 32, description 255): they are clipped here, the one
    place invoices are built. Plain text: `<b>` in a title shows literally."""
    full_title = course_title(course, t)
    title = clip(full_title, MAX_INVOICE_TITLE)
    description = clip(
        t.pick(course.description_zh, course.description_en) or full_title,
        MAX_INVOICE_DESCRIPTION,
    )
    return Invoice(
        title=title,
        description=description,
        payload=service.order_payload(order.id),
        currency=order.currency,
        amount=order.amount,
        label=title,
    )


def _order_reply(result: service.OrderResult, t) -> Reply:
    if result.status is OrderStatus.OK:
        return Reply(t("buy.invoice"), invoice=invoice_for(result.order, result.course, t))
    if result.status is OrderStatus.OWNED:
        return Reply(t("buy.owned"), [[Button(t("pay.mine"), "mine")]])
    if result.status is OrderStatus.NO_PRICE:
        return Reply(t("buy.no_price"))
    if result.status is OrderStatus.NOT_YOURS:
        return Reply(t("buy.not_your_order"))
    return Reply(t("buy.unavailable"))


@router.button("buy")
async def buy(msg: Incoming, uow, learner, t, clock, channels) -> Reply:
    """Open (or reuse) an order for a course and send its invoice."""
    course_id = payload_id(msg.payload)
    if course_id is None:
        return Reply(t("buy.unavailable"))
    result = await service.open_order(
        uow,
        learner.id,
        course_id,
        msg.channel,
        currency_of(channels, msg.channel),
        clock.now(),
    )
    return _order_reply(result, t)


@router.button("pay")
async def pay_again(msg: Incoming, uow, learner, t, clock, channels) -> Reply:
    """Send the invoice of one of the learner's own open orders again."""
    order_id = payload_id(msg.payload)
    if order_id is None:
        return Reply(t("buy.not_your_order"))
    result = await service.reopen_order(
        uow,
        learner.id,
        order_id,
        msg.channel,
        currency_of(channels, msg.channel),
        clock.now(),
    )
    return _order_reply(result, t)


def check_text(failure: CheckFailure, t) -> str:
    """Why a payment is refused, in the learner's words."""
    match failure:
        case CheckFailure.UNAVAILABLE:
            return t("buy.unavailable")
        case CheckFailure.OWNED:
            return t("pay.check.owned")
        case CheckFailure.AMOUNT:
            return t("pay.check.amount")
    return t("pay.check.failed")


@router.on("pre_checkout")
async def pre_checkout(msg: Incoming, uow, learner, t, clock) -> PreCheckoutAnswer:
    """Approve a payment only for the learner's own open order at the current price."""
    info = msg.payment
    verdict = await service.check_pre_checkout(
        uow, learner.id, info.invoice_payload, info.currency, info.amount, clock.now()
    )
    return (
        PreCheckoutAnswer(True)
        if verdict.ok
        else PreCheckoutAnswer(False, check_text(verdict.failure, t))
    )


def payment_text(outcome: PaymentOutcome, t) -> str:
    """What the payer hears about a payment that did not enrol them."""
    match outcome:
        case PaymentOutcome.DUPLICATE:
            return t("pay.duplicate")
        case PaymentOutcome.SURPLUS_REFUNDED:
            return t("pay.surplus_refunded")
        case PaymentOutcome.SURPLUS_PENDING:
            return t("pay.surplus_pending")
        case PaymentOutcome.MISMATCH_REFUNDED:
            return t("pay.mismatch_refunded")
        case PaymentOutcome.ORPHAN_REFUNDED:
            return t("pay.orphan")
    return t("pay.refund_pending")  # mismatch or orphan whose automatic refund failed


@router.on("payment")
async def successful_payment(
    msg: Incoming, uow, learner, t, clock, channels, recommender
) -> list[Reply]:
    """Record the payment and enrol in one transaction, once per charge id."""
    info = msg.payment
    facts = PaymentFacts(
        info.provider, info.charge_id, info.invoice_payload, info.currency, info.amount
    )

    async def refund() -> bool:
        try:
            await channels.refund(msg.channel, msg.user_ref, info.charge_id)
        except (ChannelError, KeyError) as error:
            log.error("automatic refund of %s failed: %s", info.charge_id[:8], error)
            return False
        return True

    result = await service.record_payment(
        uow, facts, learner.id, msg.channel, msg.user_ref, clock.now(), refund
    )
    if not result.enrolled:
        return [Reply(payment_text(result.outcome, t))]
    course = result.course
    replies = [
        Reply(t("pay.done", title=esc(course_title(course, t))), [[Button(t("pay.mine"), "mine")]])
    ]
    context = dict(
        learner=learner, course=course, uow=uow, t=t, clock=clock, msg=msg, recommender=recommender
    )
    for hook in AFTER_PURCHASE:
        replies += await call_with_deps(hook, context)
    return replies
