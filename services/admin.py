"""What the storefront's admin commands do: refund a payment, add a course, sales figures.

The refund notice to the learner goes through the one outbox door, in the same transaction as
the refund's bookkeeping, worded in the learner's language.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, or_, select

from bot.core import ChannelError, Reply, esc
from bot.i18n import translator_for
from bot.parsing import parse_id, parse_yuan
from bot.parsing import parse_stars as _parse_stars
from recommender.signals import Signal
from services import audit
from services.outbox import Outgoing, enqueue
from services.purchase import REFUNDABLE
from storage.models import MAX_BIO, Category, Course, Identity, Learner, Payment

log = logging.getLogger(__name__)

#: Course titles and the instructor's name (their columns hold 128 characters). An invoice
#: title is clipped to Telegram's 32 at invoice build (`handlers.purchase.invoice_for`).
MAX_TEXT_FIELD = 128
#: A course description (its invoice description is clipped to Telegram's 255 at build).
MAX_DESCRIPTION = 2000


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


async def refund(
    uow, channels, settings, payment_id: int, now: datetime, actor=None
) -> RefundResult:
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
    await audit.note(
        uow,
        actor,
        "refund",
        f"payment:{payment.id}",
        now,
        amount=payment.amount,
        currency=payment.currency,
        course_id=payment.course_id,
        learner_id=payment.learner_id,
    )
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


#: The /addcourse fields in order (names of `field.*` texts).
NEW_COURSE_FIELDS = (
    "category",
    "title_zh",
    "title_en",
    "stars",
    "cny",
    "instructor",
    "description",
)


@dataclass(frozen=True)
class FieldProblem:
    """What is wrong with a line of fields: `count` fields when it is not 7, otherwise the
    1-based field number, its name and a `hint` (the name of a `hint.*` text)."""

    count: int = len(NEW_COURSE_FIELDS)
    number: int = 0
    field: str = ""
    hint: str = ""
    limit: int = 0  # for hint "too_long": the most characters the field takes


def parse_stars(text: str) -> int | None:
    """A price in Stars: 1 … MAX_STARS (Telegram refuses an invoice of 0 Stars)."""
    return _parse_stars(text)


def parse_fen(text: str) -> int | None:
    """A price in yuan (`199`, `199.90`) as fen, at least 1 fen; None when it is not one."""
    return parse_yuan(text)


#: The longest value of each text field, and the column it is stored in.
TEXT_LIMITS = {
    "title_zh": MAX_TEXT_FIELD,
    "title_en": MAX_TEXT_FIELD,
    "instructor": MAX_TEXT_FIELD,
    "description": MAX_DESCRIPTION,
    "bio": MAX_BIO,
}


def text_problem(name: str, value: str) -> tuple[str, int] | None:
    """(hint, limit) when a text field's value is wrong: empty (all but the description and
    bio may not be), or longer than its limit; None when it is fine."""
    if not value and name not in ("description", "bio"):
        return "empty", 0
    limit = TEXT_LIMITS.get(name, 0)
    if limit and len(value) > limit:
        return "too_long", limit
    return None


def parse_new_course(line: str) -> NewCourse | FieldProblem:
    """`category|title zh|title en|stars|CNY|instructor|description`, or what is wrong with it
    (a missing category is found by `add_course`)."""
    fields = [f.strip() for f in line.split("|")] if line.strip() else []
    if len(fields) != len(NEW_COURSE_FIELDS):
        return FieldProblem(count=len(fields))
    for number, (name, value) in enumerate(zip(NEW_COURSE_FIELDS, fields, strict=True), 1):
        if (problem := text_problem(name, value)) is not None:
            return FieldProblem(number=number, field=name, hint=problem[0], limit=problem[1])
    stars, fen = parse_stars(fields[3]), parse_fen(fields[4])
    if stars is None:
        return FieldProblem(number=4, field="stars", hint="stars")
    if fen is None:
        return FieldProblem(number=5, field="cny", hint="cny")
    return NewCourse(
        category_slug=fields[0],
        title_zh=fields[1],
        title_en=fields[2],
        price_stars=stars,
        price_fen=fen,
        instructor_name=fields[5],
        description=fields[6],
    )


@dataclass(frozen=True)
class FieldCheck:
    """One /addcourse field checked: its value as stored, or the `hint` of what is wrong."""

    value: Any = None
    hint: str = ""
    limit: int = 0


async def check_field(uow, name: str, text: str) -> FieldCheck:
    """Check one field of a new course as the one-line /addcourse checks it (guided form)."""
    text = text.strip()
    if (problem := text_problem(name, text)) is not None:
        return FieldCheck(None, *problem)
    if name == "category" and await uow.courses.category_by_slug(text) is None:
        return FieldCheck(None, "category")
    if name == "stars":
        stars = parse_stars(text)
        return FieldCheck(stars) if stars is not None else FieldCheck(None, "stars")
    if name == "cny":
        fen = parse_fen(text)
        return FieldCheck(fen) if fen is not None else FieldCheck(None, "cny")
    return FieldCheck(text)


def new_course(values: dict[str, Any]) -> NewCourse:
    """A NewCourse from checked field values keyed by `NEW_COURSE_FIELDS` names."""
    return NewCourse(
        category_slug=values["category"],
        title_zh=values["title_zh"],
        title_en=values["title_en"],
        price_stars=values["stars"],
        price_fen=values["cny"],
        instructor_name=values["instructor"],
        description=values["description"],
    )


async def category_slugs(uow) -> list[str]:
    """Slugs of every category, in display order (for usage texts and field hints)."""
    stmt = select(Category.slug).order_by(Category.position, Category.id)
    return list((await uow.session.execute(stmt)).scalars())


async def add_course(uow, new: NewCourse, actor=None, now: datetime | None = None):
    """Create the course (an instructor's own: they teach it); None when its category does not
    exist (field 1 is wrong)."""
    category = await uow.courses.category_by_slug(new.category_slug)
    if category is None:
        return None
    teacher = actor.learner_id if actor is not None and not actor.is_admin else None
    course = await uow.courses.add(
        category_id=category.id,
        title_zh=new.title_zh,
        title_en=new.title_en,
        price_stars=new.price_stars,
        price_fen=new.price_fen,
        instructor_name=new.instructor_name,
        description_zh=new.description,
        description_en=new.description,
        instructor_learner_id=teacher,
    )
    await audit.note(uow, actor, "course.add", f"course:{course.id}", now, title=new.title_en)
    return course


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


# ----------------------------------------------------------------------------- payments

#: How many payments /payments lists.
RECENT_PAYMENTS = 15


@dataclass(frozen=True)
class PaymentRow:
    """One payment with the course it paid for and the learner who paid (when known)."""

    payment: Any
    course: Any
    learner: Any


async def recent_payments(
    uow, course_id: int | None = None, learner_id: int | None = None, limit=RECENT_PAYMENTS
) -> list[PaymentRow]:
    """The newest payments, of one course or one learner when given."""
    stmt = (
        select(Payment, Course, Learner)
        .outerjoin(Course, Course.id == Payment.course_id)
        .outerjoin(Learner, Learner.id == Payment.learner_id)
        .order_by(Payment.created_at.desc(), Payment.id.desc())
        .limit(limit)
    )
    if course_id is not None:
        stmt = stmt.where(Payment.course_id == course_id)
    if learner_id is not None:
        stmt = stmt.where(Payment.learner_id == learner_id)
    return [PaymentRow(*row) for row in (await uow.session.execute(stmt)).all()]


async def find_learner(uow, who: str):
    """The learner meant by `learner:<id>`, `<channel>:<user>` or a display name; else None."""
    who = who.strip().lstrip("@")
    head, sep, tail = who.partition(":")
    if sep and head.lower() in ("learner", "l", "学员"):
        learner_id = parse_id(tail)
        return await uow.learners.get(learner_id) if learner_id else None
    if sep and tail:
        stmt = select(Identity.learner_id).where(
            Identity.channel == head, Identity.user_ref == tail
        )
        learner_id = await uow.session.scalar(stmt)
        return await uow.learners.get(learner_id) if learner_id else None
    pattern = f"%{who.replace('%', '').replace('_', '')}%"
    stmt = (
        select(Learner)
        .where(or_(Learner.display_name.ilike(pattern), Learner.display_name == who))
        .order_by(Learner.id)
        .limit(1)
    )
    return await uow.session.scalar(stmt) if who else None


async def refund_preview(uow, payment_id: int) -> RefundResult:
    """What /refund would give back, before the admin confirms (nothing changes)."""
    payment = await uow.payments.get(payment_id)
    if payment is None:
        return RefundResult(RefundStatus.NOT_FOUND)
    course = await uow.courses.get(payment.course_id) if payment.course_id else None
    if payment.status not in REFUNDABLE:
        return RefundResult(RefundStatus.NOT_REFUNDABLE, payment, course)
    return RefundResult(RefundStatus.DONE, payment, course)


# ----------------------------------------------------------------------------- courses


class EditStatus(StrEnum):
    """What /editcourse, /withdraw and /category did."""

    DONE = "done"
    NO_COURSE = "no_course"
    NO_FIELD = "no_field"  # unknown field name
    BAD_VALUE = "bad_value"  # `hint` names what a value must look like
    UNCHANGED = "unchanged"  # withdrawing a withdrawn course
    TAKEN = "taken"  # the category slug exists
    BAD_SLUG = "bad_slug"
    NOT_YOURS = "not_yours"  # an instructor's change to another instructor's course


@dataclass(frozen=True)
class Edited:
    """The outcome of a course or category change; `value` as stored."""

    status: EditStatus
    course: Any = None
    field: str = ""
    value: Any = None
    hint: str = ""
    limit: int = 0  # for hint "too_long"


#: /editcourse field names (and their aliases) → the `field.*` text naming them.
EDITABLE = {
    "title_zh": "title_zh",
    "title_en": "title_en",
    "stars": "stars",
    "cny": "cny",
    "price_fen": "cny",
    "instructor": "instructor",
    "bio": "bio",
    "description": "description",
    "description_zh": "description",
    "description_en": "description",
    "category": "category",
    "active": "active",
}
YES, NO = ("yes", "on", "true", "1", "是"), ("no", "off", "false", "0", "否")


async def edit_course(
    uow, course_id: int, field_name: str, value: str, actor=None, now: datetime | None = None
) -> Edited:
    """Change one field of a course, checked like /addcourse checks it (an instructor: only
    a course of their own)."""
    course = await uow.courses.get(course_id)
    if course is None:
        return Edited(EditStatus.NO_COURSE)
    if actor is not None and not actor.may_manage(course.id):
        return Edited(EditStatus.NOT_YOURS, course)
    edited = await _edit(uow, course, field_name, value)
    if edited.status is EditStatus.DONE:
        shown = str(edited.value)[:40]
        await audit.note(
            uow, actor, "course.edit", f"course:{course.id}", now, field=edited.field, value=shown
        )
    return edited


async def _edit(uow, course, field_name: str, value: str) -> Edited:
    name = field_name.lower()
    field_key = EDITABLE.get(name)
    if field_key is None:
        return Edited(EditStatus.NO_FIELD, course, field_name)
    value = value.strip()
    bad = Edited(EditStatus.BAD_VALUE, course, field_key, value)
    if (problem := text_problem(field_key, value)) is not None:
        return replace(bad, hint=problem[0], limit=problem[1])
    if field_key in ("title_zh", "title_en", "instructor"):
        column = "instructor_name" if field_key == "instructor" else field_key
        setattr(course, column, value)
    elif field_key == "bio":
        course.instructor_bio = value
    elif field_key == "description":
        for column in ("description_zh", "description_en"):
            if name in (column, "description"):
                setattr(course, column, value)
    elif field_key == "stars":
        stars = parse_stars(value)
        if stars is None:
            return replace(bad, hint="stars")
        course.price_stars = stars
    elif field_key == "cny":
        fen = parse_fen(value)
        if fen is None:
            return replace(bad, hint="cny")
        course.price_fen = fen
    elif field_key == "category":
        category = await uow.courses.category_by_slug(value)
        if category is None:
            return replace(bad, hint="category")
        course.category_id, course.category = category.id, category
    elif field_key == "active":
        if value.lower() not in YES + NO:
            return replace(bad, hint="yes_no")
        course.active = value.lower() in YES
    return Edited(EditStatus.DONE, course, field_key, value)


async def withdraw(uow, course_id: int, actor=None, now: datetime | None = None) -> Edited:
    """Take a course off sale: no longer listed, found or sold; its learners keep it."""
    course = await uow.courses.get(course_id)
    if course is None:
        return Edited(EditStatus.NO_COURSE)
    if not course.active:
        return Edited(EditStatus.UNCHANGED, course)
    course.active = False
    await audit.note(uow, actor, "course.withdraw", f"course:{course.id}", now)
    return Edited(EditStatus.DONE, course, "active", False)


#: A category slug: lowercase letters, digits and dashes.
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


async def add_category(
    uow, slug: str, name_zh: str, name_en: str, actor=None, now: datetime | None = None
) -> Edited:
    """A new catalog category, placed after the others."""
    if not SLUG.fullmatch(slug):
        return Edited(EditStatus.BAD_SLUG, value=slug)
    if await uow.courses.category_by_slug(slug) is not None:
        return Edited(EditStatus.TAKEN, value=slug)
    last = await uow.session.scalar(select(func.max(Category.position)))
    await uow.courses.add_category(
        slug=slug, name_zh=name_zh[:64], name_en=name_en[:64], position=(last or 0) + 1
    )
    await audit.note(uow, actor, "category.add", slug, now)
    return Edited(EditStatus.DONE, value=slug)


#: The largest cover picture /cover keeps.
MAX_COVER_BYTES = 2_000_000


async def set_cover(
    uow, course_id: int, image: bytes | None, actor=None, now: datetime | None = None
) -> Edited:
    """Set (or with None remove) a course's cover picture."""
    course = await uow.courses.get(course_id)
    if course is None:
        return Edited(EditStatus.NO_COURSE)
    if actor is not None and not actor.may_manage(course.id):
        return Edited(EditStatus.NOT_YOURS, course)
    if image is not None and len(image) > MAX_COVER_BYTES:
        return Edited(EditStatus.BAD_VALUE, course, "cover", len(image), "too_big")
    course.cover_image = image
    action = "cover.set" if image is not None else "cover.remove"
    size = len(image) if image is not None else None
    await audit.note(uow, actor, action, f"course:{course.id}", now, bytes=size)
    return Edited(EditStatus.DONE, course, "cover", image is not None)
