"""Live sessions: scheduling, moving, cancelling, replays, reminders and learners' time zones."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.core import Incoming, Reply, Router, esc
from bot.i18n import translator_for
from handlers.catalog import card_section, course_title
from handlers.feedback import rating_prompt
from handlers.mycourses import after_my_courses
from handlers.purchase import after_purchase
from services.outbox import Outgoing, enqueue

log = logging.getLogger(__name__)
router = Router()

START = "start"
REPLAY = "replay"
#: Past sessions whose replays /sessions still lists.
PAST_REPLAYS = 5
RATE = "rate"
LOCAL_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M")


# ----------------------------------------------------------------------------- time & plans


def parse_local(text: str, zone: ZoneInfo) -> datetime | None:
    """A `YYYY-MM-DDTHH:MM` wall time in `zone` as a UTC moment (DST: the earlier reading).

    A time that does not exist (spring forward) maps through the offset before the change,
    i.e. 02:30 becomes 03:30 summer time; an ambiguous one (fall back) is the first 02:30.
    """
    for pattern in LOCAL_FORMATS:
        try:
            naive = datetime.strptime(text.strip(), pattern)
        except ValueError:
            continue
        return naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    return None


def offset_kind(offset: timedelta) -> str:
    """The reminder kind of an offset before the start (`before-3600`)."""
    return f"before-{int(offset.total_seconds())}"


def kind_offset(kind: str) -> timedelta | None:
    """The offset of a `before-…` kind, else None."""
    prefix, _, seconds = kind.partition("-")
    return timedelta(seconds=int(seconds)) if prefix == "before" and seconds.isdigit() else None


def session_end(session) -> datetime:
    """When a session is over."""
    return session.starts_at + timedelta(minutes=session.duration_minutes)


def notice_plan(session, settings) -> list[tuple[str, datetime]]:
    """(kind, due time) of a session's notices: each reminder, the start, the rating prompt."""
    plan = [(offset_kind(o), session.starts_at - o) for o in settings.reminder_offsets]
    return plan + [(START, session.starts_at), (RATE, session_end(session))]


async def plan_notices(uow, session, settings, now: datetime, learner_ids=None) -> int:
    """Store the session's notice plan; create the notices still ahead for these learners."""
    if learner_ids is None:
        learner_ids = await uow.audience.enrolled(session.course_id)
    plan = notice_plan(session, settings)
    await uow.kv.put(plan_key(session.id), {"due": [[k, at.isoformat()] for k, at in plan]})
    await uow.reminders.plan(session.id, learner_ids, [(k, at) for k, at in plan if at > now])
    return len(learner_ids)


def plan_key(session_id: int) -> str:
    """Where a session's notice plan is kept, for learners who enrol later."""
    return f"session-plan:{session_id}"


def wake_scheduler(app) -> None:
    """Ask this process's scheduler (if it runs here) to pick up changed sessions soon."""
    service = getattr(app, "scheduler", None) if app is not None else None
    if service is not None:
        service.wake()


