"""Real APScheduler on real time: restarts between reminders, missed jobs, a killed sender."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from bot.bootstrap import build_app
from bot.channels.telegram_aiogram import AiogramChannel
from bot.core import SystemClock
from scheduler.sender import Sender
from scheduler.service import SchedulerService
from services.live import plan_notices
from storage.models import OutboxMessage
from tests.conftest import make_settings
from tests.scheduler.support import add_learners, count_rows, reminder_statuses, texts

ROOT = Path(__file__).resolve().parents[2]


async def start_process(url: str, tg, **overrides):
    """What `coursebot run --role scheduler` starts: the app, scheduler and sender."""
    settings = make_settings(
        url,
        telegram_bot_token=tg.token,
        telegram_api_url=tg.base_url,
        reminder_offsets="3s,1s",
        **overrides,
    )
    app = await build_app(settings, clock=SystemClock())
    channel = AiogramChannel(app)
    app.channels.add(channel)
    service = SchedulerService(app)
    await service.start()
    sender = Sender(app)
    sender.start()
    return app, channel, service, sender


async def stop_process(app, channel, service, sender) -> None:
    """Stop everything the process started."""
    await sender.stop()
    await service.stop()
    await channel.bot.session.close()
    await app.close()


async def session_in(app, seconds: float) -> int:
    """A session of course 1 starting in `seconds`, with its notices planned."""
    async with app.uow() as uow:
        from bot.demo import seed_demo

        await seed_demo(uow)
        now = app.clock.now()
        session = await uow.sessions.add(
            course_id=1,
            starts_at=now + timedelta(seconds=seconds),
            url="https://live.example/now",
            status="scheduled",
            duration_minutes=60,
        )
        await uow.enrolments.add(1, 1, None)
        await plan_notices(uow, session, app.settings, now)
        await uow.commit()
    return session.id


def notices(tg, user_id: int) -> list[str]:
    """Reminder and start texts a chat received."""
    return [t for t in texts(tg, user_id) if "⏰" in t or "🔴" in t]


async def test_restart_between_two_reminders_still_sends_the_next_once(sqlite_url, tg):
    """Stop after the first reminder, start again: the next one and the link come once each."""
    tg.user(6001)
    process = await start_process(sqlite_url, tg)
    await add_learners(process[0], [6001])
    sid = await session_in(process[0], 4)
    await process[2].sync()
    assert process[2].job_ids() == [
        f"rem-{sid}-before-1",
        f"rem-{sid}-before-3",
        f"rem-{sid}-rate",
        f"rem-{sid}-start",
    ]
    await tg.wait_until(lambda: len(notices(tg, 6001)) >= 1, timeout=5)
    await stop_process(*process)
    process = await start_process(sqlite_url, tg)
    try:
        await tg.wait_until(lambda: len(notices(tg, 6001)) >= 3, timeout=8)
        await asyncio.sleep(0.5)
    finally:
        await stop_process(*process)
    got = notices(tg, 6001)
    assert len(got) == 3 and "starts in 3 s" in got[0] and "starts in 1 s" in got[1], got
    assert "https://live.example/now" in got[2]


async def test_reminders_later_than_the_grace_are_marked_missed_not_sent(sqlite_url, tg):
    """Down while a reminder was due (grace 1 s): it is marked missed; later ones still come."""
    tg.user(6001)
    process = await start_process(sqlite_url, tg, scheduler_misfire_grace_seconds=1)
    await add_learners(process[0], [6001])
    sid = await session_in(process[0], 4.5)
    await process[2].sync()
    await stop_process(*process)
    await asyncio.sleep(3.2)  # the 3s-before reminder (due at +1.5 s) is now 1.7 s late
    process = await start_process(sqlite_url, tg, scheduler_misfire_grace_seconds=1)
    try:
        await tg.wait_until(lambda: len(notices(tg, 6001)) >= 2, timeout=6)
        await asyncio.sleep(0.3)
        statuses = await reminder_statuses(process[0], sid)
    finally:
        await stop_process(*process)
    got = notices(tg, 6001)
    assert len(got) == 2 and "starts in 1 s" in got[0] and "🔴" in got[1], got
    assert statuses[("before-3", "missed")] == 1
    assert statuses[("before-1", "sent")] == 1 and statuses[("start", "sent")] == 1


async def test_killed_sender_resumes_without_sending_twice(tmp_path, tg):
    """SIGKILL `coursebot run --role sender` mid-broadcast; the restart finishes the job."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'kill.db'}"
    app = await build_app(make_settings(url), clock=SystemClock())
    ids = list(range(300_000, 300_400))
    for user_id in ids:
        tg.user(user_id)
    await add_learners(app, ids)
    async with app.uow() as uow:
        from services.announcements import fan_out

        broadcast = await uow.broadcasts.add(text="Kill test", status="sending")
        await fan_out(uow, broadcast, app.settings, app.clock.now())
        await uow.commit()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "TELEGRAM_BOT_TOKEN": tg.token,
        "TELEGRAM_API_URL": tg.base_url,
        "SEND_RATE_PER_SECOND": "100",
        "SENDER_CONCURRENCY": "8",
        "SENDER_LEASE_SECONDS": "1",
        "LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "bot", "run", "--role", "sender"]

    def spawn():
        return subprocess.Popen(command, cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)})

    def delivered() -> int:
        return sum(1 for u in ids if tg.send_counts[u])

    first = spawn()
    try:
        await tg.wait_until(lambda: delivered() >= 120, timeout=30, what="120 sends")
        first.send_signal(signal.SIGKILL)
        first.wait(5)
        before = delivered()
        assert before < len(ids)
        second = spawn()
        try:
            await tg.wait_until(lambda: delivered() == len(ids), timeout=30, what="all sends")
            await asyncio.sleep(0.5)
            pending = await count_rows(
                app, OutboxMessage, OutboxMessage.status.in_(["pending", "sending"])
            )
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
        await app.close()
    twice = [u for u in ids if tg.send_counts[u] > 1]
    assert all(tg.send_counts[u] <= 2 for u in ids)
    assert len(twice) <= 8 + 10, twice  # at most the sends in flight at the kill
    assert pending == 0
