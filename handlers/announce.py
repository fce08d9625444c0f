"""Announcements to every learner or one course's learners, now or later; /stop opts out."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

from bot.core import Incoming, Reply, Router, esc
from bot.i18n import translator_for
from handlers.live import parse_local, wake_scheduler
from services.outbox import Outgoing, enqueue

log = logging.getLogger(__name__)
router = Router()

_AT_START = re.compile(r"^at\s+(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})\s+(.+)$", re.S | re.I)
_AT_END = re.compile(r"^(.+?)\s+at\s+(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})$", re.S | re.I)
MAX_TEXT = 3500


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


async def fan_out(uow, broadcast, settings, now: datetime) -> tuple[int, int, int]:
    """Write one outbox row per learner of an announcement: (queued, opted out, unreachable)."""
    recipients = await uow.audience.of_target(broadcast.course_id)
    bodies: dict[str, Reply] = {}
    rows, opted_out, unreachable = [], 0, 0
    for r in recipients.values():
        if r.opted_out:
            opted_out += 1
            continue
        locale = r.locale or settings.default_locale
        if locale not in bodies:
            t = translator_for(locale, settings)
            bodies[locale] = Reply(t("announce.body", text=esc(broadcast.text)))
        unreachable += not r.reachable
        rows.append(
            Outgoing(
                r.channel,
                r.user_ref,
                bodies[locale],
                "announce",
                learner_id=r.learner_id,
                dedupe_key=f"bc:{broadcast.id}:{r.learner_id}",
                broadcast_id=broadcast.id,
                undeliverable=None if r.reachable else "unreachable before sending",
            )
        )
    await enqueue(uow, rows, now)
    broadcast.opted_out = opted_out
    broadcast.status = "sending"
    return len(rows) - unreachable, opted_out, unreachable


async def start_broadcast(uow, broadcast_id: int, settings, now: datetime) -> bool:
    """Fan out a scheduled announcement once (a second call does nothing)."""
    if not await uow.broadcasts.start(broadcast_id):
        return False
    broadcast = await uow.broadcasts.get(broadcast_id)
    await uow.session.refresh(broadcast)
    await fan_out(uow, broadcast, settings, now)
    return True


async def report_finished(uow, settings, now: datetime) -> int:
    """Send each author the delivery report of their announcements that are done."""
    done = await uow.broadcasts.finished()
    for broadcast in done:
        counts = await uow.broadcasts.report(broadcast.id)
        if broadcast.author_learner_id is None:
            continue
        author = (await uow.audience.of_learners([broadcast.author_learner_id])).get(
            broadcast.author_learner_id
        )
        if author is None or not author.reachable:
            continue
        t = translator_for(author.locale or settings.default_locale, settings, author.timezone)
        text = t(
            "announce.report",
            id=broadcast.id,
            sent=counts.get("sent", 0),
            unreachable=counts.get("unreachable", 0),
            failed=counts.get("failed", 0),
            opted_out=broadcast.opted_out,
        )
        report = Outgoing(
            author.channel,
            author.user_ref,
            Reply(text),
            "report",
            learner_id=author.learner_id,
            dedupe_key=f"bc-report:{broadcast.id}",
        )
        await enqueue(uow, report, now)
        log.info("announcement #%s done: %s", broadcast.id, counts)
    return len(done)


@router.command("announce", "公告", admin=True)
async def announce(msg: Incoming, uow, learner, t, clock, settings, app) -> Reply:
    """Announce to all learners or one course's learners, now or at a local time."""
    parsed = parse_announce(msg.args, settings.zone)
    if parsed is None:
        return Reply(t("announce.usage", zone=settings.timezone))
    target, text, when = parsed
    if len(text) > MAX_TEXT:
        return Reply(t("announce.too_long", max=MAX_TEXT))
    course_id = None if target == "all" else int(target)
    if course_id is not None and await uow.courses.get(course_id) is None:
        return Reply(t("live.no_course", id=course_id))
    now = clock.now()
    broadcast = await uow.broadcasts.add(
        course_id=course_id,
        text=text,
        author_learner_id=learner.id,
        send_at=when or now,
        status="scheduled",
        created_at=now,
    )
    if when is not None and when > now:
        wake_scheduler(app)
        return Reply(
            t(
                "announce.scheduled",
                id=broadcast.id,
                utc=t.when(when, UTC),
                local=t.when(when, settings.zone),
                zone=settings.timezone,
            )
        )
    await uow.broadcasts.start(broadcast.id)
    queued, opted_out, unreachable = await fan_out(uow, broadcast, settings, now)
    log.info("announcement #%s queued for %s learners", broadcast.id, queued)
    return Reply(
        t.plural(
            "announce.queued",
            queued,
            id=broadcast.id,
            queued=queued,
            opted_out=opted_out,
            unreachable=unreachable,
        )
    )


@router.command("stop", "退订")
async def stop(learner, t) -> Reply:
    """Opt out of announcements (session reminders of bought courses still come)."""
    learner.announcements_opt_out = True
    return Reply(t("stop.done"))
