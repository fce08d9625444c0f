"""Live sessions: planning, moving and cancelling them, replays, and the notices learners get.

Every function takes a unit of work, the moment `now` and the settings it needs, and returns
plain data. A rule the caller broke is a `LiveProblem` with a code (`no_course`, `bad_url`,
`past`, `no_session`, `not_scheduled`) the chat side words. The notices themselves (reminders,
start, replay, moved, cancelled, the rating prompt) are stored in the outbox in the learner's
language and time zone, so their text is built here through `translator_for`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.core import Button, Reply, esc
from bot.i18n import translator_for
from bot.parsing import parse_int
from services import attendance, audit
from services.outbox import Outgoing, enqueue

log = logging.getLogger(__name__)

START = "start"
REPLAY = "replay"
RATE = "rate"
MOVED = "moved"
CANCELLED = "cancelled"
#: Past sessions whose replays a course's session list still shows.
PAST_REPLAYS = 5
MAX_TITLE = 128
MAX_URL = 512


class LiveProblem(Exception):
    """A request the rules of live sessions refuse; `code` names the rule, `values` the facts."""

    def __init__(self, code: str, **values: Any) -> None:
        super().__init__(code)
        self.code = code
        self.values = values


# ----------------------------------------------------------------------------- time & plans


def is_url(text: str) -> bool:
    """True for an http(s) link that fits a session row."""
    return text.startswith(("http://", "https://")) and len(text) <= MAX_URL and " " not in text


def offset_kind(offset: timedelta) -> str:
    """The reminder kind of an offset before the start (`before-3600`)."""
    return f"before-{int(offset.total_seconds())}"


def kind_offset(kind: str) -> timedelta | None:
    """The offset of a `before-…` kind, else None."""
    prefix, _, seconds = kind.partition("-")
    number = parse_int(seconds) if prefix == "before" else None
    return timedelta(seconds=number) if number is not None else None


def session_end(session) -> datetime:
    """When a session is over."""
    return session.starts_at + timedelta(minutes=session.duration_minutes)


def notice_plan(session, settings) -> list[tuple[str, datetime]]:
    """(kind, due time) of a session's notices: each reminder, the start, the rating prompt."""
    plan = [(offset_kind(o), session.starts_at - o) for o in settings.reminder_offsets]
    return plan + [(START, session.starts_at), (RATE, session_end(session))]


def plan_key(session_id: int) -> str:
    """Where a session's notice plan is kept, for learners who enrol later."""
    return f"session-plan:{session_id}"


async def plan_notices(uow, session, settings, now: datetime, learner_ids=None) -> int:
    """Store the session's notice plan; create the notices still ahead for these learners.

    Without `learner_ids`, every learner enrolled in the course; returns how many learners.
    """
    if learner_ids is None:
        learner_ids = await uow.audience.enrolled(session.course_id)
    plan = notice_plan(session, settings)
    await uow.kv.put(plan_key(session.id), {"due": [[k, at.isoformat()] for k, at in plan]})
    await uow.reminders.plan(session.id, learner_ids, [(k, at) for k, at in plan if at > now])
    return len(learner_ids)


# ----------------------------------------------------------------------------- notice texts


def course_title(course, t) -> str:
    """A course title in the translator's language (unescaped)."""
    return t.pick(course.title_zh, course.title_en)


def session_label(session, t) -> str:
    """The session's own title as a suffix of the course title (escaped), or nothing."""
    if not session.title:
        return ""
    return f"「{esc(session.title)}」" if t.locale == "zh" else f" — {esc(session.title)}"


