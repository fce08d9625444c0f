"""Helpers for the scheduler tests: fake time for the sender, fake users that buy, counting."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select

from scheduler import jobs
from scheduler.sender import drain_once, report_broadcasts
from storage.models import Identity, Learner, OutboxMessage, Reminder
from tests.conftest import make_settings, start_telegram_app
from tests.fakes.telegram_api import has

#: Far enough ahead that APScheduler (which runs on real time) never fires these jobs itself.
FUTURE = datetime(2030, 3, 11, 8, 0, tzinfo=UTC)


class FakeTime:
    """Monotonic time and sleep for the sender's limiters: sleeping advances time at once."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        """The fake monotonic clock."""
        return self.t

    async def sleep(self, seconds: float) -> None:
        """Advance the fake clock instead of waiting."""
        self.slept.append(seconds)
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)


def texts(tg, user_id: int) -> list[str]:
    """Texts the bot sent to a chat, oldest first."""
    return [m.get("text") or "" for m in tg.messages_for(user_id)]


async def drain(app, fake_time: FakeTime | None = None, rounds: int = 50) -> int:
    """Drain the outbox and send reports until nothing is due (fake time: no real waits)."""
    fake_time = fake_time or FakeTime()
    total = 0
    for _ in range(rounds):
        sent = await drain_once(app, monotonic=fake_time.monotonic, sleep=fake_time.sleep)
        total += sent
        await report_broadcasts(app)
        if not await count_rows(app, OutboxMessage, OutboxMessage.status == "pending"):
            break
    return total


async def count_rows(app, model, *where) -> int:
    """Rows of a model matching conditions."""
    async with app.uow() as uow:
        stmt = select(func.count()).select_from(model).where(*where)
        return int(await uow.session.scalar(stmt) or 0)


async def reminder_statuses(app, session_id: int) -> dict[tuple[str, str], int]:
    """Notices of a session by (kind, status)."""
    async with app.uow() as uow:
        return await uow.reminders.counts(session_id)


async def fire(app, session_id: int, kind: str, times: int = 1) -> list[int]:
    """Run a notice job as APScheduler would, `times` times at once (a double fire)."""
    jobs.bind(app)
    return list(
        await asyncio.gather(*(jobs.session_notice(session_id, kind) for _ in range(times)))
    )


async def buy(user, course_id: int = 1) -> None:
    """A fake Telegram user opens a course, pays with Stars and waits for the 🎉."""
    await user.send(f"/start course_{course_id}")
    await user.wait_for_message(has(f"#{course_id}"))
    await user.press(f"buy:{course_id}")
    await user.wait_for_message(lambda m: "invoice" in m)
    assert await user.pay(), user.last_payment_error
    await user.wait_for_message(has("🎉"))


async def add_learners(app, user_ids, channel: str = "telegram", locale: str = "en") -> None:
    """Create learners with one identity each, in bulk."""
    now = app.clock.now()
    async with app.uow() as uow:
        base = int(await uow.session.scalar(select(func.coalesce(func.max(Learner.id), 0))))
        learners = [
            dict(id=base + n + 1, display_name=f"L{u}", locale=locale, created_at=now)
            for n, u in enumerate(user_ids)
        ]
        identities = [
            dict(learner_id=row["id"], channel=channel, user_ref=str(u), last_seen_at=now)
            for row, u in zip(learners, user_ids, strict=True)
        ]
        for start in range(0, len(learners), 500):
            await uow.session.execute(insert(Learner), learners[start : start + 500])
            await uow.session.execute(insert(Identity), identities[start : start + 500])
        await uow.commit()


def at(moment: datetime, **delta) -> datetime:
    """A moment shifted by a timedelta."""
    return moment + timedelta(**delta)


__all__ = ["Reminder", "start_telegram_app"]


async def drain_all(app) -> int:
    """Drain until no row is pending; the number this app sent."""
    total = 0
    while True:
        sent = await drain_once(app, limit=20)
        total += sent
        if sent == 0 and not await count_rows(
            app, OutboxMessage, OutboxMessage.status == "pending"
        ):
            return total


@contextlib.asynccontextmanager
async def sender_apps(url: str, clock, tg, **overrides):
    """Two sender processes' worth of apps on one database, each with its aiogram channel to
    the fake Bot API (not polling); closed afterwards."""
    from bot.bootstrap import build_app
    from bot.channels.telegram_aiogram import AiogramChannel

    settings = make_settings(
        url, telegram_bot_token=tg.token, telegram_api_url=tg.base_url, **overrides
    )
    apps = [await build_app(settings, clock=clock) for _ in range(2)]
    channels = []
    try:
        for app in apps:
            channels.append(AiogramChannel(app))
            app.channels.add(channels[-1])
        yield apps
    finally:
        for channel in channels:
            await channel.bot.session.close()
        for app in apps:
            await app.close()
