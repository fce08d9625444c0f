"""The scripted conversations, run against every channel driver (console, aiogram, PTB, …).

Scripts assert meaning — which course ids, which button payloads, which rows were stored —
never a channel's formatting or the exact wording of a reply.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from scheduler import jobs
from storage.models import (
    Broadcast,
    Course,
    Enrolment,
    Identity,
    Learner,
    LiveSession,
    Order,
    Payment,
    Question,
    Rating,
    Reminder,
)
from tests.conversations.drivers.base import Said

CJK = re.compile(r"[\u4e00-\u9fff]")


async def rows(driver, model, *where) -> list:
    """Rows of a model in the driver's database."""
    async with driver.app.uow() as uow:
        return list((await uow.session.execute(select(model).where(*where))).scalars())


def find(said: list[Said], predicate, what: str) -> Said:
    """The first message matching `predicate`; the assertion lists what was received."""
    for message in said:
        if predicate(message):
            return message
    raise AssertionError(f"no message {what}; got {[(m.text[:60], m.buttons) for m in said]}")


def offering(said: list[Said], payload: str) -> Said:
    """The message offering a button with this payload."""
    return find(said, lambda m: payload in m.buttons, f"offering {payload!r}")


def mentioning(said: list[Said], needle: str) -> Said:
    """The message whose text contains `needle` (an id like `#3`, a URL, a user's words)."""
    return find(said, lambda m: needle in m.text, f"mentioning {needle!r}")


def course_ids(message: Said) -> list[int]:
    """Course ids of a message's `course:<id>[:…]` buttons (cards), in order."""
    return [int(p.split(":")[1]) for p in message.buttons if re.match(r"course:\d+(:|$)", p)]


async def learner_of(driver, person) -> Learner:
    """The learner behind a person on the driver's channel."""
    async with driver.app.uow() as uow:
        identity = await uow.session.scalar(
            select(Identity).where(
                Identity.channel == driver.channel, Identity.user_ref == person.user_ref
            )
        )
        assert identity is not None, f"no identity for {person.user_ref}"
        return await uow.session.get(Learner, identity.learner_id)


async def buy(driver, person, course_id: int = 1) -> tuple[str, list[Said]]:
    """Open a course by deep link, press buy, pay: returns the charge id and the replies."""
    card = mentioning(await person.say(f"/start course_{course_id}"), f"#{course_id}")
    assert f"buy:{course_id}" in card.buttons
    invoice = find(await person.press(f"buy:{course_id}"), lambda m: m.invoice, "with invoice")
    return await person.pay(invoice)


# ----------------------------------------------------------------------------- scripts


async def test_start(driver):
    """/start greets with the home menu and creates the learner on this channel."""
    person = driver.learner(1, locale="en", name="Li")
    if not driver.tells_profile:  # WeChat: no name, no language; the default locale
        person = driver.learner(1, locale=driver.app.settings.default_locale, name="Li")
    home = find(await person.say("/start"), lambda m: m.buttons, "with buttons")
    assert {"cats", "mine"} <= set(home.buttons)
    learner = await learner_of(driver, person)
    if driver.tells_profile:
        assert learner.display_name == "Li" and learner.locale == "en"
    else:
        assert (learner.display_name, learner.locale) == ("", driver.app.settings.default_locale)


async def test_deep_link_opens_the_course_card(driver):
    """/start course_3 opens course #3 with its buy button."""
    person = driver.learner(1)
    card = mentioning(await person.say("/start course_3"), "#3")
    assert "buy:3" in card.buttons
    missing = await person.say("/start course_9999")
    assert missing and not any(p.startswith("buy:") for m in missing for p in m.buttons)


async def test_catalog_categories_courses_card(driver):
    """/catalog lists the categories on sale; a category its courses; a course its card."""
    person = driver.learner(1)
    courses = await rows(driver, Course, Course.active.is_(True))
    on_sale = {c.category_id for c in courses}
    menu = find(await person.say("/catalog"), lambda m: m.buttons, "with categories")
    categories = [int(p.split(":")[1]) for p in menu.buttons if p.startswith("cat:")]
    assert set(categories) == on_sale
    first = categories[0]
    page = offering(await person.press(f"cat:{first}:0"), "cats")
    listed = course_ids(page)
    assert listed and set(listed) <= {c.id for c in courses if c.category_id == first}
    card = mentioning(await person.press(f"course:{listed[0]}"), f"#{listed[0]}")
    assert f"buy:{listed[0]}" in card.buttons


async def test_search(driver):
    """Chinese and English words find the right courses; plain words are a search too."""
    person = driver.learner(1, locale="zh")
    first = find(await person.say("/search Python 入门"), course_ids, "with results")
    assert course_ids(first)[0] == 1
    python = find(await person.say("/search python"), course_ids, "with results")
    assert {1, 6} <= set(course_ids(python))
    photo = await rows(driver, Course, Course.title_zh.contains("摄影"))
    found = find(await person.say("摄影"), course_ids, "with results")
    assert {c.id for c in photo} & set(course_ids(found))
    nothing = await person.say("/search qwxzvk")
    assert nothing and not any(course_ids(m) for m in nothing)