def duration_text(delta: timedelta, t) -> str:
    """A reminder offset in words: `1 h`, `10 min`, `2 d`."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit == "d" else 1) and seconds % size == 0:
            return t(f"unit.{unit}", n=seconds // size)
    return t("unit.s", n=seconds)


def notice_text(
    kind: str, session, course, t, when: datetime | None = None, link: str | None = None
) -> str:
    """The text of one notice about a session, in the learner's language and zone; `link` is
    the learner's own tracked join link, when there is one."""
    values = dict(course=esc(course_title(course, t)), session=session_label(session, t))
    if kind == START:
        return t("live.notice.start", url=esc(link or session.url), **values)
    if kind == REPLAY:
        return t("live.notice.replay", url=esc(session.replay_url or ""), **values)
    if kind in (MOVED, CANCELLED):
        return t(f"live.notice.{kind}", time=t.when(when or session.starts_at), **values)
    offset = kind_offset(kind) or timedelta(0)
    left = duration_text(offset, t)
    return t("live.notice.before", left=left, time=t.when(session.starts_at), **values)


def rating_prompt(course, t) -> Reply:
    """The prompt at a session's end: rate the course, with the feedback feature's
    `rate:<course_id>` button (handled by /rate in handlers/feedback.py)."""
    title = esc(course_title(course, t))
    return Reply(t("rate.prompt", title=title), [[Button(t("rate.button"), f"rate:{course.id}")]])


def notice_message(kind: str, session, course, t, when: datetime | None = None) -> Reply:
    """The stored message of one notice: the rating prompt, or a notice text."""
    if kind == RATE:
        return rating_prompt(course, t)
    return Reply(notice_text(kind, session, course, t, when))


async def enqueue_notices(
    uow, session, course, kind: str, targets: dict[int, Any], settings, now: datetime, key: str,
    when: datetime | None = None,
) -> set[int]:
    """Write one notice per learner to the outbox; `targets` maps learner id → dedupe suffix.

    Learners without a reachable identity are skipped; returns the learners written to.
    """
    recipients = await uow.audience.of_learners(list(targets))
    messages: dict[tuple, Reply] = {}
    rows = []
    for learner_id, suffix in targets.items():
        r = recipients.get(learner_id)
        if r is None or not r.reachable:
            continue
        style = (r.locale or settings.default_locale, r.timezone)
        if kind == START and settings.public_url:  # a personal link: attendance is counted
            t = translator_for(style[0], settings, style[1])
            link = await attendance.link_for(uow, settings, learner_id, session.id)
            message = Reply(notice_text(kind, session, course, t, when, link))
        else:
            if style not in messages:
                t = translator_for(style[0], settings, style[1])
                messages[style] = notice_message(kind, session, course, t, when)
            message = messages[style]
        rows.append(
            Outgoing(
                r.channel,
                r.user_ref,
                message,
                f"live-{kind}",
                learner_id=learner_id,
                dedupe_key=f"{key}:{suffix}",
            )
        )
    await enqueue(uow, rows, now)
    return {row.learner_id for row in rows}


async def tell_enrolled(uow, session, kind: str, settings, now: datetime, when=None) -> int:
    """Tell every learner of the session's course that it moved or was cancelled.

    Returns how many learners are enrolled (those without a reachable identity included).
    """
    course = await uow.courses.get(session.course_id)
    learners = await uow.audience.enrolled(session.course_id)
    stamp = int((when or session.starts_at).timestamp())
    targets = {learner_id: learner_id for learner_id in learners}
    await enqueue_notices(
        uow, session, course, kind, targets, settings, now, key=f"{kind}:{session.id}:{stamp}",
        when=when,
    )
    return len(learners)


# ----------------------------------------------------------------------------- instructors


@dataclass(frozen=True)
class Planned:
    """A session that was scheduled or moved, and how many enrolled learners it concerns."""

    session: Any
    course: Any
    learners: int


def _check_owner(actor, course_id: int) -> None:
    """LiveProblem when an instructor acts on another instructor's course (admins may all)."""
    if actor is not None and not actor.may_manage(course_id):
        raise LiveProblem("not_yours", id=course_id)