def _duration_text(delta: timedelta, t) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit == "d" else 1) and seconds % size == 0:
            return t(f"unit.{unit}", n=seconds // size)
    return t("unit.s", n=seconds)


def _status(session, t) -> str:
    """A session's status for lists; nothing while it is simply scheduled."""
    return "" if session.status == "scheduled" else t(f"live.status.{session.status}")


def _session_label(session, t) -> str:
    if not session.title:
        return ""
    return f"「{esc(session.title)}」" if t.locale == "zh" else f" — {esc(session.title)}"


def notice_text(kind: str, session, course, t, when: datetime | None = None) -> str:
    """The text of one notice about a session, in the learner's language and zone."""
    values = dict(course=esc(course_title(course, t)), session=_session_label(session, t))
    if kind == START:
        return t("live.notice.start", url=esc(session.url), **values)
    if kind == REPLAY:
        return t("live.notice.replay", url=esc(session.replay_url or ""), **values)
    if kind in ("moved", "cancelled"):
        return t(f"live.notice.{kind}", time=t.when(when or session.starts_at), **values)
    offset = kind_offset(kind) or timedelta(0)
    return t(
        "live.notice.before",
        left=_duration_text(offset, t),
        time=t.when(session.starts_at),
        **values,
    )


def notice_reply(kind: str, session, course, t) -> Reply:
    """The message of one notice: the feedback feature's rating prompt, or a notice text."""
    if kind == RATE:
        return rating_prompt(course, t)
    return Reply(notice_text(kind, session, course, t))


async def enqueue_notices(uow, session, course, kind, targets, settings, now, key) -> set[int]:
    """Write one notice per learner to the outbox; `targets` maps learner id → dedupe suffix.

    Learners without a reachable identity are skipped; returns the learners written to.
    """
    recipients = await uow.audience.of_learners(list(targets))
    cache: dict[tuple, Reply] = {}
    rows = []
    for learner_id, suffix in targets.items():
        r = recipients.get(learner_id)
        if r is None or not r.reachable:
            continue
        style = (r.locale or settings.default_locale, r.timezone)
        if style not in cache:
            t = translator_for(style[0], settings, style[1])
            cache[style] = notice_reply(kind, session, course, t)
        rows.append(
            Outgoing(
                r.channel,
                r.user_ref,
                cache[style],
                f"live-{kind}",
                learner_id=learner_id,
                dedupe_key=f"{key}:{suffix}",
            )
        )
    await enqueue(uow, rows, now)
    return {row.learner_id for row in rows}


async def tell_enrolled(uow, session, kind, settings, now, when=None) -> int:
    """Tell every learner of the session's course that it moved or was cancelled."""
    course = await uow.courses.get(session.course_id)
    learners = await uow.audience.enrolled(session.course_id)
    recipients = await uow.audience.of_learners(learners)
    stamp = int((when or session.starts_at).timestamp())
    rows = []
    for learner_id in learners:
        r = recipients.get(learner_id)
        if r is None or not r.reachable:
            continue
        t = translator_for(r.locale or settings.default_locale, settings, r.timezone)
        rows.append(
            Outgoing(
                r.channel,
                r.user_ref,
                Reply(notice_text(kind, session, course, t, when)),
                f"live-{kind}",
                learner_id=learner_id,
                dedupe_key=f"{kind}:{session.id}:{stamp}:{learner_id}",
            )
        )
    await enqueue(uow, rows, now)
    return len(learners)


# ----------------------------------------------------------------------------- admin commands


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://")) and len(text) <= 512 and " " not in text


def _times(moment: datetime, t, settings) -> dict[str, str]:
    return dict(
        utc=t.when(moment, UTC), local=t.when(moment, settings.zone), zone=settings.timezone
    )


@router.command("schedule", "排课", admin=True)
async def schedule(msg: Incoming, uow, t, clock, settings, app) -> Reply:
    """Schedule a live session; the time is read in TIMEZONE."""
    parts = msg.args.split(maxsplit=3)
    usage = Reply(t("live.schedule.usage", zone=settings.timezone))
    if len(parts) < 3 or not parts[0].lstrip("#").isdigit():
        return usage
    starts_at = parse_local(parts[1], settings.zone)
    if starts_at is None:
        return usage
    course = await uow.courses.get(int(parts[0].lstrip("#")))
    if course is None:
        return Reply(t("live.no_course", id=esc(parts[0])))
    if not _is_url(parts[2]):
        return Reply(t("live.bad_url"))
    now = clock.now()
    if starts_at <= now:
        return Reply(t("live.past", time=t.when(starts_at, settings.zone)))
    session = await uow.sessions.add(
        course_id=course.id,
        title=(parts[3] if len(parts) > 3 else "")[:128],
        starts_at=starts_at,
        duration_minutes=settings.session_duration_minutes,
        url=parts[2],
        status="scheduled",
        created_at=now,
    )
    learners = await plan_notices(uow, session, settings, now)
    wake_scheduler(app)
    log.info("scheduled session #%s of course #%s at %s", session.id, course.id, starts_at)
    return Reply(
        t.plural(
            "live.scheduled",
            learners,
            id=session.id,
            course=course.id,
            title=esc(course_title(course, t)),
            learners=learners,
            **_times(starts_at, t, settings),
        )
    )


async def _session_arg(text: str, uow, t) -> tuple[object | None, Reply | None]:
    arg = text.strip().lstrip("#")
    session = await uow.sessions.get(int(arg)) if arg.isdigit() else None
    if session is None:
        return None, Reply(t("live.no_session", id=esc(arg)))
    if session.status != "scheduled":
        return None, Reply(t("live.not_scheduled", id=session.id))
    return session, None


@router.command("reschedule", "改期", admin=True)
async def reschedule(msg: Incoming, uow, t, clock, settings, app) -> Reply:
    """Move a session: learners are told, old reminders are dropped, new ones planned."""
    parts = msg.args.split()
    if len(parts) != 2 or parse_local(parts[1], settings.zone) is None:
        return Reply(t("live.reschedule.usage", zone=settings.timezone))
    session, problem = await _session_arg(parts[0], uow, t)
    if problem:
        return problem
    starts_at, now = parse_local(parts[1], settings.zone), clock.now()
    if starts_at <= now:
        return Reply(t("live.past", time=t.when(starts_at, settings.zone)))
    session.starts_at = starts_at
    await uow.reminders.drop_unsent(session.id, [k for k, _ in notice_plan(session, settings)])
    await plan_notices(uow, session, settings, now)
    told = await tell_enrolled(uow, session, "moved", settings, now)
    wake_scheduler(app)
    return Reply(
        t.plural(
            "live.moved.admin", told, id=session.id, learners=told,
            **_times(starts_at, t, settings),
        )
    )


@router.command("cancelsession", "取消直播", admin=True)
async def cancel_session(msg: Incoming, uow, t, clock, settings, app) -> Reply:
    """Cancel a session: learners are told and its reminders never fire."""
    if not msg.args.strip():
        return Reply(t("live.cancel.usage"))
    session, problem = await _session_arg(msg.args, uow, t)
    if problem:
        return problem
    session.status = "cancelled"
    await uow.reminders.cancel(session.id)
    told = await tell_enrolled(uow, session, "cancelled", settings, clock.now())
    wake_scheduler(app)
    return Reply(t.plural("live.cancelled.admin", told, id=session.id, learners=told))


@router.command("replay", "回放", admin=True)
async def replay(msg: Incoming, uow, t, clock, settings, app) -> Reply:
    """Set a session's replay link; enrolled learners get it once the session is over."""
    parts = msg.args.split()
    if len(parts) != 2:
        return Reply(t("live.replay.usage"))
    arg = parts[0].lstrip("#")
    session = await uow.sessions.get(int(arg)) if arg.isdigit() else None
    if session is None:
        return Reply(t("live.no_session", id=esc(arg)))
    if not _is_url(parts[1]):
        return Reply(t("live.bad_url"))
    now = clock.now()
    session.replay_url = parts[1]
    due = max(now, session_end(session))
    await uow.reminders.drop_unsent(session.id, [REPLAY])
    learners = await uow.audience.enrolled(session.course_id)
    await uow.reminders.plan(session.id, learners, [(REPLAY, due)])
    wake_scheduler(app)
    return Reply(t("live.replay.admin", id=session.id, time=t.when(due, settings.zone)))


# ----------------------------------------------------------------------------- learners


@router.command("sessions", "直播")
async def sessions(msg: Incoming, uow, learner, t, clock, settings) -> Reply:
    """List a course's sessions in the learner's time; links for owners and admins."""
    arg = msg.args.strip().lstrip("#")
    if not arg.isdigit():
        return Reply(t("live.sessions.usage"))
    course = await uow.courses.get(int(arg))
    if course is None:
        return Reply(t("live.no_course", id=esc(arg)))
    now = clock.now()
    rows = await uow.sessions.of_course(course.id)
    replays = [s for s in rows if session_end(s) < now and s.replay_url][-PAST_REPLAYS:]
    rows = replays + [s for s in rows if session_end(s) >= now]
    if not rows:
        return Reply(t("live.sessions.none", id=course.id))
    admin = settings.is_admin(msg.channel, msg.user_ref)
    owner = admin or await uow.enrolments.owns(learner.id, course.id)
    lines = [t("live.sessions.title", title=esc(course_title(course, t)), zone=t.zone.key)]
    for s in rows:
        line = f"#{s.id} {t.when(s.starts_at)}{_session_label(s, t)}{_status(s, t)}"
        if s in replays:
            line += t("live.sessions.replay") + (f"\n    {esc(s.replay_url)}" if owner else "")
        elif owner and s.status == "scheduled":
            line += f"\n    {esc(s.url)}"
        lines.append(line)
    return Reply("\n".join(lines))


@router.command("timezone", "时区", "tz")
async def timezone(msg: Incoming, learner, t, clock, settings) -> Reply:
    """Show or set the learner's own time zone (IANA name)."""
    name = msg.args.strip()
    if not name:
        zone = learner.timezone or settings.timezone
        return Reply(t("tz.current", zone=esc(zone), now=t.when(clock.now())))
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return Reply(t("tz.unknown", zone=esc(name)))
    learner.timezone = zone.key
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
        f"• {t.when(s.starts_at)} — #{c.id} {esc(course_title(c, t))}{_session_label(s, t)}"
        for s, c in rows
    ]
    return [Reply("\n".join(lines))]


@after_purchase
async def plan_for_new_learner(learner, course, uow, t, clock, msg) -> list[Reply]:
    """A new learner gets the notices still ahead of every upcoming session of the course."""
    now = clock.now()
    sessions = await uow.sessions.of_course(course.id)
    upcoming = [s for s in sessions if s.status == "scheduled" and s.starts_at > now]
    for session in upcoming:
        stored = await uow.kv.get(plan_key(session.id)) or {"due": []}
        ahead = [(kind, datetime.fromisoformat(at)) for kind, at in stored["due"]]
        ahead = [(kind, at) for kind, at in ahead if at > now]
        await uow.reminders.plan(session.id, [learner.id], ahead)
    replays = [s for s in sessions if s.replay_url]
    lines = [t("live.purchase.next", time=t.when(upcoming[0].starts_at))] if upcoming else []
    if replays:
        lines.append(t.plural("live.purchase.replays", len(replays), n=len(replays), id=course.id))
    return [Reply("\n".join(lines))] if lines else []
