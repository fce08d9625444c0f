"""Admin commands of the storefront: refunds, adding courses, sales figures."""

from __future__ import annotations

import logging

from bot.core import ChannelError, Incoming, Reply, Router, esc
from bot.i18n import translator_for
from handlers.catalog import course_title
from services.outbox import Outgoing, enqueue

log = logging.getLogger(__name__)
router = Router()


@router.command("refund", "退款", admin=True)
async def refund(msg: Incoming, uow, t, clock, channels, settings) -> Reply:
    """Refund a payment through its provider, then revoke the enrolment it bought."""
    arg = msg.args.strip().lstrip("#")
    if not arg.isdigit():
        return Reply(t("refund.usage"))
    payment = await uow.payments.get(int(arg))
    if payment is None:
        return Reply(t("refund.not_found", id=arg))
    if payment.status not in ("paid", "surplus"):
        return Reply(t("refund.not_paid", id=payment.id, status=payment.status))
    try:
        await channels.refund(payment.channel, payment.user_ref, payment.provider_charge_id)
    except (ChannelError, KeyError) as error:
        log.error("refund of payment #%s failed: %s", payment.id, error)
        return Reply(t("refund.failed", error=esc(error)))
    course = await uow.courses.get(payment.course_id) if payment.course_id else None
    payment.status, payment.refunded_at = "refunded", clock.now()
    if payment.note != "surplus" and course is not None:
        await uow.enrolments.revoke(payment.learner_id, course.id)
        await uow.interactions.add(payment.learner_id, course.id, "refund", when=clock.now())
    if payment.order_id:
        order = await uow.orders.get(payment.order_id)
        order.status = "refunded"
    title = esc(course_title(course, t)) if course else "?"
    learner = await uow.learners.get(payment.learner_id)
    theirs = translator_for(learner.locale or settings.default_locale, settings, learner.timezone)
    notice = theirs("refund.notice", title=esc(course_title(course, theirs)) if course else "?")
    await enqueue(
        uow,
        Outgoing(
            payment.channel,
            payment.user_ref,
            Reply(notice),
            "notice",
            learner_id=payment.learner_id,
            dedupe_key=f"refund-notice:{payment.id}",
        ),
        clock.now(),
    )
    log.info("refunded payment #%s", payment.id)
    return Reply(
        t("refund.done", id=payment.id, amount=f"{payment.amount} {payment.currency}", title=title)
    )


@router.command("addcourse", "上架", admin=True)
async def add_course(msg: Incoming, uow, t) -> Reply:
    """Add a course from one line of `|`-separated fields."""
    fields = [f.strip() for f in msg.args.split("|")]
    categories = [c for c, _ in await uow.courses.categories()]
    slugs = ", ".join(c.slug for c in categories) or "-"
    if len(fields) != 7 or not fields[3].isdigit() or not _is_price(fields[4]):
        return Reply(t("addcourse.usage", slugs=esc(slugs)))
    category = await uow.courses.category_by_slug(fields[0])
    if category is None:
        return Reply(t("addcourse.usage", slugs=esc(slugs)))
    course = await uow.courses.add(
        category_id=category.id,
        title_zh=fields[1][:128],
        title_en=fields[2][:128],
        price_stars=int(fields[3]),
        price_fen=round(float(fields[4]) * 100),
        instructor_name=fields[5][:128],
        description_zh=fields[6],
        description_en=fields[6],
    )
    return Reply(t("addcourse.done", id=course.id, title=esc(course_title(course, t))))


def _is_price(text: str) -> bool:
    try:
        return 0 <= float(text) < 1_000_000
    except ValueError:
        return False


@router.command("stats", "统计", admin=True)
async def stats(uow, t) -> Reply:
    """Learners, enrolments and money in and out."""
    totals = await uow.payments.totals()
    paid = ", ".join(f"{n}× {s} {c}" for status, c, n, s in totals if status == "paid") or "0"
    refunded = (
        ", ".join(f"{n}× {s} {c}" for status, c, n, s in totals if status == "refunded") or "0"
    )
    return Reply(
        t(
            "stats.body",
            learners=await uow.learners.count(),
            enrolments=await uow.enrolments.count(),
            paid=paid,
            refunded=refunded,
        )
    )
