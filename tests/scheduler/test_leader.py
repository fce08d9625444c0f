"""Scale-out roles: exactly one active scheduler per database, takeover, one Telegram poller.

Both databases (the `db_url` fixture): PostgreSQL holds an advisory lock on a connection of its
own, SQLite a lease row in the kv table. The bound (SCHEDULER_LEASE_SECONDS) is 1 s here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from bot.bootstrap import build_app
from bot.channels.base import ChannelConfigError
from bot.demo import seed_demo
from bot.runner import PollerGuard, parse_role, polls_telegram, start_role
from scheduler import leader
from scheduler.sender import Sender
from scheduler.service import SchedulerService, notice_job_id
from services.live import notice_plan, plan_notices
from storage.models import OutboxMessage
from tests.conftest import make_settings
from tests.scheduler.support import add_learners, count_rows, fire, reminder_statuses

ROOT = Path(__file__).resolve().parents[2]
LEASE = 1.0
#: Slack over the bound for event-loop and database latency on a busy CI machine.
SLACK = 0.75


async def two_apps(url: str, clock, **overrides):
    """Two processes' apps on one database (same clock: the tests move it by hand)."""
    settings = make_settings(url, scheduler_lease_seconds=LEASE, **overrides)
    first = await build_app(settings, clock=clock)
    second = await build_app(settings, clock=clock)
    return first, second


async def wait_active(service: SchedulerService, bound: float) -> float:
    """Seconds until `service` became active; fails after `bound`."""
    started = time.monotonic()
    while not service.active:
        assert time.monotonic() - started < bound, f"no takeover within {bound} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_two_schedulers_one_active_and_a_kill_hands_over_within_the_bound(db_url, clock):
    """The second waits while the first lives; killed, the second is active within the bound."""
    a_app, b_app = await two_apps(db_url, clock)
    a, b = SchedulerService(a_app), SchedulerService(b_app)
    try:
        await a.start()
        await b.start()
        assert a.active and not b.active
        assert b.scheduler is None and b.job_ids() == []
        await asyncio.sleep(LEASE * 1.5)  # several renewals and tries: nothing changes
        assert a.active and not b.active
        await a.stop(release=False)  # dies: no release (PG drops the connection)
        took = await wait_active(b, LEASE + SLACK)
        assert took <= LEASE + SLACK
        assert b.active and not a.active
        c = SchedulerService(a_app)  # the first one comes back: now it waits
        await c.start()
        try:
            await asyncio.sleep(LEASE * 0.6)
            assert b.active and not c.active
        finally:
            await c.stop()
    finally:
        await a.stop()
        await b.stop()
        await a_app.close()
        await b_app.close()


async def test_a_clean_stop_hands_over_at_the_next_check(db_url, clock):
    """Stopped (SIGTERM): the lock is released, the standby takes over within a check."""
    a_app, b_app = await two_apps(db_url, clock)
    a, b = SchedulerService(a_app), SchedulerService(b_app)
    try:
        await a.start()
        await b.start()
        await a.stop()
        took = await wait_active(b, leader.check_interval(LEASE) + SLACK)
        assert took <= leader.check_interval(LEASE) + SLACK
    finally:
        await b.stop()
        await a_app.close()
        await b_app.close()


async def session_for(app, learners: list[int]) -> int:
    """A session of course 1 two days ahead, these learners enrolled, notices planned."""
    async with app.uow() as uow:
        await seed_demo(uow)
        await uow.commit()
    await add_learners(app, learners)
    async with app.uow() as uow:
        now = app.clock.now()
        session = await uow.sessions.add(
            course_id=1,
            starts_at=now + timedelta(days=2),
            url="https://live.example/scale",
            status="scheduled",
            duration_minutes=60,
        )
        for learner_id in range(1, len(learners) + 1):
            await uow.enrolments.add(learner_id, 1, None)
        await plan_notices(uow, session, app.settings, now)
        await uow.commit()
    return session.id


