"""The guided /addcourse: one question per message in the user's language, a wrong answer asked
again, an instructor's course their own, a /command stops it; the one-line form still works."""

from __future__ import annotations

from sqlalchemy import select

from storage.models import AuditEntry, Course
from tests.handlers.support import Chat, learner_for

ANSWERS = ["programming", "排版入门", "Typesetting 101", "120", "99.5", "Li Hua", "-"]


async def course_named(app, title_en: str):
    async with app.uow() as uow:
        return await uow.session.scalar(select(Course).where(Course.title_en == title_en))


async def test_an_admin_adds_a_course_step_by_step_in_english(app):
    admin = Chat(app, "me", name="Admin")
    first = await admin.send("/addcourse")
    assert "step by step" in first.text and "(1/7) Which category?" in first.text
    assert "programming" in first.text
    asked = []
    for answer in ANSWERS[:3]:
        asked.append((await admin.send(answer)).text)
    assert asked[0].startswith("(2/7) The Chinese title")
    assert asked[2].startswith("(4/7) The price in Telegram Stars")
    wrong = await admin.send("lots")
    assert "That stars is wrong" in wrong.text and "(4/7)" in wrong.text, "asked again"
    for answer in ANSWERS[3:-1]:
        await admin.send(answer)
    done = await admin.send(ANSWERS[-1])
    assert "Added course #" in done.text and "Typesetting 101" in done.text
    course = await course_named(app, "Typesetting 101")
    assert (course.title_zh, course.price_stars, course.price_fen) == ("排版入门", 120, 9950)
    assert (course.instructor_name, course.description_en) == ("Li Hua", "")
    assert course.instructor_learner_id is None, "an admin's course has no instructor account"
    async with app.uow() as uow:
        actions = (await uow.session.execute(select(AuditEntry.action))).scalars().all()
    assert actions == ["course.add"]


async def test_an_instructor_in_chinese_adds_their_own_course(app):
    admin = Chat(app, "me", name="Admin")
    await learner_for(app, "console", "laoshi", "王老师", locale="zh")
    await admin.send("/instructor add console:laoshi 1")
    teacher = Chat(app, "laoshi", name="王老师", locale="zh")
    first = await teacher.send("/addcourse")
    assert "逐步添加新课程" in first.text and "（1/7）属于哪个分类" in first.text
    assert "没有这个分类标识" in (await teacher.send("cooking")).text
    for answer in ANSWERS[:-1]:
        await teacher.send(answer)
    done = await teacher.send("一门讲排版的课")
    assert "已上架课程" in done.text
    course = await course_named(app, "Typesetting 101")
    assert course.instructor_learner_id == await teacher.learner_id()
    assert course.description_zh == "一门讲排版的课"


async def test_a_command_stops_the_form_and_learners_cannot_start_it(app):
    admin = Chat(app, "me", name="Admin")
    await admin.send("/addcourse")
    await admin.send("programming")
    await admin.send("/help")  # any /command ends the form
    reply = await admin.send("Typesetting 101")  # plain text again: not an answer any more
    assert "(3/7)" not in reply.text
    assert await course_named(app, "Typesetting 101") is None
    assert "only admins" in (await Chat(app, "learner-x").send("/addcourse")).text
    one_line = "/addcourse data|表格|Sheets|10|9.9|Li|Spreadsheets"
    assert "Added course #" in (await admin.send(one_line)).text