async def test_buy_and_pay(driver):
    """buy → invoice for the open order in the channel's currency → pay → paid and enrolled."""
    person = driver.learner(1)
    await person.say("/start course_1")
    message = find(await person.press("buy:1"), lambda m: m.invoice, "with invoice")
    invoice = message.invoice
    learner = await learner_of(driver, person)
    (order,) = await rows(driver, Order, Order.learner_id == learner.id)
    assert (order.course_id, order.status) == (1, "pending")
    assert (invoice.currency, invoice.amount) == (driver.currency, order.amount)
    assert str(order.id) in invoice.payload
    charge, said = await person.pay(message)
    offering(said, "mine")
    (payment,) = await rows(driver, Payment)
    assert (payment.provider_charge_id, payment.status) == (charge, "paid")
    assert (payment.channel, payment.user_ref) == (driver.channel, person.user_ref)
    assert (payment.course_id, payment.amount) == (1, order.amount)
    assert [(e.learner_id, e.course_id) for e in await rows(driver, Enrolment)] == [
        (learner.id, 1)
    ]
    (order,) = await rows(driver, Order, Order.id == order.id)
    assert order.status == "paid"


async def test_duplicate_payment_enrols_once(driver):
    """The same charge reported twice: one payment, one enrolment, nothing refunded."""
    person = driver.learner(1)
    charge, _ = await buy(driver, person, 2)
    again = await person.pay_again(charge)
    if driver.repeat_charge_heard:
        assert again, "the learner hears about the repeated payment"
    else:  # the same notification again is the same update: the learner is not told twice
        assert again == [], [m.text for m in again]
    assert len(await rows(driver, Payment)) == 1
    assert [e.course_id for e in await rows(driver, Enrolment)] == [2]
    assert driver.refunds == []


async def test_mycourses(driver):
    """/mycourses lists nothing before buying and the bought course after."""
    person = driver.learner(1)
    before = await person.say("/mycourses")
    assert not any(1 in course_ids(m) and "#1" in m.text for m in before)
    await buy(driver, person, 1)
    mine = mentioning(await person.say("/mycourses"), "#1")
    assert 1 in course_ids(mine)


async def test_schedule_and_reminders(driver):
    """An admin schedules a session; its reminder and start link reach the enrolled learner."""
    person = driver.learner(1)
    await buy(driver, person, 1)
    admin = driver.admin()
    said = await admin.say("/schedule 1 2026-11-25T20:00 https://live.example/s1 Week 1")
    (session,) = await rows(driver, LiveSession)
    assert (session.course_id, session.url) == (1, "https://live.example/s1")
    mentioning(said, f"#{session.id}")
    learner = await learner_of(driver, person)
    planned = {r.kind: r for r in await rows(driver, Reminder, Reminder.learner_id == learner.id)}
    assert {"before-86400", "start"} <= set(planned)
    jobs.bind(driver.app)
    person.inbox()
    for kind in ("before-86400", "start"):
        driver.clock.moment = planned[kind].due_at
        await jobs.session_notice(session.id, kind)
        await jobs.session_notice(session.id, kind)  # a double fire sends once
        await driver.deliver_outbox()
        got = person.inbox()
        assert len(got) == 1, [m.text for m in got]
        if kind == "start":
            assert "https://live.example/s1" in got[0].text
    statuses = {r.kind: r.status for r in await rows(driver, Reminder)}
    assert statuses["before-86400"] == statuses["start"] == "sent"


async def test_rate_in_three_steps_and_review(driver):
    """/rate walks content, instructor, interaction; the rating and the review are stored."""
    person = driver.learner(1)
    await buy(driver, person, 1)
    said = await person.say("/rate")
    for stars in (5, 4, 3):
        step = find(said, lambda m, s=stars: any(p.endswith(f":{s}") for p in m.buttons), "step")
        said = await person.press(next(p for p in step.buttons if p.endswith(f":{stars}")))
    (rating,) = await rows(driver, Rating)
    assert (rating.course_id, rating.content, rating.instructor, rating.interaction) == (
        1,
        5,
        4,
        3,
    )
    assert rating.score is not None
    await person.say("Clear and well paced")
    (rating,) = await rows(driver, Rating)
    assert rating.review == "Clear and well paced"