async def schedule_session(
    uow,
    settings,
    now: datetime,
    course_id: int,
    starts_at: datetime,
    url: str,
    title: str = "",
    actor=None,
) -> Planned:
    """Create a session of a course and plan its notices for every enrolled learner."""
    course = await uow.courses.get(course_id)
    if course is None:
        raise LiveProblem("no_course", id=course_id)
    _check_owner(actor, course.id)
    if not is_url(url):
        raise LiveProblem("bad_url")
    if len(title) > MAX_TITLE:
        raise LiveProblem("title_too_long", count=len(title), max=MAX_TITLE)
    if starts_at <= now:
        raise LiveProblem("past", time=starts_at)
    session = await uow.sessions.add(
        course_id=course.id,
        title=title.strip(),
        starts_at=starts_at,
        duration_minutes=settings.session_duration_minutes,
        url=url,
        status="scheduled",
        created_at=now,
    )
    learners = await plan_notices(uow, session, settings, now)
    await audit.note(
        uow,
        actor,
        "session.schedule",
        f"session:{session.id}",
        now,
        course_id=course.id,
        starts_at=starts_at.isoformat(),
    )
    log.info("scheduled session #%s of course #%s at %s", session.id, course.id, starts_at)
    return Planned(session, course, learners)


async def scheduled_session(uow, session_id: int, actor=None):
    """A session that may still be changed; LiveProblem when there is none or it is over
    (or, for an instructor, of another instructor's course)."""
    session = await uow.sessions.get(session_id)
    if session is None:
        raise LiveProblem("no_session", id=session_id)
    _check_owner(actor, session.course_id)
    if session.status != "scheduled":
        raise LiveProblem("not_scheduled", id=session.id)
    return session


async def reschedule_session(
    uow, settings, now: datetime, session_id: int, starts_at: datetime, actor=None
) -> Planned:
    """Move a session: its unsent notices are planned afresh and enrolled learners are told."""
    session = await scheduled_session(uow, session_id, actor)
    if starts_at <= now:
        raise LiveProblem("past", time=starts_at)
    session.starts_at = starts_at
    await uow.reminders.drop_unsent(session.id, [k for k, _ in notice_plan(session, settings)])
    await plan_notices(uow, session, settings, now)
    told = await tell_enrolled(uow, session, MOVED, settings, now)
    target = f"session:{session.id}"
    await audit.note(uow, actor, "session.move", target, now, starts_at=starts_at.isoformat())
    return Planned(session, await uow.courses.get(session.course_id), told)


async def cancel_session(uow, settings, now: datetime, session_id: int, actor=None) -> Planned:
    """Cancel a session: its notices never fire and enrolled learners are told."""
    session = await scheduled_session(uow, session_id, actor)
    session.status = CANCELLED
    await uow.reminders.cancel(session.id)
    told = await tell_enrolled(uow, session, CANCELLED, settings, now)
    await audit.note(uow, actor, "session.cancel", f"session:{session.id}", now, told=told)
    return Planned(session, await uow.courses.get(session.course_id), told)


@dataclass(frozen=True)
class ReplaySet:
    """A session's replay link, and when its learners get it."""

    session: Any
    due: datetime
    learners: int


async def set_replay(uow, now: datetime, session_id: int, url: str, actor=None) -> ReplaySet:
    """Set a session's replay link; enrolled learners get it once the session is over."""
    session = await uow.sessions.get(session_id)
    if session is None:
        raise LiveProblem("no_session", id=session_id)
    _check_owner(actor, session.course_id)
    if not is_url(url):
        raise LiveProblem("bad_url")
    session.replay_url = url
    due = max(now, session_end(session))
    await uow.reminders.drop_unsent(session.id, [REPLAY])
    learners = await uow.audience.enrolled(session.course_id)
    await uow.reminders.plan(session.id, learners, [(REPLAY, due)])
    await audit.note(uow, actor, "session.replay", f"session:{session.id}", now, url=url[:60])
    return ReplaySet(session, due, len(learners))


# ----------------------------------------------------------------------------- learners


@dataclass(frozen=True)
class SessionItem:
    """One line of a course's session list; `url` is the link this viewer may see, if any."""

    session: Any
    replay: bool
    url: str | None


@dataclass(frozen=True)
class SessionList:
    """A course's recent replays and its sessions not yet over, as one viewer sees them."""

    course: Any
    items: list[SessionItem] = field(default_factory=list)


