"""`/stats [course_id] [7d|30d|90d|all]`: the figures in text and a chart, for admins (all
courses) and instructors (their own courses only)."""

from __future__ import annotations

import asyncio
import html

from bot.core import Incoming, Reply, Router, esc
from handlers.catalog import course_title
from services import audit, charts
from services import stats as service

router = Router()
COMMAND, ALIASES = "stats", ("统计",)
MAX_SESSION_LINES = 10


def percent(value: float | None) -> str:
    """A share as `42.5%`, or `—` when undefined."""
    return "—" if value is None else f"{value * 100:.1f}%"


def number(value: float | None) -> str:
    """A mean with two decimals, or `—`."""
    return "—" if value is None else f"{value:.2f}"


def money(amounts: dict[str, int], t) -> str:
    """Amounts per currency, Stars and CNY apart."""
    return " + ".join(t.money(v, c) for c, v in sorted(amounts.items()) if v) or "0"


async def allowed_scope(uow, msg: Incoming, learner, settings, t, course_id):
    """(actor, course ids or None for all) or a refusal Reply."""
    actor = await audit.actor_of(uow, settings, msg.channel, msg.user_ref, learner.id)
    if not actor.is_staff:
        return Reply(t("kpi.refused"))
    if course_id is not None and await uow.courses.get(course_id) is None:
        return Reply(t("kpi.no_course", id=course_id))
    scope = actor.scope(course_id)
    if scope == [] and course_id is not None:
        return Reply(t("kpi.not_yours", id=course_id))
    if scope == []:
        return Reply(t("kpi.no_courses"))
    return actor, scope


def stats_text(report: service.Report, scope_label: str, t) -> str:
    """The figures as one message."""
    c = report.criteria
    text = t(
        "kpi.body",
        scope=scope_label,
        period=t(f"kpi.period.{report.period}"),
        revenue=money(report.revenue, t),
        refunded=money(report.refunded, t),
        buyers=report.buyers,
        payments=report.payments,
        conversion=percent(report.conversion),
        converted=report.converted,
        viewers=report.viewers,
        repurchase=percent(report.repurchase),
        repeat=report.repeat_buyers,
        retention=percent(report.retention),
        retained=report.retained,
        cohort=report.cohort,
        attendance=percent(report.attendance),
        score=number(report.satisfaction),
        content=number(c[0]),
        instructor=number(c[1]),
        interaction=number(c[2]),
        ratings=report.ratings,
        questions=report.open_questions,
        rec_clicks=report.rec_clicks,
        rec_impressions=report.rec_impressions,
        rec_clicked=report.rec_clicked,
        rec_ctr=percent(report.rec_ctr),
        rec_conversion=percent(report.rec_conversion),
        coupon_uses=report.coupon_uses,
        coupon_discount=money(report.coupon_discount, t),
    )
    lines = [text]
    for s in report.sessions[-MAX_SESSION_LINES:]:
        lines.append(
            t(
                "kpi.session_line",
                id=s.session_id,
                title=esc(s.title or f"#{s.session_id}"),
                time=t.when(s.starts_at),
                attended=s.attended,
                enrolled=s.enrolled,
                rate=percent(s.rate),
            )
        )
    return "\n".join(lines)


@router.command(COMMAND, *ALIASES)
async def stats(msg: Incoming, uow, learner, t, settings, clock) -> list[Reply]:
    """The figures of the courses this admin or instructor may see, and their chart."""
    parsed = service.parse_args(msg.args)
    if parsed is None:
        return [Reply(t("kpi.usage"))]
    course_id, period = parsed
    allowed = await allowed_scope(uow, msg, learner, settings, t, course_id)
    if isinstance(allowed, Reply):
        return [allowed]
    _actor, scope = allowed
    report = await service.report(uow, scope, period, clock.now(), settings.zone)
    if course_id is not None:
        course = await uow.courses.get(course_id)
        scope_label = t("kpi.scope.course", id=course_id, title=esc(course_title(course, t)))
    elif scope is None:
        scope_label = t("kpi.scope.all")
    else:
        scope_label = t.plural("kpi.scope.mine", len(scope), count=len(scope))
    data = charts.chart_data(report, html.unescape(scope_label), t, settings.zone)
    png = await asyncio.to_thread(charts.render, data)
    caption = t("kpi.chart_caption", period=t(f"kpi.period.{period}"))
    return [Reply(stats_text(report, scope_label, t)), Reply(caption, image=png)]
