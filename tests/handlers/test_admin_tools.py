"""Issue 14's chat side: /help, lists that show each course once, richer cards, replays as
/sessions shows them, and the admin tools (/payments, confirmed /refund, /editcourse,
/withdraw, /category add, /cover, /addcourse that names the wrong field)."""

from __future__ import annotations

import re
from types import SimpleNamespace

from sqlalchemy import select

from bot.core import PaymentInfo
from handlers import build_router
from handlers.admin import cover
from services import live
from storage.models import Enrolment, Payment
from tests.handlers.support import Chat, collecting_channel, payloads, shown

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


async def pay(app, user_ref: str, course_id: int, charge: str) -> None:
    """A learner on the console channel buys a course with (test) Stars."""
    person = Chat(app, user_ref, name=f"Buyer {user_ref}")
    invoice = (await person.press(f"buy:{course_id}")).invoice
    info = PaymentInfo("XTR", invoice.amount, invoice.payload, charge_id=charge, provider="t")
    channel = collecting_channel(app, "console")
    await channel.receive(app, user_ref, locale="en", kind="pre_checkout", payment=info)
    await channel.receive(app, user_ref, locale="en", kind="payment", payment=info)
    channel.pop_all(user_ref)


async def payments(app) -> list[Payment]:
    async with app.uow() as uow:
        return list((await uow.session.execute(select(Payment).order_by(Payment.id))).scalars())


# ----------------------------------------------------------------------------- /help


async def test_help_describes_every_registered_command_and_admin_ones_only_to_admins(app):
    router = build_router()
    admin_help = (await Chat(app, "me", name="Admin").send("/help")).text
    for name, _admin in router.help:
        line = next((ln for ln in admin_help.splitlines() if ln.startswith(f"/{name} ")), None)
        assert line is not None, f"/{name} is missing from /help"
        assert re.fullmatch(rf"/{name} — \S.*", line), f"/{name} has no description: {line!r}"
    learner_help = (await Chat(app, "u1").send("/help")).text
    shown_to_learner = set(re.findall(r"^/(\w+)", learner_help, re.M))
    admin_only = {name for name, admin in router.help if admin}
    assert shown_to_learner and not shown_to_learner & admin_only
    assert not shown_to_learner & {"answer", "questions", "faq"}, "instructor tools are hidden"
    assert {"catalog", "search", "mycourses", "ask", "rate"} <= shown_to_learner


# ----------------------------------------------------------------------------- lists


async def test_a_search_reply_lists_each_result_once_with_id_price_and_next_session(app):
    admin = Chat(app, "me", name="Admin")
    said = await admin.send("/schedule 1 2026-11-25T20:00 https://live.example/s1 Week 1")
    assert "Scheduled session" in said.text
    found = await Chat(app, "u1").send("/search python")
    ids = [int(p.split(":")[1]) for p in payloads(found) if p.startswith("course:")]
    assert ids and len(ids) == len(set(ids)), "each course has one option"
    assert "#" not in found.text and "Python" not in found.text, "the options are the list"
    first = found.buttons[0][0].label
    assert first.startswith("#1 Python for Beginners · 150 ⭐")
    assert "📅 11-25 20:00" in first, "the next session, in the learner's time (CST)"
    for course_id in ids:
        assert len(re.findall(rf"#{course_id}\b", shown(found))) == 1


async def test_recommendations_and_category_pages_list_each_course_once(app):
    person = Chat(app, "u2")
    picks = await person.send("/recommend")
    ids = [p.split(":")[1] for p in payloads(picks) if p.startswith("course:")]
    assert ids and len(ids) == len(set(ids))
    assert "#" not in picks.text
    labels = [b.label for row in picks.buttons for b in row]
    assert all(re.match(r"#\d+ .+ · \d+ ⭐ — \S", label) for label in labels), labels
    assert all(len(label) <= 64 for label in labels), "Telegram shows 64 characters of a button"
    page = await person.press("cat:1:0")
    assert "#" not in page.text
    assert all(b.label.startswith(f"#{b.payload.split(':')[1]} ") for b in page.buttons[0])


