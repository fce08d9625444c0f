"""Admin commands of the storefront: refunds, adding courses, sales figures."""

from __future__ import annotations

from bot.core import Incoming, Reply, Router, esc
from handlers.catalog import course_title
from services import admin as service
from services.admin import RefundStatus

router = Router()


@router.command("refund", "退款", admin=True)
async def refund(msg: Incoming, uow, t, clock, channels, settings) -> Reply:
    """Refund a payment through its provider, then revoke the enrolment it bought."""
    arg = msg.args.strip().lstrip("#")
    if not arg.isdigit():
        return Reply(t("refund.usage"))
    result = await service.refund(uow, channels, settings, int(arg), clock.now())
    payment = result.payment
    if result.status is RefundStatus.NOT_FOUND:
        return Reply(t("refund.not_found", id=arg))
    if result.status is RefundStatus.NOT_REFUNDABLE:
        return Reply(t("refund.not_paid", id=payment.id, status=payment.status))
    if result.status is RefundStatus.FAILED:
        return Reply(t("refund.failed", error=esc(result.error)))
    title = esc(course_title(result.course, t)) if result.course else "?"
    amount = t.money(payment.amount, payment.currency)
    return Reply(t("refund.done", id=payment.id, amount=amount, title=title))


@router.command("addcourse", "上架", admin=True)
async def add_course(msg: Incoming, uow, t) -> Reply:
    """Add a course from one line of `|`-separated fields."""
    new = service.parse_new_course(msg.args)
    course = await service.add_course(uow, new) if new else None
    if course is None:
        slugs = ", ".join(await service.category_slugs(uow)) or "-"
        return Reply(t("addcourse.usage", slugs=esc(slugs)))
    return Reply(t("addcourse.done", id=course.id, title=esc(course_title(course, t))))


@router.command("stats", "统计", admin=True)
async def stats(uow, t) -> Reply:
    """Learners, enrolments and money in and out."""
    figures = await service.stats(uow)

    def money(rows) -> str:
        return ", ".join(f"{m.count}× {t.money(m.amount, m.currency)}" for m in rows) or "0"

    return Reply(
        t(
            "stats.body",
            learners=figures.learners,
            enrolments=figures.enrolments,
            paid=money(figures.paid),
            refunded=money(figures.refunded),
        )
    )
