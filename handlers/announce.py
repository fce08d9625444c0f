"""Announcements in chat: /announce to everyone or one course, now or later; /stop opts out.

Parse the command, call `services.announcements`, word the answer.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from bot.core import Incoming, Reply, Router
from services import announcements
from services.announcements import AnnouncementProblem
from services.live import parse_local

router = Router()

_AT_START = re.compile(r"^at\s+(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})\s+(.+)$", re.S | re.I)
_AT_END = re.compile(r"^(.+?)\s+at\s+(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})$", re.S | re.I)


def parse_announce(args: str, zone) -> tuple[str, str, datetime | None] | None:
    """(target, text, send time or None) from `/announce` arguments, or None when malformed."""
    target, _, rest = args.strip().partition(" ")
    rest = rest.strip()
    if not target or not rest or not (target.lower() == "all" or target.lstrip("#").isdigit()):
        return None
    when = None
    for pattern, text_group, time_group in ((_AT_START, 2, 1), (_AT_END, 1, 2)):
        match = pattern.match(rest)
        if match:
            when = parse_local(match.group(time_group), zone)
            rest = match.group(text_group).strip()
            break
    return target.lower().lstrip("#"), rest, when


@router.command("announce", "公告", admin=True)
async def announce(msg: Incoming, uow, learner, t, clock, settings, wake) -> Reply:
    """Announce to all learners or one course's learners, now or at a local time."""
    parsed = parse_announce(msg.args, settings.zone)
    if parsed is None:
        return Reply(t("announce.usage", zone=settings.timezone))
    target, text, when = parsed
    course_id = None if target == "all" else int(target)
    try:
        done = await announcements.create_announcement(
            uow, settings, clock.now(), learner.id, course_id, text, when
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
