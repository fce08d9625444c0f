"""Announcements to every learner or one course's learners, now or later, and their reports.

`create_announcement` stores one and, when it is due now, fans it out; the scheduler calls
`start_broadcast` for the ones sent later, and the sender calls `report_finished` to give each
author the delivery report once every row is settled. The announcement and report texts are
stored in the outbox, so they are worded here in the recipient's language.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.core import Reply, esc
from bot.i18n import translator_for
from services import audit
from services.outbox import Outgoing, enqueue

log = logging.getLogger(__name__)

#: The longest announcement text (characters), well inside one Telegram message.
MAX_TEXT = 3500


class AnnouncementProblem(Exception):
    """An announcement the rules refuse: `too_long` (values: max) or `no_course` (values: id)."""

    def __init__(self, code: str, **values: Any) -> None:
        super().__init__(code)
        self.code = code
        self.values = values


@dataclass(frozen=True)
class FanOut:
    """Outbox rows written for an announcement: queued to send, opted out, unreachable."""

    queued: int
    opted_out: int
    unreachable: int


@dataclass(frozen=True)
class Announcement:
    """A stored announcement: `send_at` set when it waits for its time, else `fan_out`."""

    broadcast: Any
    send_at: datetime | None = None
    fan_out: FanOut | None = None


async def create_announcement(
    uow,
    settings,
    now: datetime,
    author_learner_id: int | None,
    course_id: int | None,
    text: str,
    when: datetime | None = None,
    actor=None,
) -> Announcement:
    """Store an announcement to a course's learners (None: everyone), sent at `when` or now."""
    if len(text) > MAX_TEXT:
        raise AnnouncementProblem("too_long", max=MAX_TEXT)
    if course_id is not None and await uow.courses.get(course_id) is None:
        raise AnnouncementProblem("no_course", id=course_id)
    broadcast = await uow.broadcasts.add(
        course_id=course_id,
        text=text,
        author_learner_id=author_learner_id,
        send_at=when or now,
        status="scheduled",
        created_at=now,
    )
    await audit.note(
        uow,
        actor,
        "announce",
        f"broadcast:{broadcast.id}",
        now,
        course_id=course_id,
        at=when.isoformat() if when is not None else None,
        text=text[:40],
    )
    if when is not None and when > now:
        return Announcement(broadcast, send_at=when)
    await uow.broadcasts.start(broadcast.id)
    done = await fan_out(uow, broadcast, settings, now)
    log.info("announcement #%s queued for %s learners", broadcast.id, done.queued)
    return Announcement(broadcast, fan_out=done)


async def fan_out(uow, broadcast, settings, now: datetime) -> FanOut:
    """Write one outbox row per learner of an announcement; opted-out learners get none.

    Rows of learners without a reachable identity are stored settled ('unreachable').
    """
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
    return FanOut(len(rows) - unreachable, opted_out, unreachable)


async def start_broadcast(uow, broadcast_id: int, settings, now: datetime) -> bool:
    """Fan out a scheduled announcement once (a second call does nothing)."""
    if not await uow.broadcasts.start(broadcast_id):
        return False
    broadcast = await uow.broadcasts.get(broadcast_id)
    await uow.session.refresh(broadcast)
    await fan_out(uow, broadcast, settings, now)
    return True


async def report_finished(uow, settings, now: datetime) -> int:
    """Send each author the delivery report of their announcements that are done.

    Returns how many announcements finished (those without a reachable author included).
    """
    done = await uow.broadcasts.finished()
    for broadcast in done:
        counts = await uow.broadcasts.report(broadcast.id)
        log.info("announcement #%s done: %s", broadcast.id, counts)
        if broadcast.author_learner_id is None:
            continue
        authors = await uow.audience.of_learners([broadcast.author_learner_id])
        author = authors.get(broadcast.author_learner_id)
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
    return len(done)


def opt_out(learner) -> None:
    """The learner hears no more announcements (session notices of bought courses still come)."""
    learner.announcements_opt_out = True