async def test_ask_and_answer(driver):
    """A question reaches the admin with its id; the admin's answer reaches the learner."""
    person = driver.learner(1)
    await buy(driver, person, 1)
    admin = driver.admin()
    await admin.say("/start")
    said = await person.say("/ask Will the zebra mascot appear in lesson seven?")
    faq = [m for m in said if any(p.startswith("qsend:") for p in m.buttons)]
    if faq:  # an FAQ entry matched: ask the instructor anyway
        said = await person.press(next(p for p in faq[0].buttons if p.startswith("qsend:")))
    (question,) = await rows(driver, Question)
    assert (question.course_id, question.status) == (1, "open")
    mentioning(said, f"#{question.id}")
    await driver.deliver_outbox()
    forwarded = mentioning(admin.inbox(), f"#{question.id}")
    assert "zebra mascot" in forwarded.text
    await admin.say(f"/answer {question.id} Yes, in week two.")
    (question,) = await rows(driver, Question)
    assert (question.status, question.answer) == ("answered", "Yes, in week two.")
    await driver.deliver_outbox()
    mentioning(person.inbox(), "Yes, in week two.")


async def test_recommend(driver):
    """/recommend suggests active courses the learner does not own."""
    person = driver.learner(1)
    await buy(driver, person, 1)
    suggested = find(await person.say("/recommend"), course_ids, "with suggestions")
    active = {c.id for c in await rows(driver, Course, Course.active.is_(True))}
    assert 1 not in course_ids(suggested) and set(course_ids(suggested)) <= active


async def test_announce_reaches_learners_but_not_opted_out(driver):
    """/announce all reaches every learner except one who sent /stop."""
    keen, quiet = driver.learner(1), driver.learner(2)
    await keen.say("/start")
    await quiet.say("/stop")
    admin = driver.admin()
    await admin.say("/announce all The spring term opens on Monday")
    (broadcast,) = await rows(driver, Broadcast)
    assert broadcast.course_id is None
    await driver.deliver_outbox()
    mentioning(keen.inbox(), "spring term")
    assert not [m for m in quiet.inbox() if "spring term" in m.text]


async def test_refund(driver):
    """/refund gives the charge back through the channel and revokes the enrolment."""
    person = driver.learner(1)
    charge, _ = await buy(driver, person, 1)
    (payment,) = await rows(driver, Payment)
    admin = driver.admin()
    asked = offering(await admin.say(f"/refund {payment.id}"), f"rfy:{payment.id}")
    assert f"#{payment.id}" in asked.text and driver.refunds == [], "asks before refunding"
    said = await admin.press(f"rfy:{payment.id}")
    mentioning(said, f"#{payment.id}")
    assert driver.refunds == [charge]
    (payment,) = await rows(driver, Payment)
    assert payment.status == "refunded"
    assert await rows(driver, Enrolment) == []
    await driver.deliver_outbox()
    assert person.inbox(), "the learner is told about the refund"
    await admin.say(f"/refund {payment.id}")  # twice: nothing more is refunded
    await admin.press(f"rfy:{payment.id}")
    assert driver.refunds == [charge]


async def test_admin_commands_are_refused_to_learners(driver):
    """A learner's /refund, /announce and /schedule change nothing."""
    person = driver.learner(1)
    await buy(driver, person, 1)
    (payment,) = await rows(driver, Payment)
    for command in (
        f"/refund {payment.id}",
        "/announce all spam",
        "/schedule 1 2026-11-25T20:00 https://live.example/x",
    ):
        assert await person.say(command), f"{command} gets an answer"
    (payment,) = await rows(driver, Payment)
    assert payment.status == "paid" and driver.refunds == []
    assert await rows(driver, Broadcast) == [] and await rows(driver, LiveSession) == []
    assert len(await rows(driver, Enrolment)) == 1


async def test_language_switch(driver):
    """A zh learner picks English: stored, and later replies are in English."""
    person = driver.learner(1, locale="zh")
    help_zh = " ".join(m.text for m in await person.say("/help"))
    picker = offering(await person.say("/language"), "lang:en")
    assert "lang:zh" in picker.buttons
    await person.press("lang:en")
    assert (await learner_of(driver, person)).locale == "en"
    help_en = " ".join(m.text for m in await person.say("/help"))
    # Language names (中文 / English) may stay as they are; the rest changes language.
    assert len(CJK.findall(help_en)) * 5 < len(CJK.findall(help_zh)), help_en


@pytest.mark.parametrize("locale", ["zh", "en"])
async def test_whole_journey_in_either_language(driver, locale):
    """start → catalog → card → buy → pay → mycourses, in the learner's language."""
    person = driver.learner(1, locale=locale)
    await person.say("/start")
    menu = find(await person.press("cats"), lambda m: m.buttons, "with categories")
    category = next(p for p in menu.buttons if p.startswith("cat:"))
    page = find(await person.press(category), course_ids, "with courses")
    course = course_ids(page)[0]
    mentioning(await person.press(f"course:{course}"), f"#{course}")
    invoice = find(await person.press(f"buy:{course}"), lambda m: m.invoice, "with invoice")
    await person.pay(invoice)
    mine = mentioning(await person.say("/mycourses"), f"#{course}")
    assert bool(CJK.search(mine.text)) == (locale == "zh")
