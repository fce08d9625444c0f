"""Announcements in chat: /announce to everyone or one course, now or later; /stop opts out.

Parse the command, call `services.announcements`, word the answer.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from bot.core import Incoming, Reply, Router
from bot.parsing import parse_id, parse_local_datetime
from services import announcements, audit
from services.announcements import AnnouncementProblem

router = Router()

#: `at <time>` before or after the text; <time> is anything that looks like a date or time
#: (a digit and `-` or `:`), so a bad one is refused instead of being sent now as text.
_AT_START = re.compile(r"^at\s+(\S+)\s+(.+)$", re.S | re.I)
_AT_END = re.compile(r"^(.+?)\s+at\s+(\S+)$", re.S | re.I)
_DATE_LIKE = re.compile(r"\d.*[-:]|[-:].*\d")
#: Returned for `at` a time that does not parse, or lies outside the accepted window.
BAD_TIME = "bad_time"


def parse_announce(
    args: str, zone, now: datetime | None = None
) -> tuple[str, str, datetime | None] | str | None:
    """(target, text, send time or None) from `/announce` arguments; None when malformed,
    BAD_TIME when an `at` time is given that is not a valid time (or out of range)."""
    target, _, rest = args.strip().partition(" ")
    rest = rest.strip()
    if not target or not rest or not (target.lower() == "all" or parse_id(target)):
        return None
    when = None
    for pattern, text_group, time_group in ((_AT_START, 2, 1), (_AT_END, 1, 2)):
        match = pattern.match(rest)
        if match and _DATE_LIKE.search(match.group(time_group)):
            # A past time is let through here: the handler says "already passed".
            when = parse_local_datetime(match.group(time_group), zone, now, past=_ANY_PAST)
            if when is None:
                return BAD_TIME
            rest = match.group(text_group).strip()
            break
    if not rest:
        return None
    return target.lower().lstrip("#"), rest, when


_ANY_PAST = timedelta(days=365 * 100)


@router.command("announce", "公告", admin=True)
async def announce(msg: Incoming, uow, learner, t, clock, settings, wake) -> Reply:
    """Announce to all learners or one course's learners, now or at a local time."""
    parsed = parse_announce(msg.args, settings.zone, clock.now())
    if parsed is None or parsed == BAD_TIME:
        return Reply(t("announce.usage", zone=settings.timezone))
    target, text, when = parsed
    if when is not None and when <= clock.now():
        return Reply(t("live.past", time=t.when(when, settings.zone)))
    course_id = None if target == "all" else parse_id(target)
    actor = await audit.actor_of(uow, settings, msg.channel, msg.user_ref, learner.id)
    try:
        done = await announcements.create_announcement(
            uow, settings, clock.now(), learner.id, course_id, text, when, actor
        )
    except AnnouncementProblem as problem:
        key = "live.no_course" if problem.code == "no_course" else f"announce.{problem.code}"
        return Reply(t(key, **problem.values))
    wake()
    if done.send_at is not None:
        return Reply(
            t(
                "announce.scheduled",
                id=done.broadcast.id,
                utc=t.when(done.send_at, UTC),
                local=t.when(done.send_at, settings.zone),
                zone=settings.timezone,
            )
        )
    sent = done.fan_out
    return Reply(
        t.plural(
            "announce.queued",
            sent.queued,
            id=done.broadcast.id,
            queued=sent.queued,
            opted_out=sent.opted_out,
            unreachable=sent.unreachable,
        )
    )


@router.command("stop", "退订")
async def stop(learner, t) -> Reply:
    """Opt out of announcements (session reminders of bought courses still come)."""
    announcements.opt_out(learner)
    return Reply(t("stop.done"))
