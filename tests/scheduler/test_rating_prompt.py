"""The rating prompt after a live session: a notice kind with the reminders' life cycle."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from storage.models import OutboxMessage, Rating
from tests.conftest import ADMIN_TG, start_telegram_app
from tests.handlers.support import rate_with_buttons
from tests.scheduler.support import buy, count_rows, drain, fire, has, reminder_statuses, texts

LOCAL = "2030-03-13T20:00"  # Asia/Shanghai = 12:00 UTC
ENDED = "has ended. Would you rate it?"


async def admin_says(tg, text: str, expect: str) -> dict:
    """The admin sends a command and waits for a reply containing `expect`."""
    admin = tg.user(ADMIN_TG, first_name="Boss", language_code="en")
    await admin.send(text)
    return await admin.wait_for_message(has(expect))


async def rate_due(app, session_id: int):
    """When the session's rating prompt is due, from the notice plan."""
    from services.live import notice_plan

    async with app.uow() as uow:
        session = await uow.sessions.get(session_id)
    return session.starts_at, dict(notice_plan(session, app.settings))["rate"]


def prompts(tg, user_id: int) -> list[str]:
    """Rating prompts a chat received."""
    return [t for t in texts(tg, user_id) if ENDED in t]


async def test_learners_get_the_prompt_at_the_end_once_and_can_rate(live_app, tg, clock):
    """Bought before or after scheduling: one prompt at start + 90 min whose button rates."""
    early = tg.user(5001, first_name="Early", language_code="en")
    await buy(early)
    await admin_says(tg, f"/schedule 1 {LOCAL} https://live.example/s1", "#1")
    late = tg.user(5002, first_name="Late", language_code="en")
    await buy(late)
    starts_at, due = await rate_due(live_app, 1)
    assert due == starts_at + timedelta(minutes=live_app.settings.session_duration_minutes)
    assert live_app.settings.session_duration_minutes == 90

    clock.moment = due - timedelta(minutes=1)
    assert await fire(live_app, 1, "rate") == [0]  # the session is not over yet
    clock.moment = due
    assert sorted(await fire(live_app, 1, "rate", times=2)) == [0, 2]  # a double fire
    assert await fire(live_app, 1, "rate") == [0]  # and a later third run
    assert await drain(live_app) == 2
    assert await count_rows(live_app, OutboxMessage, OutboxMessage.kind == "live-rate") == 2
    for user_id in (5001, 5002):
        [prompt] = prompts(tg, user_id)
        assert "“Python for Beginners”" in prompt

    message = next(m for m in tg.messages_for(5002) if ENDED in (m.get("text") or ""))
    assert message["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "rate:1"
    await late.press("rate:1", message)
    saved = await rate_with_buttons(late, (5, 4, 3), "Rating saved")
    assert "overall 4.1" in saved["text"]  # 0.4·5 + 0.3·4 + 0.3·3
    async with live_app.uow() as uow:
        [rating] = (await uow.session.execute(select(Rating))).scalars().all()
    assert (rating.course_id, rating.content, rating.instructor, rating.interaction) == (
        1,
        5,
        4,
        3,
    )
    assert not tg.errors, tg.errors


async def test_moving_a_session_moves_the_prompt(db_url, clock, tg):
    """Moved two days on: nothing at the old end, one prompt at the new one (45 min setting)."""
    app, channel = await start_telegram_app(db_url, clock, tg, session_duration_minutes=45)
    try:
        learner = tg.user(5001, first_name="Li", language_code="en")
        await buy(learner)
        await admin_says(tg, f"/schedule 1 {LOCAL} https://live.example/s1", "#1")
        old_start, old_due = await rate_due(app, 1)
        assert old_due == old_start + timedelta(minutes=45)
        await admin_says(tg, "/reschedule 1 2030-03-15T20:00", "moved")
        new_start, new_due = await rate_due(app, 1)
        assert new_start - old_start == timedelta(days=2)
        assert new_due == new_start + timedelta(minutes=45)
        clock.moment = old_due
        assert await fire(app, 1, "rate") == [0]
        clock.moment = new_due
        assert await fire(app, 1, "rate", times=2) in ([0, 1], [1, 0])
        await drain(app)
        assert len(prompts(tg, 5001)) == 1
        assert (await reminder_statuses(app, 1))[("rate", "sent")] == 1
    finally:
        await channel.stop()
        await app.close()


async def test_a_cancelled_session_never_sends_the_prompt(live_app, tg, clock):
    """Cancelled before it ran: the prompt's notice is cancelled and its job sends nothing."""
    learner = tg.user(5001, first_name="Li", language_code="en")
    await buy(learner)
    await admin_says(tg, f"/schedule 1 {LOCAL} https://live.example/s1", "#1")
    _, due = await rate_due(live_app, 1)
    await admin_says(tg, "/cancelsession 1", "cancelled")
    clock.moment = due
    assert await fire(live_app, 1, "rate", times=2) == [0, 0]
    await drain(live_app)
    assert any("is cancelled" in t for t in texts(tg, 5001))
    assert prompts(tg, 5001) == []
    assert (await reminder_statuses(live_app, 1))[("rate", "cancelled")] == 1
