"""Repositories of live sessions, reminders, broadcasts, and the sender's outbox claims."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update

from storage.models import (
    Broadcast,
    Course,
    Enrolment,
    Identity,
    Learner,
    LiveSession,
    OutboxMessage,
    Reminder,
)
from storage.repos import Repo, chunks, insert_ignore_many

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Recipient:
    """Where a proactive message to one learner goes, and how to word it."""

    learner_id: int
    channel: str
    user_ref: str
    locale: str | None
    timezone: str | None
    opted_out: bool
    reachable: bool


def _pick_recipients(rows) -> dict[int, Recipient]:
    """One identity per learner: a reachable one, the most recently seen first."""
    best: dict[int, tuple] = {}
    for learner_id, opted_out, locale, zone, channel, user_ref, unreachable, seen in rows:
        key = (unreachable is None, seen or _EPOCH)
        if learner_id not in best or key > best[learner_id][0]:
            best[learner_id] = (
                key,
                Recipient(
                    learner_id,
                    channel,
                    user_ref,
                    locale,
                    zone,
                    bool(opted_out),
                    unreachable is None,
                ),
            )
    return {learner_id: pair[1] for learner_id, pair in best.items()}


_RECIPIENT_COLUMNS = (
    Learner.id,
    Learner.announcements_opt_out,
    Learner.locale,
    Learner.timezone,
    Identity.channel,
    Identity.user_ref,
    Identity.unreachable_at,
    Identity.last_seen_at,
)


class SessionRepo(Repo):
    """Live sessions of courses."""

    async def add(self, **fields: Any) -> LiveSession:
        """Create a session."""
        return await self._insert(LiveSession, **fields)

    async def get(self, session_id: int) -> LiveSession | None:
        """A session by id."""
        return await self.session.get(LiveSession, session_id)

    async def of_course(self, course_id: int) -> list[LiveSession]:
        """A course's sessions in time order."""
        stmt = (
            select(LiveSession)
            .where(LiveSession.course_id == course_id)
            .order_by(LiveSession.starts_at, LiveSession.id)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def next_of_course(self, course_id: int, now: datetime) -> LiveSession | None:
        """The next scheduled session of a course that has not started yet."""
        upcoming = await self.upcoming_of_course(course_id, now, limit=1)
        return upcoming[0] if upcoming else None

    async def upcoming_for_learner(
        self, learner_id: int, now: datetime, limit: int = 10
    ) -> list[tuple[LiveSession, Course]]:
        """Scheduled sessions not yet started of the courses a learner owns."""
        stmt = (
            select(LiveSession, Course)
            .join(Course, Course.id == LiveSession.course_id)
            .join(Enrolment, Enrolment.course_id == LiveSession.course_id)
            .where(
                Enrolment.learner_id == learner_id,
                LiveSession.status == "scheduled",
                LiveSession.starts_at > now,
            )
            .order_by(LiveSession.starts_at)
            .limit(limit)
        )
        return [(row[0], row[1]) for row in (await self.session.execute(stmt)).all()]

    async def upcoming_of_course(
        self, course_id: int, now: datetime, limit: int | None = None
    ) -> list[LiveSession]:
        """Scheduled sessions of a course that have not started yet, soonest first."""
        stmt = (
            select(LiveSession)
            .where(
                LiveSession.course_id == course_id,
                LiveSession.status == "scheduled",
                LiveSession.starts_at > now,
            )
            .order_by(LiveSession.starts_at, LiveSession.id)
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())


class ReminderRepo(Repo):
    """Per-learner notices of a session, each claimed once through `sent_at`."""

    async def plan(
        self, session_id: int, learner_ids: Sequence[int], due: Sequence[tuple[str, datetime]]
    ) -> int:
        """Create pending notices (kind, due time) for these learners; existing ones stay."""
        rows = [
            dict(session_id=session_id, learner_id=lid, kind=kind, due_at=at, status="pending")
            for lid in learner_ids
            for kind, at in due
        ]
        return await insert_ignore_many(self.session, Reminder, rows)

    async def drop_unsent(self, session_id: int, kinds: Sequence[str] | None = None) -> int:
        """Forget a session's notices (all, or of some kinds) so they can be planned afresh."""
        stmt = delete(Reminder).where(Reminder.session_id == session_id)
        if kinds is not None:
            stmt = stmt.where(Reminder.kind.in_(list(kinds)))
        return (await self.session.execute(stmt)).rowcount or 0

    async def cancel(self, session_id: int) -> int:
        """Mark a session's pending notices cancelled."""
        result = await self.session.execute(
            update(Reminder)
            .where(Reminder.session_id == session_id, Reminder.sent_at.is_(None))
            .values(status="cancelled")
        )
        return result.rowcount or 0

    async def claim(
        self, session_id: int, kind: str, now: datetime, not_before: datetime
    ) -> list[tuple[int, int]]:
        """Atomically take due notices of one kind (due in [not_before, now]): (id, learner)."""
        stmt = (
            update(Reminder)
            .where(
                Reminder.session_id == session_id,
                Reminder.kind == kind,
                Reminder.sent_at.is_(None),
                Reminder.status == "pending",
                Reminder.due_at <= now,
                Reminder.due_at >= not_before,
            )
            .values(sent_at=now, status="sent")
            .returning(Reminder.id, Reminder.learner_id)
        )
        return [(row[0], row[1]) for row in (await self.session.execute(stmt)).all()]

    async def mark_missed(self, before: datetime) -> int:
        """Notices still pending that were due before `before` become 'missed'."""
        result = await self.session.execute(
            update(Reminder)
            .where(
                Reminder.sent_at.is_(None),
                Reminder.status == "pending",
                Reminder.due_at < before,
            )
            .values(status="missed")
        )
        return result.rowcount or 0

    async def set_status(self, ids: Sequence[int], status: str) -> None:
        """Change the status of some notices (e.g. 'unreachable')."""
        for chunk in chunks(list(ids)):
            await self.session.execute(
                update(Reminder).where(Reminder.id.in_(list(chunk))).values(status=status)
            )

    async def pending_groups(self) -> list[tuple[int, str, datetime]]:
        """(session, kind, due time) of every pending notice of a scheduled session."""
        stmt = (
            select(Reminder.session_id, Reminder.kind, func.min(Reminder.due_at))
            .join(LiveSession, LiveSession.id == Reminder.session_id)
            .where(
                Reminder.status == "pending",
                Reminder.sent_at.is_(None),
                LiveSession.status == "scheduled",
            )
            .group_by(Reminder.session_id, Reminder.kind)
        )
        return [(sid, kind, at) for sid, kind, at in (await self.session.execute(stmt)).all()]

    async def of_learner(self, session_id: int, learner_id: int) -> list[Reminder]:
        """One learner's notices of one session."""
        stmt = (
            select(Reminder)
            .where(Reminder.session_id == session_id, Reminder.learner_id == learner_id)
            .order_by(Reminder.due_at)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def counts(self, session_id: int) -> dict[tuple[str, str], int]:
        """Number of notices per (kind, status) of one session."""
        stmt = (
            select(Reminder.kind, Reminder.status, func.count())
            .where(Reminder.session_id == session_id)
            .group_by(Reminder.kind, Reminder.status)
        )
        return {(k, s): n for k, s, n in (await self.session.execute(stmt)).all()}


class AudienceRepo(Repo):
    """Who proactive messages go to, one identity per learner."""

    async def of_learners(self, learner_ids: Sequence[int]) -> dict[int, Recipient]:
        """Recipients of some learners."""
        found: dict[int, Recipient] = {}
        for chunk in chunks(list(learner_ids)):
            stmt = (
                select(*_RECIPIENT_COLUMNS)
                .join(Identity, Identity.learner_id == Learner.id)
                .where(Learner.id.in_(list(chunk)))
            )
            found.update(_pick_recipients((await self.session.execute(stmt)).all()))
        return found

    async def enrolled(self, course_id: int) -> list[int]:
        """Ids of the learners enrolled in a course."""
        stmt = select(Enrolment.learner_id).where(Enrolment.course_id == course_id)
        return list((await self.session.execute(stmt)).scalars())

    async def of_target(self, course_id: int | None) -> dict[int, Recipient]:
        """Recipients of an announcement: every learner, or one course's learners."""
        stmt = select(*_RECIPIENT_COLUMNS).join(Identity, Identity.learner_id == Learner.id)
        if course_id is not None:
            stmt = stmt.join(Enrolment, Enrolment.learner_id == Learner.id).where(
                Enrolment.course_id == course_id
            )
        return _pick_recipients((await self.session.execute(stmt)).all())


class BroadcastRepo(Repo):
    """Announcements and their delivery."""

    async def add(self, **fields: Any) -> Broadcast:
        """Create an announcement."""
        return await self._insert(Broadcast, **fields)

    async def get(self, broadcast_id: int) -> Broadcast | None:
        """An announcement by id."""
        return await self.session.get(Broadcast, broadcast_id)

    async def start(self, broadcast_id: int) -> bool:
        """Atomically move a scheduled announcement to 'sending'; False if already moved."""
        result = await self.session.execute(
            update(Broadcast)
            .where(Broadcast.id == broadcast_id, Broadcast.status == "scheduled")
            .values(status="sending")
        )
        return result.rowcount == 1

    async def scheduled(self) -> list[tuple[int, datetime]]:
        """(id, send time) of announcements waiting for their time."""
        stmt = select(Broadcast.id, Broadcast.send_at).where(Broadcast.status == "scheduled")
        return [(row[0], row[1]) for row in (await self.session.execute(stmt)).all()]

    async def report(self, broadcast_id: int) -> dict[str, int]:
        """Outbox rows of an announcement by status."""
        stmt = (
            select(OutboxMessage.status, func.count())
            .where(OutboxMessage.broadcast_id == broadcast_id)
            .group_by(OutboxMessage.status)
        )
        return {status: n for status, n in (await self.session.execute(stmt)).all()}

    async def finished(self) -> list[Broadcast]:
        """Announcements being sent whose rows are all settled; marks them 'done' atomically."""
        open_rows = (
            select(OutboxMessage.id)
            .where(
                OutboxMessage.broadcast_id == Broadcast.id,
                OutboxMessage.status.in_(("pending", "sending")),
            )
            .exists()
        )
        stmt = select(Broadcast.id).where(Broadcast.status == "sending", ~open_rows)
        done = []
        for broadcast_id in list((await self.session.execute(stmt)).scalars()):
            result = await self.session.execute(
                update(Broadcast)
                .where(Broadcast.id == broadcast_id, Broadcast.status == "sending")
                .values(status="done")
            )
            if result.rowcount == 1:
                done.append(await self.session.get(Broadcast, broadcast_id))
        return done


@dataclass(frozen=True)
class Claimed:
    """An outbox row the sender owns until it settles it."""

    id: int
    channel: str
    user_ref: str
    body: dict
    attempts: int
    learner_id: int | None
    kind: str = ""
    broadcast_id: int | None = None


@dataclass(frozen=True)
class ClaimedBatch:
    """Rows the sender now owns, and how many due rows were settled without a send."""

    rows: list[Claimed]
    skipped: int = 0


_UNREACHABLE_BEFORE = "unreachable before sending"


class OutboxClaims(Repo):
    """The sender's side of the outbox: claim due rows atomically, then settle each.

    PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent senders take disjoint rows. SQLite:
    every transaction is `BEGIN IMMEDIATE`, so the select-then-update is done by a single writer
    at a time. Due rows of identities already flagged unreachable (a 403 to an earlier row) are
    settled 'unreachable' at the claim instead of being sent.
    """

    async def claim(
        self, channels: Sequence[str], now: datetime, limit: int, lease: timedelta
    ) -> ClaimedBatch:
        """Take up to `limit` due rows (or rows whose claim lease ran out) for these channels."""
        ids = await self._due_ids(channels, now, limit, lease)
        if not ids:
            return ClaimedBatch([])
        skipped = await self._settle_flagged(ids, now)
        rows = (
            await self.session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(ids), OutboxMessage.status != "unreachable")
                .values(status="sending", claimed_at=now)
                .returning(
                    OutboxMessage.id,
                    OutboxMessage.channel,
                    OutboxMessage.user_ref,
                    OutboxMessage.body,
                    OutboxMessage.attempts,
                    OutboxMessage.learner_id,
                    OutboxMessage.kind,
                    OutboxMessage.broadcast_id,
                )
            )
        ).all()
        return ClaimedBatch(sorted((Claimed(*row) for row in rows), key=lambda c: c.id), skipped)

    async def _due_ids(
        self, channels: Sequence[str], now: datetime, limit: int, lease: timedelta
    ) -> list[int]:
        due = or_(
            (OutboxMessage.status == "pending") & (OutboxMessage.not_before <= now),
            (OutboxMessage.status == "sending") & (OutboxMessage.claimed_at < now - lease),
        )
        stmt = (
            select(OutboxMessage.id)
            .where(OutboxMessage.channel.in_(list(channels)), due)
            .order_by(OutboxMessage.id)
            .limit(limit)
        )
        if self.session.bind.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        return list((await self.session.execute(stmt)).scalars())

    async def _settle_flagged(self, ids: list[int], now: datetime) -> int:
        """Settle the rows among `ids` whose identity is flagged unreachable; returns how many."""
        flagged = (
            select(Identity.id)
            .where(
                Identity.channel == OutboxMessage.channel,
                Identity.user_ref == OutboxMessage.user_ref,
                Identity.unreachable_at.is_not(None),
            )
            .exists()
        )
        result = await self.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids), flagged)
            .values(status="unreachable", claimed_at=now, last_error=_UNREACHABLE_BEFORE)
            .execution_options(synchronize_session=False)
        )
        return max(result.rowcount or 0, 0)

    async def settle(self, row_id: int, status: str, now: datetime, error: str | None = None):
        """Finish a claimed row: 'sent', 'unreachable' or 'failed'."""
        values: dict[str, Any] = {"status": status, "last_error": error and error[:255]}
        if status == "sent":
            values["sent_at"] = now
        await self.session.execute(
            update(OutboxMessage).where(OutboxMessage.id == row_id).values(**values)
        )

    async def settle_sent(self, row_ids: Sequence[int], now: datetime) -> None:
        """Mark several claimed rows sent."""
        for chunk in chunks(list(row_ids)):
            await self.session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(list(chunk)))
                .values(status="sent", sent_at=now, last_error=None)
            )

    async def release(
        self,
        row_id: int,
        not_before: datetime,
        error: str | None = None,
        count_attempt: bool = False,
    ) -> None:
        """Give a claimed row back to the queue, due again at `not_before`."""
        values: dict[str, Any] = {
            "status": "pending",
            "not_before": not_before,
            "claimed_at": None,
        }
        if error is not None:
            values["last_error"] = error[:255]
        if count_attempt:
            values["attempts"] = OutboxMessage.attempts + 1
        await self.session.execute(
            update(OutboxMessage).where(OutboxMessage.id == row_id).values(**values)
        )

    async def recently_active(self, now: datetime, window: timedelta) -> bool:
        """True when some sender may have sent within `window` of `now` (rows claimed and not
        settled, or sent that recently): a restarted sender then waits before its first send."""
        claimed = select(OutboxMessage.id).where(OutboxMessage.status == "sending").limit(1)
        if (await self.session.execute(claimed)).first() is not None:
            return True
        recent = (
            select(OutboxMessage.id)
            .where(OutboxMessage.status == "sent", OutboxMessage.sent_at >= now - window)
            .limit(1)
        )
        return (await self.session.execute(recent)).first() is not None

    async def status_counts(self, broadcast_id: int | None = None) -> dict[str, int]:
        """Outbox rows by status (of one announcement, when given)."""
        stmt = select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        if broadcast_id is not None:
            stmt = stmt.where(OutboxMessage.broadcast_id == broadcast_id)
        return {status: n for status, n in (await self.session.execute(stmt)).all()}
