"""The unit of work: one session, one transaction, the repositories over it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import analytics, feedback, leases, live, repos, wechat


class UnitOfWork:
    """Opens one transaction; handlers see repositories, the dispatcher commits once."""

    def __init__(self, session_factory: async_sessionmaker) -> None:
        self._factory = session_factory
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
        self.leases = leases.LeaseRepo(s)
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            await self.session.rollback()
        await self.session.close()

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

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory)