# ----------------------------------------------------------------------------- cards


async def test_a_card_shows_both_prices_the_instructors_bio_and_the_cover(app):
    admin = Chat(app, "me", name="Admin")
    said = await admin.send("/editcourse 1 bio Taught Python for ten years")
    assert "Course #1" in said.text
    admin_id = await admin.learner_id()
    async with app.uow() as uow:
        msg = SimpleNamespace(args="1", image=PNG, channel="console", user_ref="me")
        learner = await uow.learners.get(admin_id)
        said = await cover(msg, uow, learner, _t(), app.settings, app.clock)
        assert "new cover" in said.text
        await uow.commit()
    card = await Chat(app, "u3").press("course:1")
    assert "Price: 150 ⭐ (or CN¥199.00)" in card.text
    assert "Wang Lei — Taught Python for ten years" in card.text
    assert card.image == PNG
    assert "Now send the picture" in (await admin.send("/cover 1")).text, "no photo: ask"
    assert "Send a photo" in (await admin.send("/cover")).text, "no id: usage"
    assert "no cover" in (await admin.send("/cover 1 off")).text
    assert (await Chat(app, "u3").press("course:1")).image is None


def _t():
    from bot.i18n import Translator

    return Translator("en", None)


async def test_replays_announced_to_a_new_learner_match_what_sessions_shows(app, clock):
    admin = Chat(app, "me", name="Admin")
    said = await admin.send("/schedule 1 2026-11-25T20:00 https://live.example/s1 Week 1")
    session_id = int(re.search(r"session #(\d+)", said.text).group(1))
    await admin.send(f"/replay {session_id} https://replay.example/1")
    learner = Chat(app, "u4")
    listing = await learner.send("/sessions 1")
    async with app.uow() as uow:
        plan = await live.plan_for_new_learner(uow, clock.now(), await learner.learner_id(), 1)
    assert plan.replays == 0 and "(replay)" not in listing.text, "not over yet: no replay"
    clock.advance(days=3)
    listing = await learner.send("/sessions 1")
    async with app.uow() as uow:
        plan = await live.plan_for_new_learner(uow, clock.now(), await learner.learner_id(), 1)
    assert plan.replays == 1 and listing.text.count("(replay)") == 1


# ----------------------------------------------------------------------------- payments


async def test_payments_lists_recent_payments_with_ids_and_refund_asks_first(app):
    await pay(app, "b1", 1, "ch-1")
    await pay(app, "b2", 2, "ch-2")
    p1, p2 = await payments(app)
    admin = Chat(app, "me", name="Admin")
    listing = await admin.send("/payments")
    assert f"#{p1.id} · " in listing.text and f"#{p2.id} · " in listing.text
    assert "150 ⭐" in listing.text and "Buyer b1" in listing.text
    assert f"rfq:{p1.id}" in payloads(listing)
    only_course_2 = await admin.send("/payments 2")
    assert f"#{p2.id} · " in only_course_2.text and f"#{p1.id} · " not in only_course_2.text
    by_learner = await admin.send("/payments console:b1")
    assert f"#{p1.id} · " in by_learner.text and f"#{p2.id} · " not in by_learner.text
    assert f"#{p1.id} · " in (await admin.send("/payments Buyer b1")).text
    assert "No learner matches" in (await admin.send("/payments nobody-like-this")).text

    asked = await admin.send(f"/refund {p1.id}")
    assert "Refund payment" in asked.text and f"rfy:{p1.id}" in payloads(asked)
    assert (await payments(app))[0].status == "paid", "nothing happens before confirming"
    assert "was not refunded" in (await admin.press(f"rfn:{p1.id}")).text
    done = await admin.press(f"rfy:{p1.id}")
    assert f"Refunded payment #{p1.id} (150 ⭐)" in done.text
    assert collecting_channel(app, "console").refunds == [("b1", "ch-1")]
    again = await admin.press(f"rfy:{p1.id}")
    assert "already refunded" in again.text and "can't be refunded" not in again.text
    assert "already refunded" in (await admin.send(f"/refund {p1.id}")).text
    assert collecting_channel(app, "console").refunds == [("b1", "ch-1")]
    async with app.uow() as uow:
        enrolled = (await uow.session.execute(select(Enrolment.course_id))).scalars().all()
    assert enrolled == [2]
    assert "&lt;payment_id&gt;" in (await admin.send("/refund")).text


