"""What the storefront's admin commands do: refund a payment, add a course, sales figures.

The refund notice to the learner goes through the one outbox door, in the same transaction as
the refund's bookkeeping, worded in the learner's language.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.core import ChannelError, Reply, esc
from bot.i18n import translator_for
from recommender.signals import Signal
from services.outbox import Outgoing, enqueue
from services.purchase import REFUNDABLE

log = logging.getLogger(__name__)

MAX_TEXT_FIELD = 128
MAX_PRICE_YUAN = 1_000_000


class RefundStatus(StrEnum):
    """What /refund did."""

    DONE = "done"
    NOT_FOUND = "not_found"
    NOT_REFUNDABLE = "not_refundable"  # already refunded (or never paid)
    FAILED = "failed"  # the provider refused: nothing was changed


@dataclass(frozen=True)
class RefundResult:
    """The outcome, the payment and its course (when known); `error` when the provider failed."""

    status: RefundStatus
    payment: Any = None
    course: Any = None
    error: str = ""
    revoked: bool = False


async def refund(uow, channels, settings, payment_id: int, now: datetime) -> RefundResult:
    """Refund a payment through the channel that took it, then revoke what it bought.

    Only the payment that bought an enrolment (status "paid") revokes it and marks its order
    refunded; an extra payment (surplus, mismatch, orphan) is only given back. The learner is
    told through the outbox.
    """
    payment = await uow.payments.get(payment_id)
    if payment is None:
        return RefundResult(RefundStatus.NOT_FOUND)
    if payment.status not in REFUNDABLE:
        return RefundResult(RefundStatus.NOT_REFUNDABLE, payment)
    try:
        await channels.refund(payment.channel, payment.user_ref, payment.provider_charge_id)
    except (ChannelError, KeyError) as error:
        log.error("refund of payment #%s failed: %s", payment.id, error)
        return RefundResult(RefundStatus.FAILED, payment, error=str(error))
    course = await uow.courses.get(payment.course_id) if payment.course_id else None
    bought = payment.status == "paid"
    payment.status, payment.refunded_at = "refunded", now
    revoked = False
    if bought and course is not None:
        revoked = await uow.enrolments.revoke(payment.learner_id, course.id)
        await uow.interactions.add(payment.learner_id, course.id, Signal.REFUND.value, when=now)
    if bought and payment.order_id:
        order = await uow.orders.get(payment.order_id)
        if order is not None:
            order.status = "refunded"
    await enqueue(uow, await _notice(uow, payment, course, settings), now)
    log.info("refunded payment #%s", payment.id)
    return RefundResult(RefundStatus.DONE, payment, course, revoked=revoked)


async def _notice(uow, payment, course, settings) -> Outgoing:
    learner = await uow.learners.get(payment.learner_id)
    locale = (learner.locale if learner else None) or settings.default_locale
    t = translator_for(locale, settings, learner.timezone if learner else None)
    title = esc(t.pick(course.title_zh, course.title_en)) if course else "?"
    return Outgoing(
        payment.channel,
        payment.user_ref,
        Reply(t("refund.notice", title=title)),
        "notice",
        learner_id=payment.learner_id,
        dedupe_key=f"refund-notice:{payment.id}",
    )


@dataclass(frozen=True)
class NewCourse:
    """The fields of /addcourse, checked."""

    category_slug: str
    title_zh: str
    title_en: str
    price_stars: int
    price_fen: int
    instructor_name: str
    description: str


def parse_new_course(line: str) -> NewCourse | None:
    """`category|title zh|title en|stars|CNY|instructor|description`, or None when malformed."""
    fields = [f.strip() for f in line.split("|")]
    if len(fields) != 7 or not fields[3].isdigit():
        return None
    try:
        yuan = float(fields[4])
    except ValueError:
        return None
    if not 0 <= yuan < MAX_PRICE_YUAN:
        return None
    return NewCourse(
        category_slug=fields[0],
        title_zh=fields[1][:MAX_TEXT_FIELD],
        title_en=fields[2][:MAX_TEXT_FIELD],
        price_stars=int(fields[3]),
        price_fen=round(yuan * 100),
        instructor_name=fields[5][:MAX_TEXT_FIELD],
        description=fields[6],
    )


async def category_slugs(uow) -> list[str]:
    """Slugs of the categories that have courses on sale (for the usage text)."""
    return [c.slug for c, _ in await uow.courses.categories()]


async def add_course(uow, new: NewCourse):
    """Create the course; None when its category does not exist."""
    category = await uow.courses.category_by_slug(new.category_slug)
    if category is None:
        return None
    return await uow.courses.add(
        category_id=category.id,
        title_zh=new.title_zh,
        title_en=new.title_en,
        price_stars=new.price_stars,
        price_fen=new.price_fen,
        instructor_name=new.instructor_name,
        description_zh=new.description,
        description_en=new.description,
    )


@dataclass(frozen=True)
class Money:
    """`count` payments adding up to `amount` in `currency` (smallest unit)."""

    currency: str
    count: int
    amount: int


@dataclass(frozen=True)
class Stats:
    """The /stats figures."""

    learners: int
    enrolments: int
    paid: list[Money] = field(default_factory=list)
    refunded: list[Money] = field(default_factory=list)


async def stats(uow) -> Stats:
    """Learners, enrolments, and money in and out per currency."""
    totals = await uow.payments.totals()
    by_status: dict[str, list[Money]] = {"paid": [], "refunded": []}
    for status, currency, count, amount in sorted(totals, key=lambda row: (row[0], row[1])):
        if status in by_status:
            by_status[status].append(Money(currency, int(count), int(amount or 0)))
    return Stats(
        learners=await uow.learners.count(),
        enrolments=await uow.enrolments.count(),
        paid=by_status["paid"],
        refunded=by_status["refunded"],
    )
