"""DST in Europe/Berlin: the last Sundays of March and October."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.parsing import parse_local_datetime
from services.live import notice_plan
from tests.conftest import ADMIN_TG, start_telegram_app
from tests.scheduler.support import drain, fire, has, texts

IN_2030 = datetime(2030, 1, 1, tzinfo=UTC)


def parse_local(text: str, zone: ZoneInfo) -> datetime | None:
    """A wall time in `zone` (the one parser the /schedule command uses), seen from 2030."""
    return parse_local_datetime(text, zone, IN_2030)

BERLIN = ZoneInfo("Europe/Berlin")


def last_sunday(year: int, month: int) -> date:
    """The last Sunday of a month."""
    day = date(year, month + 1, 1) - timedelta(days=1)
    return day - timedelta(days=(day.weekday() - 6) % 7)


def test_local_times_on_changeover_days_map_to_one_instant():
    """02:30 does not exist in March (→ 03:30 CEST) and exists twice in October (→ the first)."""
    march, october = last_sunday(2030, 3), last_sunday(2030, 10)
    assert (march, october) == (date(2030, 3, 31), date(2030, 10, 27))
    spring = parse_local(f"{march}T02:30", BERLIN)
    assert spring == datetime(2030, 3, 31, 1, 30, tzinfo=UTC)
    assert spring.astimezone(BERLIN).strftime("%H:%M %Z") == "03:30 CEST"
    autumn = parse_local(f"{october}T02:30", BERLIN)
    assert autumn == datetime(2030, 10, 27, 0, 30, tzinfo=UTC)
    assert autumn.astimezone(BERLIN).strftime("%H:%M %Z") == "02:30 CEST"
    assert parse_local(f"{october}T03:30", BERLIN) - autumn == timedelta(hours=2)


@pytest.mark.parametrize("month", [3, 10])
async def test_a_0230_session_on_a_changeover_day_notifies_once(sqlite_url, clock, tg, month):
    """Scheduled at 02:30 Berlin time on the changeover day: each notice fires exactly once."""
    day = last_sunday(2030, month)
    clock.moment = datetime.combine(day - timedelta(days=3), datetime.min.time(), UTC)
    app, channel = await start_telegram_app(sqlite_url, clock, tg, timezone="Europe/Berlin")
    try:
        learner = tg.user(5001, first_name="Li", language_code="en")
        await learner.send("/timezone Europe/Berlin")
        await learner.wait_for_message(has("Time zone set"))
        async with app.uow() as uow:
            found = await uow.learners.identity("telegram", "5001")
            await uow.enrolments.add(found.learner_id, 1, None)
            await uow.commit()
        admin = tg.user(ADMIN_TG, first_name="Boss", language_code="en")
        await admin.send(f"/schedule 1 {day}T02:30 https://live.example/dst")
        reply = await admin.wait_for_message(has("Scheduled session #1"))
        expected = parse_local(f"{day}T02:30", BERLIN)
        assert expected.strftime("%Y-%m-%d %H:%M UTC") in reply["text"]
        async with app.uow() as uow:
            session = await uow.sessions.get(1)
        assert session.starts_at == expected
        plan = dict(notice_plan(session, app.settings))
        assert plan["before-600"] == expected - timedelta(minutes=10)
        for kind, due in sorted(plan.items(), key=lambda item: item[1]):
            clock.moment = due
            await fire(app, 1, kind, times=2)
            clock.moment = due + timedelta(hours=1)  # the wall clock repeats an hour
            await fire(app, 1, kind)
        await drain(app)
        got = texts(tg, 5001)
        assert sum("⏰" in t for t in got) == 3 and sum("live now" in t for t in got) == 1
        local = expected.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M")
        assert all(local in t for t in got if "⏰" in t)
    finally:
        await channel.stop()
        await app.close()
