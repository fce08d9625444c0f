"""Live sessions through the fake Bot API: reminders, start links, moves, cancels, admins."""

from __future__ import annotations

from sqlalchemy import select

from storage.models import LiveSession, OutboxMessage
from tests.conftest import ADMIN_TG
from tests.scheduler.support import (
    FakeTime,
    buy,
    count_rows,
    drain,
    fire,
    has,
    reminder_statuses,
    texts,
)

KINDS = ["before-86400", "before-3600", "before-600", "start"]
LOCAL = "2030-03-13T20:00"  # Asia/Shanghai = 12:00 UTC


async def admin_says(tg, text: str, expect: str) -> dict:
    """The admin sends a command and waits for a reply containing `expect`."""
    admin = tg.user(ADMIN_TG, first_name="Boss", language_code="en")
    await admin.send(text)
    return await admin.wait_for_message(has(expect))


async def session_row(app, session_id: int) -> LiveSession:
    """A session as stored."""
    async with app.uow() as uow:
        return await uow.sessions.get(session_id)


async def due_times(app, session_id: int) -> dict[str, object]:
    """Due time of each notice kind of a session (from the stored plan)."""
    async with app.uow() as uow:
        session = await uow.sessions.get(session_id)
    from services.live import notice_plan

    return dict(notice_plan(session, app.settings))


async def test_enrolled_learner_gets_every_reminder_and_the_link_once(live_app, tg, clock):
    """Bought before: 24h, 1h, 10m reminders and the start link, each once, double fires too."""
    learner = tg.user(5001, first_name="Li", language_code="en")
    await buy(learner)
    reply = await admin_says(tg, f"/schedule 1 {LOCAL} https://live.example/s1 Week 1", "#1")
    assert "2030-03-13 12:00 UTC" in reply["text"] and "20:00" in reply["text"]
    assert "Asia/Shanghai" in reply["text"]
    due = await due_times(live_app, 1)
    fake = FakeTime()
    for kind in KINDS:
        clock.moment = due[kind]
        runs = await fire(live_app, 1, kind, times=2)  # two job runs at once
        assert sorted(runs) == [0, 1]
        assert await fire(live_app, 1, kind) == [0]  # and a third, later
        assert await drain(live_app, fake) == 1
    got = texts(tg, 5001)
    notices = [t for t in got if "Reminder" in t or "live now" in t]
    assert len(notices) == 4, got
    assert "starts in 24 h" in notices[0] and "starts in 1 h" in notices[1]
    assert "starts in 10 min" in notices[2]
    assert "https://live.example/s1" in notices[3] and "Week 1" in notices[3]
    assert await count_rows(live_app, OutboxMessage, OutboxMessage.status != "sent") == 0


async def test_learner_enrolling_between_reminders_gets_only_later_ones(live_app, tg, clock):
    """Bought after the 24h reminder was due: only 1h, 10m and the start link."""
    early = tg.user(5001, first_name="Early", language_code="en")
    await buy(early)
    await admin_says(tg, f"/schedule 1 {LOCAL} https://live.example/s1", "#1")
    due = await due_times(live_app, 1)
    clock.moment = due["before-86400"]
    await fire(live_app, 1, "before-86400")
    clock.advance(hours=2)
    late = tg.user(5002, first_name="Late", language_code="en")
    await buy(late)
    await late.wait_for_message(has("Next live session"))
    await fire(live_app, 1, "before-86400")
    for kind in KINDS[1:]:
        clock.moment = due[kind]
        await fire(live_app, 1, kind)
    await drain(live_app)
    late_notices = [t for t in texts(tg, 5002) if "Reminder" in t or "live now" in t]
    early_notices = [t for t in texts(tg, 5001) if "Reminder" in t or "live now" in t]
    assert len(late_notices) == 3 and "24 h" not in " ".join(late_notices)
    assert len(early_notices) == 4


async def test_move_and_cancel_tell_learners_and_old_reminders_do_not_fire(live_app, tg, clock):
    """Moving re-plans the notices; the old times send nothing; cancelling stops them all."""
    learner = tg.user(5001, first_name="Li", language_code="en")
    await buy(learner)
    await admin_says(tg, f"/schedule 1 {LOCAL} https://live.example/s1", "#1")
    old = await due_times(live_app, 1)
    await admin_says(tg, "/reschedule 1 2030-03-15T20:00", "moved")
    await drain(live_app)
    assert any("has moved to" in t and "2030-03-15" in t for t in texts(tg, 5001))
    new = await due_times(live_app, 1)
    for kind in KINDS:  # a job left over at the old time finds nothing due
        clock.moment = old[kind]
        assert await fire(live_app, 1, kind) == [0]
    clock.moment = new["before-86400"]
    assert await fire(live_app, 1, "before-86400") == [1]
    await admin_says(tg, "/cancelsession 1", "cancelled")
    await drain(live_app)
    assert any("is cancelled" in t for t in texts(tg, 5001))
    for kind in KINDS[1:]:
        clock.moment = new[kind]
        assert await fire(live_app, 1, kind) == [0]
    await drain(live_app)
    got = texts(tg, 5001)
    assert sum("Reminder" in t for t in got) == 1 and not any("live now" in t for t in got)
    assert (await session_row(live_app, 1)).status == "cancelled"


