"""Every admin and instructor action lands in the audit log (`/audit`), and instructors add,
edit and schedule only their own courses, tampered payloads included; admins everything."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from storage.models import AuditEntry, Course, LiveSession, Question
from tests.handlers.support import Chat, learner_for, payloads
from tests.handlers.test_admin_tools import pay, payments

ADMIN = "me"  # console:me is on the test ADMINS list
NEW_COURSE = "programming|排版入门|Typesetting|100|99|Li|Intro"


def when(clock, days: int) -> str:
    """A local time `days` ahead, as /schedule reads it."""
    return (clock.now() + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")


async def audit_rows(app) -> list[tuple[str, str, str]]:
    """(actor, action, target) of every audit entry, oldest first."""
    async with app.uow() as uow:
        rows = (await uow.session.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars()
        return [(r.actor, r.action, r.target) for r in rows]


async def newest_session(app) -> int:
    async with app.uow() as uow:
        return await uow.session.scalar(select(LiveSession.id).order_by(LiveSession.id.desc()))


async def test_every_admin_action_is_in_the_audit_log(app, clock):
    await learner_for(app, "console", "teacher", "Teacher")
    await pay(app, "buyer", 1, "ch-9")
    (payment,) = await payments(app)
    admin = Chat(app, ADMIN, name="Admin")
    assert "added" in (await admin.send(f"/addcourse {NEW_COURSE}")).text.lower()
    assert "Course #1" in (await admin.send("/editcourse 1 stars 120")).text
    await admin.send(f"/schedule 1 {when(clock, 2)} https://live.example/a Week 1")
    session_id = await newest_session(app)
    await admin.send(f"/reschedule {session_id} {when(clock, 3)}")
    await admin.send(f"/replay {session_id} https://live.example/replay")
    await admin.send(f"/cancelsession {session_id}")
    await admin.send("/announce 1 New material is up")
    await admin.send("/coupon create AUD10 10%")
    await admin.send("/instructor add console:teacher 2")
    await admin.send("/instructor remove console:teacher 2")
    await admin.send("/cover 1 off")
    await admin.send("/withdraw 3")
    await admin.send("/category add design 设计 Design")
    assert f"rfy:{payment.id}" in payloads(await admin.send(f"/refund {payment.id}"))
    await admin.press(f"rfy:{payment.id}")

    rows = await audit_rows(app)
    actions = [action for _, action, _ in rows]
    assert actions == [
        "course.add",
        "course.edit",
        "session.schedule",
        "session.move",
        "session.replay",
        "session.cancel",
        "announce",
        "coupon.create",
        "instructor.add",
        "instructor.remove",
        "cover.remove",
        "course.withdraw",
        "category.add",
        "refund",
    ]
    assert {actor for actor, _, _ in rows} == {"console:me"}
    assert ("console:me", "refund", f"payment:{payment.id}") in rows
    assert ("console:me", "session.cancel", f"session:{session_id}") in rows
    log = (await admin.send("/audit 50")).text
    for action in ("course.add", "session.schedule", "announce", "refund", "cover.remove"):
        assert action in log
    assert "only admins" in (await Chat(app, "teacher").send("/audit")).text


async def make_instructors(app) -> tuple[Chat, Chat, Chat]:
    """teacher1 teaches course 1, teacher2 course 2; and the admin."""
    admin = Chat(app, ADMIN, name="Admin")
    await learner_for(app, "console", "teacher1", "Teacher One")
    await learner_for(app, "console", "teacher2", "Teacher Two")
    await admin.send("/instructor add console:teacher1 1")
    await admin.send("/instructor add console:teacher2 2")
    return Chat(app, "teacher1"), Chat(app, "teacher2"), admin


async def test_instructors_add_and_schedule_only_their_own(app, clock):
    one, _two, admin = await make_instructors(app)
    added = await one.send(f"/addcourse {NEW_COURSE}")
    assert "Typesetting" in added.text
    async with app.uow() as uow:
        course = await uow.session.scalar(select(Course).where(Course.title_en == "Typesetting"))
        new_id, teacher_id = course.id, course.instructor_learner_id
    assert teacher_id == await one.learner_id(), "an instructor's new course is their own"

    ok = await one.send(f"/schedule {new_id} {when(clock, 2)} https://live.example/x Mine")
    assert f"#{new_id}" in ok.text
    own = await one.send(f"/schedule 1 {when(clock, 2)} https://live.example/y")
    assert "of course #1" in own.text, "the course they teach"
    refused = await one.send(f"/schedule 2 {when(clock, 2)} https://live.example/z Theirs")
    assert "instructor or an admin" in refused.text
    async with app.uow() as uow:
        assert (
            await uow.session.scalar(select(LiveSession.id).where(LiveSession.course_id == 2))
            is None
        )

    await admin.send(f"/schedule 2 {when(clock, 4)} https://live.example/t Theirs")
    theirs = await newest_session(app)
    for command in (
        f"/reschedule {theirs} {when(clock, 5)}",
        f"/cancelsession {theirs}",
        f"/replay {theirs} https://live.example/r",
    ):
        assert "instructor or an admin" in (await one.send(command)).text, command
    assert "not one of your courses" in (await one.send("/editcourse 2 stars 1")).text
    assert "Course #1" in (await one.send("/editcourse 1 stars 130")).text
    async with app.uow() as uow:
        two = await uow.courses.get(2)
        assert two.price_stars != 1
        session = await uow.sessions.get(theirs)
        assert session.status == "scheduled" and session.replay_url is None

    actors = {(actor, action) for actor, action, _ in await audit_rows(app)}
    assert ("console:teacher1", "course.add") in actors
    assert ("console:teacher1", "session.schedule") in actors
    assert ("console:teacher1", "session.cancel") not in actors


async def test_a_learner_and_tampered_buttons_change_nothing(app, clock):
    one, _two, admin = await make_instructors(app)
    learner = Chat(app, "plain-learner")
    for command in (f"/addcourse {NEW_COURSE}", f"/schedule 1 {when(clock, 2)} https://l.ex/a"):
        assert "only admins" in (await learner.send(command)).text
    await pay(app, "buyer", 2, "ch-7")
    (payment,) = await payments(app)
    assert "only admins" in (await one.press(f"rfy:{payment.id}")).text, "refund: admins only"
    assert "only admins" in (await one.send("/withdraw 2")).text
    async with app.uow() as uow:
        assert (await uow.payments.get(payment.id)).status == "paid"
        assert (await uow.courses.get(2)).active
        assert (
            await uow.session.scalar(select(Course.id).where(Course.title_en == "Typesetting"))
            is None
        )


async def test_an_instructors_answer_and_faq_are_audited(app, clock):
    one, _two, _admin = await make_instructors(app)
    asker = await learner_for(app, "console", "asker", "Asker")
    async with app.uow() as uow:
        question = Question(
            learner_id=asker, course_id=1, text="Is there homework?", created_at=clock.now()
        )
        uow.session.add(question)
        await uow.commit()
        question_id = question.id
    assert f"#{question_id}" in (await one.send(f"/answer {question_id} Yes, weekly.")).text
    await one.send(f"/faq {question_id}")
    rows = await audit_rows(app)
    assert ("console:teacher1", "answer", f"question:{question_id}") in rows
    assert ("console:teacher1", "faq.on", f"question:{question_id}") in rows