async def test_every_reminder_exactly_once_across_a_takeover(db_url, clock):
    """A sends the first notice and dies while firing the second; B takes over with every
    remaining job in the shared store; double fires from both sides send each notice once."""
    a_app, b_app = await two_apps(db_url, clock)
    a, b = SchedulerService(a_app), SchedulerService(b_app)
    learners = [7001, 7002, 7003]
    try:
        sid = await session_for(a_app, learners)
        await a.start()
        await b.start()
        async with a_app.uow() as uow:
            plan = notice_plan(await uow.sessions.get(sid), a_app.settings)
        kinds = [kind for kind, _ in plan]
        assert a.job_ids() == sorted(notice_job_id(sid, kind) for kind in kinds)
        first, second, *rest = plan
        clock.moment = first[1]
        assert sorted(await fire(a_app, sid, first[0], times=2)) == [0, len(learners)]
        clock.moment = second[1]
        dying = asyncio.create_task(fire(a_app, sid, second[0]))  # A's last, in-flight job
        await a.stop(release=False)
        await wait_active(b, LEASE + SLACK)
        # Nothing lost: the new active scheduler has every notice not yet sent in its store.
        assert set(b.job_ids()) >= {notice_job_id(sid, kind) for kind, _ in rest}
        again = await fire(b_app, sid, second[0], times=2)  # B's misfire run of the same job
        assert sorted(await dying + again) == [0, 0, len(learners)]
        for kind, due in rest:
            clock.moment = due
            assert sorted(await fire(b_app, sid, kind, times=2)) == [0, len(learners)]
        statuses = await reminder_statuses(b_app, sid)
        assert statuses == {(kind, "sent"): len(learners) for kind in kinds}, statuses
        assert await count_rows(b_app, OutboxMessage) == len(learners) * len(kinds)
    finally:
        await a.stop()
        await b.stop()
        await a_app.close()
        await b_app.close()


CHILD = """
import asyncio, sys
from bot.bootstrap import build_app
from scheduler.service import SchedulerService
from tests.conftest import make_settings

async def main():
    app = await build_app(make_settings(sys.argv[1], scheduler_lease_seconds=float(sys.argv[2])))
    service = SchedulerService(app)
    await service.start()
    print("active" if service.active else "standby", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_killed_scheduler_process_is_replaced_within_the_bound(db_url, clock):
    """SIGKILL of a real scheduler process: the standby here takes over within the bound."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, db_url, str(LEASE)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    app = await build_app(make_settings(db_url, scheduler_lease_seconds=LEASE), clock=clock)
    service = SchedulerService(app)
    try:
        line = await asyncio.to_thread(child.stdout.readline)
        assert line.strip() == b"active"
        await service.start()
        assert not service.active
        child.send_signal(signal.SIGKILL)
        await asyncio.to_thread(child.wait)
        took = await wait_active(service, LEASE + SLACK)
        assert took <= LEASE + SLACK
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        await service.stop()
        await app.close()


async def test_a_second_poller_is_refused_with_one_clear_line(db_url, clock):
    """Polling is single-process per database; after the first stops, another may poll."""
    a_app, b_app = await two_apps(db_url, clock)
    first, second = PollerGuard(a_app), PollerGuard(b_app)
    try:
        await first.start()
        with pytest.raises(ChannelConfigError) as refused:
            await second.start()
        message = str(refused.value)
        assert "another process already polls Telegram" in message and "\n" not in message
        await asyncio.sleep(LEASE)  # the first keeps renewing: still refused
        with pytest.raises(ChannelConfigError):
            await PollerGuard(b_app).start()
        await first.stop()
        await second.start()
    finally:
        await first.stop()
        await second.stop()
        await a_app.close()
        await b_app.close()


def test_roles_and_the_bot_alias():
    """web, scheduler, sender, all; `bot` is `web`; anything else is refused."""
    assert [parse_role(r) for r in ("web", "bot", "scheduler", "sender", "all")] == [
        "web",
        "web",
        "scheduler",
        "sender",
        "all",
    ]
    with pytest.raises(ValueError, match="web, scheduler, sender"):
        parse_role("worker")
    polling = make_settings("sqlite://", telegram_bot_token="1:x")
    webhook = make_settings(
        "sqlite://",
        telegram_bot_token="1:x",
        telegram_webhook_url="https://bot.example/telegram",
        telegram_webhook_secret="s3cret",
    )
    assert polls_telegram(polling) and not polls_telegram(webhook)


@pytest.mark.parametrize(
    ("role", "expected"),
    [("scheduler", [SchedulerService]), ("sender", [Sender]), ("all", [SchedulerService, Sender])],
)
async def test_each_role_starts_only_its_parts(sqlite_url, clock, role, expected):
    """The scheduler role has no web server; the sender role no scheduler; all has both."""
    app = await build_app(make_settings(sqlite_url), clock=clock)
    services: list = []
    try:
        await start_role(app, role, asyncio.Event(), services)
        assert [type(s) for s in services] == expected
        assert (app.web is not None) == (role == "all")
    finally:
        for service in reversed(services):
            await service.stop()
        await app.close()
