"""Buying a course: open an order, check it before payment, record the payment once.

Channel-neutral: an order is priced in the currency of the channel it is opened on
(`services.catalog.price_in`), and the pre-checkout answer and the payment are compared with the
order — amount AND currency. A payment is recorded under its provider's unique charge id in the
same transaction as the enrolment, so the same payment seen twice enrols once. A payment that
cannot enrol (no valid order, a different amount or currency, a course already owned) is still
recorded, given back through `refund` and never enrols.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.parsing import parse_id
from recommender.signals import Signal
from services import coupons
from services.catalog import price_in

log = logging.getLogger(__name__)

#: Payment statuses an admin may still refund; "paid" is the one that bought an enrolment.
REFUNDABLE = ("paid", "surplus", "mismatch", "orphan")


def order_payload(order_id: int) -> str:
    """The invoice payload naming an order."""
    return f"order:{order_id}"


def order_id_of(invoice_payload: str) -> int | None:
    """The order id inside an invoice payload `order:<id>`, or None."""
    prefix, _, number = (invoice_payload or "").partition(":")
    return parse_id(number) if prefix == "order" else None


class OrderStatus(StrEnum):
    """Why an order could (not) be opened or reused."""

    OK = "ok"
    UNAVAILABLE = "unavailable"  # no such course, or withdrawn
    OWNED = "owned"  # the learner already owns it
    NO_PRICE = "no_price"  # not sold in this channel's currency
    NOT_YOURS = "not_yours"  # the order is someone else's, or no longer pending


@dataclass(frozen=True)
class OrderResult:
    """An order ready to be invoiced (status OK), or why there is none."""

    status: OrderStatus
    order: Any = None
    course: Any = None


async def open_order(
    uow, learner_id: int, course_id: int, channel: str, currency: str, now: datetime
) -> OrderResult:
    """Open (or reuse) the learner's pending order for a course at today's price in `currency`."""
    course = await uow.courses.get(course_id)
    if course is None or not course.active:
        return OrderResult(OrderStatus.UNAVAILABLE)
    if await uow.enrolments.owns(learner_id, course.id):
        return OrderResult(OrderStatus.OWNED, course=course)
    list_price = price_in(course, currency)
    if list_price is None:
        return OrderResult(OrderStatus.NO_PRICE, course=course)
    price, coupon = await coupons.price_for(uow, learner_id, course, currency, list_price, now)
    order = await uow.orders.open_for(learner_id, course.id)
    if order is None or (order.currency, order.amount) != (currency, price):
        order = await uow.orders.create(
            learner_id=learner_id,
            course_id=course.id,
            channel=channel,
            currency=currency,
            amount=price,
            created_at=now,
        )
    await coupons.attach(uow, order, coupon, list_price, now)
    return OrderResult(OrderStatus.OK, order, course)


async def reopen_order(
    uow, learner_id: int, order_id: int, channel: str, currency: str, now: datetime
) -> OrderResult:
    """The learner's own pending order again (a "pay" button); re-priced if it went stale.

    An order opened in another currency or at an old price is replaced by one at today's
    price in `currency`, so the invoice sent always passes the pre-checkout check.
    """
    order = await uow.orders.get(order_id)
    if order is None or order.learner_id != learner_id or order.status != "pending":
        return OrderResult(OrderStatus.NOT_YOURS)
    course = await uow.courses.get(order.course_id)
    if course is None or not course.active:
        return OrderResult(OrderStatus.UNAVAILABLE)
    price = await coupons.checkout_price(uow, order, course, price_in(course, currency), now)
    if (order.currency, order.amount) == (currency, price):
        if await uow.enrolments.owns(learner_id, course.id):
            return OrderResult(OrderStatus.OWNED, course=course)
        return OrderResult(OrderStatus.OK, order, course)
    return await open_order(uow, learner_id, course.id, channel, currency, now)


class CheckFailure(StrEnum):
    """Why a payment is refused before it is made."""

    ORDER = "order"  # no such order, not the payer's, or no longer pending
    UNAVAILABLE = "unavailable"  # the course was withdrawn
    OWNED = "owned"  # the payer already owns the course
    AMOUNT = "amount"  # amount or currency differs from the order, or the price changed


@dataclass(frozen=True)
class CheckResult:
    """The pre-checkout verdict: ok, or the failure to word."""

    ok: bool
    failure: CheckFailure | None = None


async def check_pre_checkout(
    uow, learner_id: int, invoice_payload: str, currency: str, amount: int, now: datetime
) -> CheckResult:
    """May this learner pay `amount` `currency` for the order in `invoice_payload`?

    Primary-key and unique-index lookups only: the platform's deadline is seconds.
    """
    order_id = order_id_of(invoice_payload)
    order = await uow.orders.get(order_id) if order_id else None
    if order is None or order.learner_id != learner_id or order.status != "pending":
        return CheckResult(False, CheckFailure.ORDER)
    course = await uow.courses.get(order.course_id)
    if course is None or not course.active:
        return CheckResult(False, CheckFailure.UNAVAILABLE)
    if await uow.enrolments.owns(learner_id, course.id):
        return CheckResult(False, CheckFailure.OWNED)
    if (currency, amount) != (order.currency, order.amount):
        return CheckResult(False, CheckFailure.AMOUNT)
    list_price = price_in(course, order.currency)
    if order.amount != await coupons.checkout_price(uow, order, course, list_price, now):
        return CheckResult(False, CheckFailure.AMOUNT)
    return CheckResult(True)


@dataclass(frozen=True)
class PaymentFacts:
    """What the provider says was paid."""

    provider: str
    charge_id: str
    invoice_payload: str
    currency: str
    amount: int


class PaymentOutcome(StrEnum):
    """What recording a payment did."""

    ENROLLED = "enrolled"
    DUPLICATE = "duplicate"  # this charge id was recorded before: nothing changed
    SURPLUS_REFUNDED = "surplus_refunded"  # course already owned: given back
    SURPLUS_PENDING = "surplus_pending"  # ... and the automatic refund failed
    MISMATCH_REFUNDED = "mismatch_refunded"  # amount/currency differs from the order: given back
    MISMATCH_PENDING = "mismatch_pending"  # ... and the automatic refund failed
    ORPHAN_REFUNDED = "orphan_refunded"  # no valid order of this learner: given back
    ORPHAN_PENDING = "orphan_pending"  # ... and the automatic refund failed


@dataclass(frozen=True)
class PaymentResult:
    """The outcome, the payment row (None only for DUPLICATE's own) and the course bought."""

    outcome: PaymentOutcome
    payment: Any = None
    course: Any = None

    @property
    def enrolled(self) -> bool:
        """True when this payment enrolled the learner."""
        return self.outcome is PaymentOutcome.ENROLLED


Refund = Callable[[], Awaitable[bool]]


async def record_payment(
    uow,
    facts: PaymentFacts,
    learner_id: int,
    channel: str,
    user_ref: str,
    now: datetime,
    refund: Refund,
) -> PaymentResult:
    """Record a successful payment and enrol, once per charge id, in the caller's transaction.

    `refund()` gives this payment back through its channel (True when it did); it is called
    only after the payment row is stored, so a concurrent duplicate fails on the unique charge
    id before anything is refunded twice.
    """
    seen = await uow.payments.by_charge(facts.charge_id)
    if seen is not None:
        return PaymentResult(PaymentOutcome.DUPLICATE, seen)
    order_id = order_id_of(facts.invoice_payload)
    order = await uow.orders.get(order_id) if order_id else None
    fields = dict(
        provider=facts.provider or channel,
        provider_charge_id=facts.charge_id,
        learner_id=learner_id,
        channel=channel,
        user_ref=user_ref,
        currency=facts.currency,
        amount=facts.amount,
        created_at=now,
    )
    if order is None or order.learner_id != learner_id:
        log.error("payment %s for an invalid order payload; refunding", facts.charge_id[:8])
        payment = await uow.payments.add(
            order_id=None, course_id=None, status="orphan", note="invalid order payload", **fields
        )
        return await _give_back(payment, None, now, refund, "orphan")
    course = await uow.courses.get(order.course_id)
    if (facts.currency, facts.amount) != (order.currency, order.amount):
        log.error(
            "payment %s of %s %s for order #%s of %s %s; refunding",
            facts.charge_id[:8],
            facts.amount,
            facts.currency,
            order.id,
            order.amount,
            order.currency,
        )
        payment = await uow.payments.add(
            order_id=order.id,
            course_id=order.course_id,
            status="mismatch",
            note="amount or currency differs from the order",
            **fields,
        )
        return await _give_back(payment, course, now, refund, "mismatch")
    payment = await uow.payments.add(order_id=order.id, course_id=order.course_id, **fields)
    if not await uow.enrolments.add(learner_id, order.course_id, payment.id):
        log.warning(
            "surplus payment #%s for course %s by learner %s; refunding automatically",
            payment.id,
            payment.course_id,
            learner_id,
        )
        payment.status, payment.note = "surplus", "surplus"
        return await _give_back(payment, course, now, refund, "surplus")
    order.status, order.paid_at = "paid", now
    await coupons.redeem(uow, order, now)
    await uow.interactions.add(learner_id, order.course_id, Signal.PURCHASE.value, when=now)
    return PaymentResult(PaymentOutcome.ENROLLED, payment, course)


async def _give_back(payment, course, now: datetime, refund: Refund, kind: str) -> PaymentResult:
    """Refund a payment that must not enrol; on failure it stays refundable by an admin."""
    if await refund():
        payment.status, payment.refunded_at = "refunded", now
        return PaymentResult(PaymentOutcome(f"{kind}_refunded"), payment, course)
    payment.note = f"{payment.note}; automatic refund failed"[:255]
    return PaymentResult(PaymentOutcome(f"{kind}_pending"), payment, course)
