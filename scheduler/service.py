"""The APScheduler 3.11 AsyncIOScheduler with a persistent job store, kept in step with the DB.

The database rows (sessions, reminders, announcements) are the truth; `sync()` makes one date job
per (session, notice kind) and per scheduled announcement, with deterministic ids and
`replace_existing=True`, and removes jobs whose session was moved or cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC
from pathlib import Path

from apscheduler.events import EVENT_JOB_MISSED
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import make_url

from scheduler import jobs, leader
from storage.db import is_sqlite, sync_url

log = logging.getLogger(__name__)

NOTICE_JOB = "scheduler.jobs:session_notice"
BROADCAST_JOB = "scheduler.jobs:scheduled_broadcast"
RETRAIN_NIGHTLY_ID = "recommender-retrain"
RETRAIN_THRESHOLD_ID = "recommender-retrain-if-due"
WECHAT_TOKEN_ID = "wechat-token"
WECHATPAY_QUERY_ID = "wechatpay-query"
PREFIXES = ("rem-", "bc-")
WAKE_DEBOUNCE = 0.2


def jobstore_url(settings) -> str:
    """The sync URL of the job store: a sibling `<db>.jobs.sqlite` file, or the same PostgreSQL."""
    if settings.scheduler_jobstore_url:
        return settings.scheduler_jobstore_url
    if is_sqlite(settings.database_url):
        database = make_url(settings.database_url).database or ""
        if database in ("", ":memory:"):
            return "sqlite://"
        return f"sqlite:///{Path(database).with_name(Path(database).name + '.jobs.sqlite')}"
    return sync_url(settings.database_url)


def notice_job_id(session_id: int, kind: str) -> str:
    """The deterministic job id of one notice kind of one session."""
    return f"rem-{session_id}-{kind}"


def broadcast_job_id(broadcast_id: int) -> str:
    """The deterministic job id of a scheduled announcement."""
    return f"bc-{broadcast_id}"


class SchedulerService:
    """Runs the scheduler of this process (exactly one per database) and keeps it in sync."""

    def __init__(self, app) -> None:
        self.app = app
        self.settings = app.settings
        self.scheduler: AsyncIOScheduler | None = None
        self.leadership = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._lead: asyncio.Task | None = None

    @property
    def active(self) -> bool:
        """True while this process is the one active scheduler of the database."""
        return self.scheduler is not None and self.scheduler.running

    async def start(self) -> None:
        """Become the active scheduler, or wait as a standby and take over when it dies.

        Exactly one scheduler per database is active (`scheduler.leader`); `start()` returns at
        once either way and a background task renews the lease or keeps trying for it.
        """
        jobs.bind(self.app)
        self.app.scheduler = self
        self.leadership = leader.leadership(
            self.app, "scheduler", self.settings.scheduler_lease_seconds
        )
        if await self.leadership.acquire():
            await self._activate()
        else:
            log.info(
                "scheduler standby: another scheduler is active on this database; "
                "taking over within %s s of its end",
                self.settings.scheduler_lease_seconds,
            )
        self._lead = asyncio.create_task(self._lead_loop(), name="scheduler-leadership")

    async def _lead_loop(self) -> None:
        interval = leader.check_interval(self.settings.scheduler_lease_seconds)
        while True:
            await asyncio.sleep(interval)
            try:
                if self.active:
                    if not await self.leadership.keep():
                        await self._deactivate()
                elif await self.leadership.acquire():
                    log.info("scheduler: the active one is gone; taking over")
                    await self._activate()
            except Exception:
                log.exception("scheduler leadership check failed; stepping down")
                await self._deactivate()
                await self.leadership.release()

    async def _activate(self) -> None:
        """Start APScheduler on the shared job store, sync once and keep syncing."""
        grace = self.settings.scheduler_misfire_grace_seconds
        self.scheduler = AsyncIOScheduler(
            jobstores={"default": SQLAlchemyJobStore(url=jobstore_url(self.settings))},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": grace},
            timezone=UTC,
        )
        self.scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)
        self.scheduler.start()
        self.schedule_retraining()
        self.schedule_channel_upkeep()
        await self.sync()
        self._task = asyncio.create_task(self._loop(), name="scheduler-sync")
        log.info("scheduler active (misfire grace %s s)", grace)

    async def _deactivate(self) -> None:
        """Stop syncing and shut APScheduler down (jobs stay in the store)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.scheduler = None

    async def stop(self, release: bool = True) -> None:
        """Stop, and hand over: release the lock so a standby takes over at its next check.

        `release=False` ends as a killed process would (PostgreSQL frees the lock with the
        connection; an SQLite lease runs out); tests use it.
        """
        if self._lead is not None:
            self._lead.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lead
            self._lead = None
        await self._deactivate()
        if self.leadership is not None:
            if release:
                await self.leadership.release()
            else:
                await self.leadership.abandon()
        if getattr(self.app, "scheduler", None) is self:
            self.app.scheduler = None

    def schedule_retraining(self) -> None:
        """Add (or remove, when turned off) the recommender's retraining jobs."""
        settings = self.settings
        cron = settings.recommender_retrain_cron
        trigger = CronTrigger.from_crontab(cron, timezone=settings.zone) if cron else None
        self._keep_job(RETRAIN_NIGHTLY_ID, "scheduler.jobs:retrain_recommender", trigger)
        minutes = settings.recommender_retrain_check_minutes
        trigger = (
            IntervalTrigger(minutes=minutes, timezone=UTC)
            if settings.recommender_retrain_new_interactions
            else None
        )
        self._keep_job(RETRAIN_THRESHOLD_ID, "scheduler.jobs:retrain_if_due", trigger)

    def schedule_channel_upkeep(self) -> None:
        """WeChat's upkeep when it is configured: the one access-token refresher and the query
        that settles Native Pay orders whose notification never came."""
        settings = self.settings
        wechat = bool(settings.wechat_token and settings.wechat_app_id)
        refresh = IntervalTrigger(seconds=30, timezone=UTC) if wechat else None
        self._keep_job(WECHAT_TOKEN_ID, "bot.channels.wechat_token:refresh_job", refresh)
        settle = IntervalTrigger(seconds=60, timezone=UTC) if wechat else None
        self._keep_job(WECHATPAY_QUERY_ID, "bot.channels.wechat:settle_orders_job", settle)

    def _keep_job(self, job_id: str, func: str, trigger) -> None:
        if trigger is None:
            if self.scheduler.get_job(job_id) is not None:
                self.scheduler.remove_job(job_id)
            return
        self.scheduler.add_job(func, trigger, id=job_id, replace_existing=True)

    def wake(self) -> None:
        """Sync soon (a handler changed sessions or announcements)."""
        self._wake.set()

    def _on_missed(self, event) -> None:
        log.warning("job %s missed its time by more than the grace; marking missed", event.job_id)
        self.wake()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.scheduler_sync_seconds)
                await asyncio.sleep(WAKE_DEBOUNCE)  # let the waking transaction commit
            self._wake.clear()
            try:
                await self.sync()
            except Exception:
                log.exception("scheduler sync failed; retrying later")

    async def sync(self) -> dict[str, int]:
        """Make the job store match the database; returns counts of added/removed/missed."""
        if self.scheduler is None:  # a standby: the active scheduler keeps the store
            return {"added": 0, "removed": 0, "missed": 0}
        app, settings = self.app, self.settings
        now = app.clock.now()
        grace = jobs.grace(settings)
        async with app.uow() as uow:
            missed = await uow.reminders.mark_missed(now - grace)
            groups = await uow.reminders.pending_groups()
            broadcasts = await uow.broadcasts.scheduled()
            await uow.commit()
        desired = {
            notice_job_id(sid, kind): (at, NOTICE_JOB, [sid, kind]) for sid, kind, at in groups
        }
        desired.update(
            {broadcast_job_id(bid): (at, BROADCAST_JOB, [bid]) for bid, at in broadcasts}
        )
        existing = {job.id: job for job in self.scheduler.get_jobs()}
        removed = added = 0
        for job_id in existing:
            if job_id.startswith(PREFIXES) and job_id not in desired:
                self.scheduler.remove_job(job_id)
                removed += 1
        for job_id, (at, func, args) in desired.items():
            job = existing.get(job_id)
            if job is not None and job.next_run_time == at:
                continue
            self.scheduler.add_job(
                func,
                "date",
                run_date=at,
                args=args,
                id=job_id,
                replace_existing=True,
                misfire_grace_time=settings.scheduler_misfire_grace_seconds,
                coalesce=True,
            )
            added += 1
        if missed or added or removed:
            log.info("scheduler sync: %s added, %s removed, %s missed", added, removed, missed)
        return {"added": added, "removed": removed, "missed": missed}

    def job_ids(self) -> list[str]:
        """Ids of the session and announcement jobs in the store (empty on a standby)."""
        if self.scheduler is None:
            return []
        return sorted(job.id for job in self.scheduler.get_jobs() if job.id.startswith(PREFIXES))