def ready_replays(sessions, now: datetime) -> list:
    """The replays `/sessions` shows: of sessions already over, the last `PAST_REPLAYS`."""
    return [s for s in sessions if session_end(s) < now and s.replay_url][-PAST_REPLAYS:]


async def sessions_of_course(
    uow, now: datetime, course_id: int, learner_id: int | None, admin: bool = False
) -> SessionList:
    """The last `PAST_REPLAYS` replays and the sessions not over yet; links for owners only."""
    course = await uow.courses.get(course_id)
    if course is None:
        raise LiveProblem("no_course", id=course_id)
    rows = await uow.sessions.of_course(course.id)
    replays = ready_replays(rows, now)
    ahead = [s for s in rows if session_end(s) >= now]
    owner = admin or (
        learner_id is not None and await uow.enrolments.owns(learner_id, course.id)
    )
    items = [SessionItem(s, True, s.replay_url if owner else None) for s in replays]
    items += [
        SessionItem(s, False, s.url if owner and s.status == "scheduled" else None)
        for s in ahead
    ]
    return SessionList(course, items)


@dataclass(frozen=True)
class NewLearnerPlan:
    """What a learner who just enrolled has ahead: the next session and the replays ready."""

    next_starts_at: datetime | None
    replays: int


async def plan_for_new_learner(uow, now: datetime, learner_id: int, course_id: int):
    """Plan the notices still ahead of every upcoming session of the course for one learner."""
    sessions = await uow.sessions.of_course(course_id)
    upcoming = [s for s in sessions if s.status == "scheduled" and s.starts_at > now]
    for session in upcoming:
        stored = await uow.kv.get(plan_key(session.id)) or {"due": []}
        ahead = [(kind, datetime.fromisoformat(at)) for kind, at in stored["due"]]
        ahead = [(kind, at) for kind, at in ahead if at > now]
        await uow.reminders.plan(session.id, [learner_id], ahead)
    replays = len(ready_replays(sessions, now))
    return NewLearnerPlan(upcoming[0].starts_at if upcoming else None, replays)


def set_timezone(learner, name: str) -> ZoneInfo | None:
    """Set a learner's own time zone by IANA name; None (nothing changed) when unknown."""
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    learner.timezone = zone.key
    return zone


# ----------------------------------------------------------------------------- scheduler side


@dataclass(frozen=True)
class NoticeRun:
    """What one run of a session's notice of one kind did."""

    claimed: int
    queued: int
    skipped: bool = False


async def send_due_notices(
    uow, settings, now: datetime, session_id: int, kind: str, early: timedelta, grace: timedelta
) -> NoticeRun:
    """Claim the due notices of one kind of one session and write them to the outbox.

    The notices are claimed by setting `sent_at` in one UPDATE, so two runs (a double fire, two
    processes) cannot both take a row; the outbox rows are written in the caller's transaction.
    Notices due in (now - grace, now + early] are taken; older ones are marked missed. Learners
    refunded after planning are marked 'not_enrolled', those with no reachable identity
    'unreachable'.
    """
    session = await uow.sessions.get(session_id)
    if session is None or session.status != "scheduled":
        log.info("notice %s of session %s skipped: session not scheduled", kind, session_id)
        return NoticeRun(0, 0, skipped=True)
    claimed = await uow.reminders.claim(session_id, kind, now + early, now - grace)
    await uow.reminders.mark_missed(now - grace)
    owners = set(await uow.enrolments.learners_of(session.course_id)) if claimed else set()
    targets = {learner: reminder for reminder, learner in claimed if learner in owners}
    queued: set[int] = set()
    if targets:
        course = await uow.courses.get(session.course_id)
        queued = await enqueue_notices(
            uow, session, course, kind, targets, settings, now, key="rem"
        )
    await uow.reminders.set_status(
        [reminder for reminder, learner in claimed if learner not in owners], "not_enrolled"
    )
    await uow.reminders.set_status(
        [reminder for learner, reminder in targets.items() if learner not in queued],
        "unreachable",
    )
    return NoticeRun(len(claimed), len(queued))