async def test_a_learner_cannot_list_or_confirm_refunds(app):
    await pay(app, "b3", 1, "ch-3")
    (p,) = await payments(app)
    learner = Chat(app, "b3")
    assert "only admins" in (await learner.send("/payments")).text
    assert "only admins" in (await learner.press(f"rfy:{p.id}")).text
    assert (await payments(app))[0].status == "paid"


# ----------------------------------------------------------------------------- courses


async def test_editcourse_changes_one_checked_field(app):
    admin = Chat(app, "me", name="Admin")
    assert "is now “120”" in (await admin.send("/editcourse 1 stars 120")).text
    assert "whole number of Stars" in (await admin.send("/editcourse 1 stars lots")).text
    assert "e.g. 199" in (await admin.send("/editcourse 1 cny ¥¥")).text
    wrong_category = (await admin.send("/editcourse 1 category nope")).text
    assert "programming" in wrong_category and "no category" in wrong_category
    assert "Fields:" in (await admin.send("/editcourse 1 colour red")).text
    assert "There is no course #999" in (await admin.send("/editcourse 999 stars 1")).text
    await admin.send("/editcourse 1 title_en Python from Zero")
    card = await Chat(app, "u5").press("course:1")
    assert "Python from Zero" in card.text and "120 ⭐" in card.text


async def test_withdraw_takes_a_course_off_sale_and_category_add_makes_a_new_one(app):
    admin = Chat(app, "me", name="Admin")
    assert "withdrawn" in (await admin.send("/withdraw 1")).text
    assert "already withdrawn" in (await admin.send("/withdraw 1")).text
    assert "not available" in (await Chat(app, "u6").press("course:1")).text
    found = await Chat(app, "u6").send("/search python")
    assert "course:1" not in payloads(found)
    assert "is now “yes”" in (await admin.send("/editcourse 1 active yes")).text
    assert "Python" in (await Chat(app, "u6").press("course:1")).text

    said = await admin.send("/category add design 设计 Graphic Design")
    assert "Category “design” added: 设计 / Graphic Design" in said.text
    assert "already a category" in (await admin.send("/category add design 设计 Design")).text
    assert "lowercase" in (await admin.send("/category add Bad_Slug 坏 Bad")).text
    assert "Usage: /category add &lt;slug&gt;" in (await admin.send("/category")).text
    added = await admin.send("/addcourse design|平面设计入门|Graphic Design 101|100|99|Li|Intro")
    assert "Added course #" in added.text


async def test_a_malformed_addcourse_names_the_wrong_field_and_lists_the_slugs(app):
    admin = Chat(app, "me", name="Admin")
    stars = (await admin.send("/addcourse programming|标题|Title|many|199|Li|d")).text
    assert "Field 4 (stars) is wrong" in stars and "programming" in stars
    yuan = (await admin.send("/addcourse programming|标题|Title|100|cheap|Li|d")).text
    assert "Field 5 (CNY) is wrong" in yuan
    slug = (await admin.send("/addcourse cooking|标题|Title|100|199|Li|d")).text
    assert "Field 1 (category) is wrong" in slug and "programming, data" in slug
    empty = (await admin.send("/addcourse programming||Title|100|199|Li|d")).text
    assert "Field 2 (title zh) is wrong: it is empty" in empty
    assert "7 fields separated by |, but got 2" in (await admin.send("/addcourse a|b")).text


async def test_stars_always_show_as_the_star_sign(app):
    await pay(app, "b4", 1, "ch-4")
    admin = Chat(app, "me", name="Admin")
    channel = collecting_channel(app, "console")
    figures = await channel.receive(app, "me", kind="command", command="stats", args="")
    payments = (await admin.send("/payments")).text
    for text in (figures[0].text, payments):
        assert "150 ⭐" in text and "XTR" not in text, text
