"""The unit of work: one session, one transaction, the repositories over it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import analytics, feedback, leases, live, repos, send_limits, wechat
from storage.db import READ_ONLY


class UnitOfWork:
    """Opens one transaction; handlers see repositories, the dispatcher commits once."""

    def __init__(self, session_factory: async_sessionmaker, owner=None) -> None:
        self._factory = session_factory
        #: The factory that made this unit of work: opens others (background work) and holds
        #: the process-wide caches of this database (`caches`, e.g. the catalogue's text index).
        self.factory = owner or UnitOfWorkFactory(session_factory)
        self.caches: dict = self.factory.caches
        self.session: AsyncSession

    async def __aenter__(self) -> UnitOfWork:
        self.session = self._factory()
        s = self.session
        self.learners = repos.LearnerRepo(s)
        self.courses = repos.CourseRepo(s)
        self.orders = repos.OrderRepo(s)
        self.payments = repos.PaymentRepo(s)
        self.enrolments = repos.EnrolmentRepo(s)
        self.inbox = repos.InboxRepo(s)
        self.outbox = repos.OutboxRepo(s)
        self.interactions = repos.InteractionRepo(s)
        self.kv = repos.KeyValueRepo(s)
        self.ratings = feedback.RatingRepo(s)
        self.questions = feedback.QuestionRepo(s)
        self.sessions = live.SessionRepo(s)
        self.reminders = live.ReminderRepo(s)
        self.audience = live.AudienceRepo(s)
        self.broadcasts = live.BroadcastRepo(s)
        self.claims = live.OutboxClaims(s)
        self.wechat = wechat.WeChatStore(s)
        self.roles, self.coupons = analytics.RoleRepo(s), analytics.CouponRepo(s)
        self.attendance, self.audit = analytics.AttendanceRepo(s), analytics.AuditRepo(s)
        self.stats, self.mydata = analytics.StatsQueries(s), analytics.LearnerDataRepo(s)
        self.impressions = analytics.ImpressionRepo(s)
        self.leases = leases.LeaseRepo(s)
        self.send_limits = send_limits.SendLimitRepo(s)
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            await self.session.rollback()
        await self.session.close()

    async def read_only(self) -> UnitOfWork:
        """Make this unit of work a reader: on SQLite it takes no write lock, so it never waits
        for (nor holds up) writers. Call before anything else; it must not write."""
        await self.session.connection(execution_options={READ_ONLY: True})
        return self

    async def commit(self) -> None:
        """Commit everything done in this unit of work."""
        await self.session.commit()

    async def rollback(self) -> None:
        """Throw away everything done in this unit of work."""
        await self.session.rollback()


class UnitOfWorkFactory:
    """Makes a fresh UnitOfWork per message or job."""

    def __init__(self, session_factory: async_sessionmaker) -> None:
        self.session_factory = session_factory
        #: What this process keeps in memory about this database (see `UnitOfWork.factory`).
        self.caches: dict = {}

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory, self)

    async def close(self) -> None:
        """Stop the background work of the caches (those with an `aclose`) and forget them."""
        for cache in list(self.caches.values()):
            stop = getattr(cache, "aclose", None)
            if stop is not None:
                await stop()
        self.caches.clear()