async def test_scheduler_sync_moves_and_removes_jobs(live_sqlite, tg, clock):
    """The job store holds one job per notice kind; moves reschedule, cancels remove."""
    from scheduler.service import SchedulerService

    service = SchedulerService(live_sqlite)
    await service.start()
    try:
        await admin_says(tg, f"/schedule 1 {LOCAL} https://live.example/s1", "#1")
        learner = tg.user(5001, first_name="Li", language_code="en")
        await buy(learner)  # reminders exist only once someone is enrolled
        await service.sync()
        assert service.job_ids() == [f"rem-1-{k}" for k in sorted([*KINDS, "rate"])]
        due = await due_times(live_sqlite, 1)
        job = service.scheduler.get_job("rem-1-start")
        assert job.next_run_time == due["start"]
        assert job.misfire_grace_time == live_sqlite.settings.scheduler_misfire_grace_seconds
        await admin_says(tg, "/reschedule 1 2030-03-15T20:00", "moved")
        await service.sync()
        moved = await due_times(live_sqlite, 1)
        assert service.scheduler.get_job("rem-1-start").next_run_time == moved["start"]
        await admin_says(tg, "/cancelsession 1", "cancelled")
        await service.sync()
        assert service.job_ids() == []
    finally:
        await service.stop()


async def test_stopped_learners_get_no_announcements_but_their_reminders(live_app, tg, clock):
    """/stop: no announcements, reminders still come; the admin's report counts opt-outs."""
    quiet = tg.user(5001, first_name="Quiet", language_code="en")
    loud = tg.user(5002, first_name="Loud", language_code="en")
    for user in (quiet, loud):
        await buy(user)
    await quiet.send("/stop")
    await quiet.wait_for_message(has("no more announcements"))
    await admin_says(tg, f"/schedule 1 {LOCAL} https://live.example/s1", "#1")
    reply = await admin_says(tg, "/announce 1 Bring <your> laptop & charger", "Announcement #1")
    assert "1 opted out" in reply["text"]
    await drain(live_app)
    assert not any("laptop" in t for t in texts(tg, 5001))
    assert any("Bring <your> laptop & charger" in t for t in texts(tg, 5002))
    await drain(live_app)  # the delivery report goes out once every row is settled
    report = tg.messages_for(ADMIN_TG)[-1]["text"]
    assert "Delivery report of announcement #1" in report and "Opted out: 1" in report
    assert "Sent: 1" in report
    clock.moment = (await due_times(live_app, 1))["before-600"]
    await fire(live_app, 1, "before-600")
    await drain(live_app)
    for user_id in (5001, 5002):
        assert sum("⏰" in t for t in texts(tg, user_id)) == 1
    await quiet.send("/start")
    await quiet.wait_for_message(has("Hi"))
    await admin_says(tg, "/announce all Welcome back", "Announcement #2")
    await drain(live_app)
    assert any("Welcome back" in t for t in texts(tg, 5001))


async def test_scheduled_announcement_fans_out_once(live_sqlite, tg, clock):
    """`/announce … at` waits for its time; the job fans out once even if run twice."""
    from scheduler import jobs
    from scheduler.service import SchedulerService

    user = tg.user(5001, first_name="Li", language_code="en")
    await user.send("/start")
    await user.wait_for_message(has("Hi"))
    reply = await admin_says(tg, "/announce all Doors open at 2030-03-12T09:00", "will go out")
    assert "2030-03-12 01:00 UTC" in reply["text"]
    await drain(live_sqlite)
    assert not any("Doors open" in t for t in texts(tg, 5001))
    service = SchedulerService(live_sqlite)
    await service.start()
    try:
        assert service.job_ids() == ["bc-1"]
        jobs.bind(live_sqlite)
        assert [await jobs.scheduled_broadcast(1), await jobs.scheduled_broadcast(1)] == [
            True,
            False,
        ]
        await service.sync()
        assert service.job_ids() == []
    finally:
        await service.stop()
    await drain(live_sqlite)
    assert sum("Doors open" in t for t in texts(tg, 5001)) == 1


