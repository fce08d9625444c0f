"""Repositories of issue 13: instructors, coupons, attendance, the audit log, the /stats
queries and a learner's own rows (export and erasure)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update

from storage.models import (
    Attendance,
    AuditEntry,
    Coupon,
    CouponRedemption,
    Course,
    Enrolment,
    Identity,
    Instructor,
    Interaction,
    LiveSession,
    Order,
    Payment,
    Question,
    Rating,
    RecImpression,
)
from storage.repos import Repo, chunks, insert_ignore, insert_ignore_many


def _in_scope(column, course_ids: Sequence[int] | None):
    """A WHERE clause limiting `column` to some courses (None: every course)."""
    return True if course_ids is None else column.in_(list(course_ids))


def _since(column, since: datetime | None):
    return True if since is None else column >= since


class RoleRepo(Repo):
    """Who is an instructor and which courses they teach."""

    async def is_instructor(self, learner_id: int) -> bool:
        """True when the learner holds the instructor role or teaches a course."""
        if await self.session.get(Instructor, learner_id) is not None:
            return True
        stmt = select(Course.id).where(Course.instructor_learner_id == learner_id).limit(1)
        return (await self.session.execute(stmt)).first() is not None

    async def grant(self, learner_id: int, by: str, when: datetime) -> bool:
        """Make a learner an instructor; False when they already were."""
        return await insert_ignore(
            self.session, Instructor, learner_id=learner_id, granted_by=by[:80], created_at=when
        )

    async def revoke(self, learner_id: int) -> int:
        """Take the role away and clear them from every course they teach; courses cleared."""
        await self.session.execute(delete(Instructor).where(Instructor.learner_id == learner_id))
        result = await self.session.execute(
            update(Course)
            .where(Course.instructor_learner_id == learner_id)
            .values(instructor_learner_id=None)
        )
        return int(result.rowcount or 0)

    async def course_ids_of(self, learner_id: int) -> list[int]:
        """Ids of the courses this learner teaches."""
        stmt = select(Course.id).where(Course.instructor_learner_id == learner_id)
        return sorted((await self.session.execute(stmt)).scalars())


class CouponRepo(Repo):
    """Coupons and their redemptions."""

    async def add(self, **fields: Any) -> Coupon:
        """Create a coupon (IntegrityError on a taken code)."""
        return await self._insert(Coupon, **fields)

    async def by_code(self, code: str) -> Coupon | None:
        """A coupon by its (upper-case) code."""
        stmt = select(Coupon).where(Coupon.code == code.upper())
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get(self, coupon_id: int) -> Coupon | None:
        """A coupon by id."""
        return await self.session.get(Coupon, coupon_id)

    async def listed(self, course_ids: Sequence[int] | None) -> list[Coupon]:
        """Coupons of some courses (None: all, site-wide ones included), newest first."""
        stmt = select(Coupon).where(_in_scope(Coupon.course_id, course_ids))
        return list((await self.session.execute(stmt.order_by(Coupon.id.desc()))).scalars())

    async def any_active(self) -> bool:
        """True when at least one coupon is on."""
        stmt = select(Coupon.id).where(Coupon.active.is_(True)).limit(1)
        return (await self.session.execute(stmt)).first() is not None

    async def uses(self, coupon_id: int) -> int:
        """How many paid orders used this coupon."""
        stmt = select(func.count()).where(
            CouponRedemption.coupon_id == coupon_id, CouponRedemption.status == "used"
        )
        return int(await self.session.scalar(stmt) or 0)

    async def usage(self, coupon_ids: Sequence[int]) -> dict[int, tuple[int, int, int]]:
        """coupon id → (uses, reserved, discount given) over the paid uses."""
        if not coupon_ids:
            return {}
        stmt = (
            select(
                CouponRedemption.coupon_id,
                CouponRedemption.status,
                func.count(),
                func.sum(CouponRedemption.list_amount - CouponRedemption.amount),
            )
            .where(CouponRedemption.coupon_id.in_(list(coupon_ids)))
            .group_by(CouponRedemption.coupon_id, CouponRedemption.status)
        )
        out: dict[int, list[int]] = {}
        for coupon_id, status, count, discount in (await self.session.execute(stmt)).all():
            row = out.setdefault(coupon_id, [0, 0, 0])
            if status == "used":
                row[0], row[2] = int(count), int(discount or 0)
            else:
                row[1] += int(count)
        return {k: (v[0], v[1], v[2]) for k, v in out.items()}

    async def redemption(self, coupon_id: int, learner_id: int) -> CouponRedemption | None:
        """This learner's redemption of a coupon, if any."""
        stmt = select(CouponRedemption).where(
            CouponRedemption.coupon_id == coupon_id, CouponRedemption.learner_id == learner_id
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def redemption_of_order(self, order_id: int) -> CouponRedemption | None:
        """The coupon reserved on (or used by) an order."""
        stmt = select(CouponRedemption).where(CouponRedemption.order_id == order_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def reserve(self, **fields: Any) -> CouponRedemption:
        """Create a reservation of a coupon on an order."""
        return await self._insert(CouponRedemption, **fields)


class AttendanceRepo(Repo):
    """Who opened which session's tracked link."""

    async def record(self, session_id: int, learner_id: int, course_id: int, when) -> bool:
        """Count one open; True only the first time for this learner and session."""
        first = await insert_ignore(
            self.session,
            Attendance,
            session_id=session_id,
            learner_id=learner_id,
            course_id=course_id,
            opens=1,
            first_at=when,
            last_at=when,
        )
        if not first:
            await self.session.execute(
                update(Attendance)
                .where(Attendance.session_id == session_id, Attendance.learner_id == learner_id)
                .values(opens=Attendance.opens + 1, last_at=when)
            )
        return first

    async def of_session(self, session_id: int) -> list[Attendance]:
        """Attendance rows of one session."""
        stmt = select(Attendance).where(Attendance.session_id == session_id)
        return list((await self.session.execute(stmt.order_by(Attendance.id))).scalars())


class AuditRepo(Repo):
    """The append-only log of admin and instructor actions."""

    async def add(self, **fields: Any) -> AuditEntry:
        """Write one entry."""
        return await self._insert(AuditEntry, **fields)

    async def newest(self, limit: int, actor_learner_id: int | None = None) -> list[AuditEntry]:
        """The newest entries, optionally of one actor."""
        stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if actor_learner_id is not None:
            stmt = stmt.where(AuditEntry.actor_learner_id == actor_learner_id)
        return list((await self.session.execute(stmt)).scalars())


class ImpressionRepo(Repo):
    """Suggestions shown to learners (one row per learner, course and day)."""

    async def shown(self, learner_id: int, course_ids: Sequence[int], now: datetime) -> int:
        """Record that these courses were suggested now; returns how many rows were new."""
        day = now.date().toordinal()
        rows = [
            dict(learner_id=learner_id, course_id=c, day=day, shown_at=now)
            for c in dict.fromkeys(course_ids)
        ]
        return await insert_ignore_many(self.session, RecImpression, rows)


class StatsQueries(Repo):
    """The read side of /stats and /export: grouped in SQL, small results."""

    async def paid(self, course_ids, since, until) -> list[tuple]:
        """(learner, course, currency, amount, paid at) of paid payments in the window."""
        stmt = select(
            Payment.learner_id,
            Payment.course_id,
            Payment.currency,
            Payment.amount,
            Payment.created_at,
        ).where(
            Payment.status == "paid",
            _in_scope(Payment.course_id, course_ids),
            _since(Payment.created_at, since),
            Payment.created_at <= until,
        )
        return [tuple(r) for r in (await self.session.execute(stmt)).all()]

    async def refunded(self, course_ids, since, until) -> list[tuple[str, int, int]]:
        """(currency, count, sum) of refunded payments made in the window."""
        stmt = (
            select(Payment.currency, func.count(), func.sum(Payment.amount))
            .where(
                Payment.status == "refunded",
                _in_scope(Payment.course_id, course_ids),
                _since(Payment.created_at, since),
                Payment.created_at <= until,
            )
            .group_by(Payment.currency)
        )
        return [(c, int(n), int(s or 0)) for c, n, s in (await self.session.execute(stmt)).all()]

    async def first_purchases(self, course_ids) -> dict[int, datetime]:
        """learner → their first paid purchase in these courses (all time)."""
        stmt = (
            select(Payment.learner_id, func.min(Payment.created_at))
            .where(Payment.status == "paid", _in_scope(Payment.course_id, course_ids))
            .group_by(Payment.learner_id)
        )
        return dict((await self.session.execute(stmt)).all())

    async def last_activity(self, learner_ids: Sequence[int]) -> dict[int, datetime]:
        """learner → their newest interaction of any kind."""
        out: dict[int, datetime] = {}
        for chunk in chunks(sorted(learner_ids)):
            stmt = (
                select(Interaction.learner_id, func.max(Interaction.created_at))
                .where(Interaction.learner_id.in_(list(chunk)))
                .group_by(Interaction.learner_id)
            )
            out.update(dict((await self.session.execute(stmt)).all()))
        return out

    async def learners_with(self, kind: str, course_ids, since, until) -> set[int]:
        """Distinct learners with one kind of interaction in the window."""
        stmt = (
            select(Interaction.learner_id)
            .distinct()
            .where(
                Interaction.kind == kind,
                _in_scope(Interaction.course_id, course_ids),
                _since(Interaction.created_at, since),
                Interaction.created_at <= until,
            )
        )
        return set((await self.session.execute(stmt)).scalars())

    async def first_touches(self, kind: str, course_ids, since, until) -> list[tuple]:
        """(learner, course, first moment) of one kind of interaction in the window."""
        stmt = (
            select(Interaction.learner_id, Interaction.course_id, func.min(Interaction.created_at))
            .where(
                Interaction.kind == kind,
                _in_scope(Interaction.course_id, course_ids),
                _since(Interaction.created_at, since),
                Interaction.created_at <= until,
            )
            .group_by(Interaction.learner_id, Interaction.course_id)
        )
        return [tuple(r) for r in (await self.session.execute(stmt)).all()]

    async def shown_pairs(self, course_ids, since, until) -> set[tuple[int, int]]:
        """(learner, course) pairs shown as a suggestion in the window."""
        stmt = (
            select(RecImpression.learner_id, RecImpression.course_id)
            .where(
                _in_scope(RecImpression.course_id, course_ids),
                _since(RecImpression.shown_at, since),
                RecImpression.shown_at <= until,
            )
            .distinct()
        )
        return {(r[0], r[1]) for r in (await self.session.execute(stmt)).all()}

    async def sessions(self, course_ids, since, until) -> list[LiveSession]:
        """Sessions that started in the window, oldest first."""
        stmt = select(LiveSession).where(
            _in_scope(LiveSession.course_id, course_ids),
            _since(LiveSession.starts_at, since),
            LiveSession.starts_at <= until,
        )
        return list((await self.session.execute(stmt.order_by(LiveSession.starts_at))).scalars())

    async def attended(self, session_ids: Sequence[int]) -> dict[int, int]:
        """session → learners who opened its link."""
        out: dict[int, int] = {}
        for chunk in chunks(list(session_ids)):
            stmt = (
                select(Attendance.session_id, func.count())
                .where(Attendance.session_id.in_(list(chunk)))
                .group_by(Attendance.session_id)
            )
            out.update({s: int(n) for s, n in (await self.session.execute(stmt)).all()})
        return out

    async def enrolled(self, course_ids: Sequence[int]) -> dict[int, int]:
        """course → learners enrolled."""
        stmt = (
            select(Enrolment.course_id, func.count())
            .where(Enrolment.course_id.in_(list(course_ids)))
            .group_by(Enrolment.course_id)
        )
        return {c: int(n) for c, n in (await self.session.execute(stmt)).all()}

    async def ratings(self, course_ids, since, until) -> list[tuple]:
        """(content, instructor, interaction, score) of ratings updated in the window."""
        stmt = select(Rating.content, Rating.instructor, Rating.interaction, Rating.score).where(
            _in_scope(Rating.course_id, course_ids),
            _since(Rating.updated_at, since),
            Rating.updated_at <= until,
            Rating.score.is_not(None),
        )
        return [tuple(r) for r in (await self.session.execute(stmt)).all()]

    async def open_questions(self, course_ids) -> int:
        """Open questions of some courses (None: every question)."""
        stmt = select(func.count()).where(
            Question.status == "open", _in_scope(Question.course_id, course_ids)
        )
        return int(await self.session.scalar(stmt) or 0)

    async def coupon_uses(self, course_ids, since, until) -> list[tuple[str, int, int]]:
        """(currency, uses, discount given) of coupons used in the window."""
        stmt = (
            select(
                CouponRedemption.currency,
                func.count(),
                func.sum(CouponRedemption.list_amount - CouponRedemption.amount),
            )
            .join(Order, Order.id == CouponRedemption.order_id)
            .where(
                CouponRedemption.status == "used",
                _in_scope(Order.course_id, course_ids),
                _since(CouponRedemption.used_at, since),
                CouponRedemption.used_at <= until,
            )
            .group_by(CouponRedemption.currency)
        )
        return [(c, int(n), int(s or 0)) for c, n, s in (await self.session.execute(stmt)).all()]

    async def course_ids(self) -> list[int]:
        """Every course id."""
        return sorted((await self.session.execute(select(Course.id))).scalars())

    async def export_rows(self, table: str, course_ids) -> list[tuple]:
        """Raw rows for /export (course titles joined)."""
        if table == "sales":
            stmt = (
                select(
                    Payment.id,
                    Payment.created_at,
                    Payment.course_id,
                    Course.title_zh,
                    Course.title_en,
                    Payment.learner_id,
                    Payment.channel,
                    Payment.currency,
                    Payment.amount,
                    Payment.status,
                    CouponRedemption.coupon_id,
                )
                .join(Course, Course.id == Payment.course_id, isouter=True)
                .join(
                    CouponRedemption, CouponRedemption.order_id == Payment.order_id, isouter=True
                )
                .where(_in_scope(Payment.course_id, course_ids))
                .order_by(Payment.id)
            )
        elif table == "learners":
            from storage.models import Learner

            stmt = (
                select(
                    Learner.id,
                    Learner.display_name,
                    Learner.locale,
                    Enrolment.course_id,
                    Course.title_zh,
                    Course.title_en,
                    Enrolment.created_at,
                )
                .join(Enrolment, Enrolment.learner_id == Learner.id)
                .join(Course, Course.id == Enrolment.course_id)
                .where(_in_scope(Enrolment.course_id, course_ids))
                .order_by(Learner.id, Enrolment.course_id)
            )
        elif table == "ratings":
            stmt = (
                select(
                    Rating.id,
                    Rating.course_id,
                    Course.title_zh,
                    Course.title_en,
                    Rating.learner_id,
                    Rating.content,
                    Rating.instructor,
                    Rating.interaction,
                    Rating.score,
                    Rating.review,
                    Rating.updated_at,
                )
                .join(Course, Course.id == Rating.course_id)
                .where(_in_scope(Rating.course_id, course_ids))
                .order_by(Rating.id)
            )
        else:  # attendance
            stmt = (
                select(
                    Attendance.session_id,
                    LiveSession.title,
                    LiveSession.starts_at,
                    Attendance.course_id,
                    Course.title_zh,
                    Course.title_en,
                    Attendance.learner_id,
                    Attendance.first_at,
                    Attendance.opens,
                )
                .join(LiveSession, LiveSession.id == Attendance.session_id)
                .join(Course, Course.id == Attendance.course_id)
                .where(_in_scope(Attendance.course_id, course_ids))
                .order_by(Attendance.session_id, Attendance.learner_id)
            )
        return [tuple(r) for r in (await self.session.execute(stmt)).all()]


class LearnerDataRepo(Repo):
    """Everything stored about one learner, and its erasure."""

    async def rows(self, model: type, learner_id: int, column: str = "learner_id") -> list:
        """Every row of `model` whose `column` is the learner."""
        stmt = select(model).where(getattr(model, column) == learner_id)
        return list((await self.session.execute(stmt)).scalars())

    async def delete_of(self, model: type, learner_id: int, column: str = "learner_id") -> int:
        """Delete a learner's rows of `model`; returns how many."""
        result = await self.session.execute(
            delete(model).where(getattr(model, column) == learner_id)
        )
        return int(result.rowcount or 0)

    async def blank(self, model: type, learner_id: int, column: str, **values: Any) -> int:
        """Overwrite fields of a learner's rows of `model`."""
        result = await self.session.execute(
            update(model).where(getattr(model, column) == learner_id).values(**values)
        )
        return int(result.rowcount or 0)

    async def identities(self, learner_id: int) -> list[Identity]:
        """The learner's channel identities."""
        return await self.rows(Identity, learner_id)
