"""Live sessions in chat: /schedule, /reschedule, /cancelsession, /replay, /sessions, /timezone.

Parse the command, call `services.live`, word the answer; the notices themselves are planned and
written by the service and sent by the scheduler.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bot.core import Incoming, Reply, Router, esc
from bot.parsing import parse_id, parse_local_datetime
from handlers.catalog import card_section
from handlers.mycourses import after_my_courses
from handlers.purchase import after_purchase
from services import audit, live
from services.live import LiveProblem, course_title, session_label

router = Router()


def _problem(problem: LiveProblem, t, settings) -> Reply:
    """The answer to a request the service refused."""
    values = dict(problem.values)
    if isinstance(values.get("time"), datetime):
        values["time"] = t.when(values["time"], settings.zone)
    return Reply(t(f"live.{problem.code}", **values))


def _id(text: str) -> int | None:
    """`12` or `#12` as an id (ASCII digits, within the column's range), else None."""
    return parse_id(text)


def _times(moment: datetime, t, settings) -> dict[str, str]:
    return dict(
        utc=t.when(moment, UTC), local=t.when(moment, settings.zone), zone=settings.timezone
    )


def _status(session, t) -> str:
    """A session's status for lists; nothing while it is simply scheduled."""
    return "" if session.status == "scheduled" else t(f"live.status.{session.status}")


async def _staff(msg: Incoming, uow, learner, settings):
    """The acting admin or instructor, or None for a learner (services check the course)."""
    actor = await audit.actor_of(uow, settings, msg.channel, msg.user_ref, learner.id)
    return actor if actor.is_staff else None


# ----------------------------------------------------------------------------- staff commands


@router.command("schedule", "排课")
async def schedule(msg: Incoming, uow, learner, t, clock, settings, wake) -> Reply:
    """Schedule a live session; the time is read in TIMEZONE. Admins for every course,
    instructors for their own."""
    actor = await _staff(msg, uow, learner, settings)
    if actor is None:
        return Reply(t("admin.refused"))
    parts = msg.args.split(maxsplit=3)
    usage = Reply(t("live.schedule.usage", zone=settings.timezone))
    if len(parts) < 3 or _id(parts[0]) is None:
        return usage
    starts_at = parse_local_datetime(parts[1], settings.zone, clock.now())
    if starts_at is None:
        return usage
    title = parts[3] if len(parts) > 3 else ""
    try:
        done = await live.schedule_session(
            uow, settings, clock.now(), _id(parts[0]), starts_at, parts[2], title, actor
        )
    except LiveProblem as problem:
        return _problem(problem, t, settings)
    wake()
    return Reply(
        t.plural(
            "live.scheduled",
            done.learners,
            id=done.session.id,
            course=done.course.id,
            title=esc(course_title(done.course, t)),
            learners=done.learners,
            **_times(starts_at, t, settings),
        )
    )


@router.command("reschedule", "改期")
async def reschedule(msg: Incoming, uow, learner, t, clock, settings, wake) -> Reply:
    """Move a session: learners are told, old reminders are dropped, new ones planned."""
    actor = await _staff(msg, uow, learner, settings)
    if actor is None:
        return Reply(t("admin.refused"))
    parts = msg.args.split()
    starts_at = (
        parse_local_datetime(parts[1], settings.zone, clock.now()) if len(parts) == 2 else None
    )
    if starts_at is None:
        return Reply(t("live.reschedule.usage", zone=settings.timezone))
    if _id(parts[0]) is None:
        return Reply(t("live.no_session", id=esc(parts[0].lstrip("#"))))
    try:
        done = await live.reschedule_session(
            uow, settings, clock.now(), _id(parts[0]), starts_at, actor
        )
    except LiveProblem as problem:
        return _problem(problem, t, settings)
    wake()
    return Reply(
        t.plural(
            "live.moved.admin",
            done.learners,
            id=done.session.id,
            learners=done.learners,
            **_times(starts_at, t, settings),
        )
    )


@router.command("cancelsession", "取消直播")
async def cancel_session(msg: Incoming, uow, learner, t, clock, settings, wake) -> Reply:
    """Cancel a session: learners are told and its reminders never fire."""
    actor = await _staff(msg, uow, learner, settings)
    if actor is None:
        return Reply(t("admin.refused"))
    if not msg.args.strip():
        return Reply(t("live.cancel.usage"))
    session_id = _id(msg.args)
    if session_id is None:
        return Reply(t("live.no_session", id=esc(msg.args.strip().lstrip("#"))))
    try:
        done = await live.cancel_session(uow, settings, clock.now(), session_id, actor)
    except LiveProblem as problem:
        return _problem(problem, t, settings)
    wake()
    return Reply(
        t.plural("live.cancelled.admin", done.learners, id=done.session.id, learners=done.learners)
    )


@router.command("replay", "回放")
async def replay(msg: Incoming, uow, learner, t, clock, settings, wake) -> Reply:
    """Set a session's replay link; enrolled learners get it once the session is over."""
    actor = await _staff(msg, uow, learner, settings)
    if actor is None:
        return Reply(t("admin.refused"))
    parts = msg.args.split()
    if len(parts) != 2:
        return Reply(t("live.replay.usage"))
    session_id = _id(parts[0])
    if session_id is None:
        return Reply(t("live.no_session", id=esc(parts[0].lstrip("#"))))
    try:
        done = await live.set_replay(uow, clock.now(), session_id, parts[1], actor)
    except LiveProblem as problem:
        return _problem(problem, t, settings)
    wake()
    return Reply(t("live.replay.admin", id=done.session.id, time=t.when(done.due, settings.zone)))


# ----------------------------------------------------------------------------- learners


@router.command("sessions", "直播")
async def sessions(msg: Incoming, uow, learner, t, clock, settings) -> Reply:
    """List a course's sessions in the learner's time; links for owners and admins."""
    course_id = _id(msg.args)
    if course_id is None:
        return Reply(t("live.sessions.usage"))
    admin = settings.is_admin(msg.channel, msg.user_ref)
    try:
        found = await live.sessions_of_course(uow, clock.now(), course_id, learner.id, admin)
    except LiveProblem as problem:
        return _problem(problem, t, settings)
    if not found.items:
        return Reply(t("live.sessions.none", id=found.course.id))
    title = esc(course_title(found.course, t))
    lines = [t("live.sessions.title", title=title, zone=t.zone.key)]
    for item in found.items:
        s = item.session
        line = f"#{s.id} {t.when(s.starts_at)}{session_label(s, t)}{_status(s, t)}"
        if item.replay:
            line += t("live.sessions.replay")
        if item.url:
            line += f"\n    {esc(item.url)}"
        lines.append(line)
    return Reply("\n".join(lines))


@router.command("timezone", "时区", "tz")
async def timezone(msg: Incoming, learner, t, clock, settings) -> Reply:
    """Show or set the learner's own time zone (IANA name)."""
    name = msg.args.strip()
    if not name:
        zone = learner.timezone or settings.timezone
        return Reply(t("tz.current", zone=esc(zone), now=t.when(clock.now())))
    zone = live.set_timezone(learner, name)
    if zone is None:
        return Reply(t("tz.unknown", zone=esc(name)))
    return Reply(t("tz.set", zone=esc(zone.key), now=t.when(clock.now(), zone)))


@card_section
async def next_session_section(course, learner, uow, t, clock) -> str | None:
    """The course card shows the next session in the learner's own time."""
    session = await uow.sessions.next_of_course(course.id, clock.now())
    return t("live.card.next", time=t.when(session.starts_at)) if session else None


@after_my_courses
async def upcoming_sessions(learner, uow, t, clock, msg) -> list[Reply]:
    """/mycourses lists the upcoming sessions of owned courses."""
    rows = await uow.sessions.upcoming_for_learner(learner.id, clock.now())
    if not rows:
        return []
    lines = [t("live.mine.title")]
    lines += [
        f"• {t.when(s.starts_at)} — #{c.id} {esc(course_title(c, t))}{session_label(s, t)}"
        for s, c in rows
    ]
    return [Reply("\n".join(lines))]


@after_purchase
async def plan_for_new_learner(learner, course, uow, t, clock, msg) -> list[Reply]:
    """A new learner gets the notices still ahead of every upcoming session of the course."""
    plan = await live.plan_for_new_learner(uow, clock.now(), learner.id, course.id)
    lines = []
    if plan.next_starts_at is not None:
        lines.append(t("live.purchase.next", time=t.when(plan.next_starts_at)))
    if plan.replays:
        lines.append(t.plural("live.purchase.replays", plan.replays, n=plan.replays, id=course.id))
    return [Reply("\n".join(lines))] if lines else []