async def test_non_admins_cannot_schedule_announce_or_set_replays(live_app, tg):
    """Every admin command of this feature refuses a learner and changes nothing."""
    user = tg.user(5001, first_name="Eve", language_code="en")
    for command in (
        f"/schedule 1 {LOCAL} https://evil.example",
        "/announce all spam",
        "/replay 1 https://evil.example",
        "/reschedule 1 2030-03-15T20:00",
        "/cancelsession 1",
    ):
        await user.send(command)
        await user.wait_for_message(has("only admins"))
    async with live_app.uow() as uow:
        assert (await uow.session.execute(select(LiveSession))).first() is None
    assert await count_rows(live_app, OutboxMessage) == 0


async def test_replay_card_mycourses_and_timezone(live_app, tg, clock):
    """The card and /mycourses show the next session in the learner's zone; replays arrive."""
    learner = tg.user(5001, first_name="Li", language_code="en")
    await buy(learner)
    await admin_says(tg, f"/schedule 1 {LOCAL} https://live.example/s1", "#1")
    await learner.send("/timezone Europe/Berlin")
    await learner.wait_for_message(has("Time zone set to Europe/Berlin"))
    await learner.send("/start course_1")
    card = await learner.wait_for_message(has("Next live session"))
    assert "2030-03-13 13:00" in card["text"]  # 12:00 UTC is 13:00 in Berlin (winter)
    await learner.send("/mycourses")
    mine = await learner.wait_for_message(has("Upcoming sessions"))
    assert "2030-03-13 13:00" in mine["text"]
    await learner.send("/timezone Mars/Olympus")
    await learner.wait_for_message(has("Unknown time zone"))
    await learner.send("/sessions 1")
    listing = await learner.wait_for_message(has("#1 2030-03-13 13:00"))
    assert "https://live.example/s1" in listing["text"]
    due = await due_times(live_app, 1)
    clock.moment = due["start"]
    await fire(live_app, 1, "start")
    await admin_says(tg, "/replay 1 https://replay.example/s1", "Replay of session #1 set")
    clock.advance(hours=2)
    await fire(live_app, 1, "replay", times=2)
    await drain(live_app)
    assert sum("https://replay.example/s1" in t for t in texts(tg, 5001)) == 1

    latecomer = tg.user(5002, first_name="Late", language_code="en")
    await latecomer.send("/sessions 1")
    listing = await latecomer.wait_for_message(has("(replay)"))
    assert "https://replay.example/s1" not in listing["text"], "only owners see the link"
    await buy(latecomer)
    await latecomer.wait_for_message(has("1 replay is ready"))
    await latecomer.send("/sessions 1")
    listing = await latecomer.wait_for_message(has("(replay)"))
    assert "https://replay.example/s1" in listing["text"]


async def test_a_learner_refunded_after_scheduling_gets_no_more_notices(live_app, tg, clock):
    """/refund between reminders: the refunded learner gets nothing more, the other does."""
    stays = tg.user(5001, first_name="Stays", language_code="en")
    leaves = tg.user(5002, first_name="Leaves", language_code="en")
    await buy(stays)
    await buy(leaves)
    await admin_says(tg, f"/schedule 1 {LOCAL} https://live.example/s1", "#1")
    due = await due_times(live_app, 1)
    clock.moment = due["before-86400"]
    assert await fire(live_app, 1, "before-86400") == [2]
    asked = await admin_says(tg, "/refund 2", "Refund payment #2")
    await tg.user(ADMIN_TG).press("rfy:2", asked)  # the admin confirms
    await tg.user(ADMIN_TG).wait_for_message(has("Refunded payment #2"))
    for kind in KINDS[1:]:
        clock.moment = due[kind]
        assert await fire(live_app, 1, kind) == [1]
    await drain(live_app)
    assert sum("live now" in t for t in texts(tg, 5001)) == 1
    assert not any("live now" in t or "starts in 1 h" in t for t in texts(tg, 5002))
    statuses = await reminder_statuses(live_app, 1)
    assert statuses[("start", "sent")] == 1 and statuses[("start", "not_enrolled")] == 1


async def test_notices_to_a_learner_who_blocked_the_bot_are_marked_unreachable(
    live_app, tg, clock
):
    """A learner flagged unreachable (an earlier 403) is not sent to, and the notice says so."""
    learner = tg.user(5001, first_name="Gone", language_code="en")
    await buy(learner)
    await admin_says(tg, f"/schedule 1 {LOCAL} https://live.example/s1", "#1")
    async with live_app.uow() as uow:
        await uow.learners.mark_unreachable("telegram", "5001", clock.now())
        await uow.commit()
    clock.moment = (await due_times(live_app, 1))["start"]
    assert await fire(live_app, 1, "start") == [0]
    assert (await reminder_statuses(live_app, 1))[("start", "unreachable")] == 1
    assert await count_rows(live_app, OutboxMessage, OutboxMessage.kind == "live-start") == 0
