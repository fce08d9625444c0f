"""Issue 17: every typed or button-carried number goes through bot.parsing (ASCII digits, within
the column's range), and every admin field is checked with a message naming the wrong one.

All through the real dispatcher (a collecting channel): a handler that still read `int('²')` or
sent a 30-digit id to the database would answer "something went wrong" instead.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bot.parsing import (
    INT_MAX,
    parse_stars,
    parse_yuan,
    payload_id,
    payload_numbers,
)
from handlers.purchase import clip
from storage.models import Broadcast, Course, LiveSession
from tests.handlers.support import Chat

GENERIC = "something went wrong"
HUGE = "9" * 30
SUPERSCRIPT = "²"
ARABIC = "١٢"  # str.isdigit() is True and int() reads 12


def admin(app) -> Chat:
    return Chat(app, "me", name="Admin")


async def course_count(app) -> int:
    async with app.uow() as uow:
        return await uow.session.scalar(select(func.count()).select_from(Course))


async def newest_course(app) -> Course:
    async with app.uow() as uow:
        return await uow.session.scalar(select(Course).order_by(Course.id.desc()).limit(1))


def course_line(**fields: str) -> str:
    """An /addcourse line with the given fields replaced."""
    values = dict(
        category="programming",
        title_zh="标题",
        title_en="Title",
        stars="100",
        cny="199",
        instructor="Li",
        description="d",
    )
    values.update(fields)
    return "/addcourse " + "|".join(values.values())


# ----------------------------------------------------------------------------- the parsers


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("buy:42", 42),
        ("buy:#42", 42),
        ("buy:0", None),
        ("buy:²", None),
        (f"buy:{ARABIC}", None),
        (f"buy:{HUGE}", None),
        (f"buy:{INT_MAX + 1}", None),
        (f"buy:{2**64}", None),
        ("buy:-1", None),
        ("buy:1:2", None),
        ("buy", None),
    ],
)
def test_payload_id_takes_ascii_ids_in_column_range_only(payload, expected):
    assert payload_id(payload) == expected


def test_payload_numbers_and_prices():
    assert payload_numbers("rvw:3:0") == [3, 0]
    assert payload_numbers("rvw:3:²") is None
    assert payload_numbers(f"cat:1:{HUGE}") is None
    assert [parse_stars(s) for s in ("0", "1", "25000", "25001", "²", "１", HUGE)] == [
        None,
        1,
        25000,
        None,
        None,
        None,
        None,
    ]
    assert [parse_yuan(s) for s in ("199", "199.9", "¥0.01", "0", "１９９", "1e3", "nan")] == [
        19900,
        19990,
        1,
        None,
        None,
        None,
        None,
    ]


def test_invoice_titles_are_clipped_in_utf16_units_never_empty():
    assert clip("Python", 32) == "Python"
    assert clip("x" * 40, 32) == "x" * 31 + "…"
    emoji = clip("🐍" * 40, 32)  # each snake is 2 UTF-16 units
    assert emoji.endswith("…") and len(emoji.encode("utf-16-le")) // 2 <= 32
    assert clip("   ", 32) == "·"


# ----------------------------------------------------------------------------- learners


@pytest.mark.parametrize("tail", [SUPERSCRIPT, HUGE, ARABIC])
async def test_a_start_deep_link_with_a_bad_course_id_welcomes(app, tail):
    said = (await Chat(app, "u1").send(f"/start course_{tail}")).text
    assert GENERIC not in said and "Welcome" in said


@pytest.mark.parametrize("head", [f"#{SUPERSCRIPT}", f"#{HUGE}"])
async def test_ask_with_a_bad_course_tag_is_still_a_question(app, head):
    said = (await Chat(app, "u2").send(f"/ask {head} how do decorators work?")).text
    assert GENERIC not in said
    assert "question #" in said.lower() or "course" in said.lower()


@pytest.mark.parametrize("command", [f"/rate {SUPERSCRIPT}", f"/rate {HUGE}", "/rate x1"])
async def test_rate_with_a_bad_course_id_gets_its_usage_line(app, command):
    said = (await Chat(app, "u3").send(command)).text
    assert "Usage: /rate" in said


@pytest.mark.parametrize("number", [SUPERSCRIPT, HUGE, str(2**63), ARABIC])
async def test_a_reply_quoting_a_question_with_a_bad_number_is_plain_text(app, number):
    said = (await admin(app).reply("Use functools.wraps", f"❓ Question #{number} · Python")).text
    assert GENERIC not in said


@pytest.mark.parametrize(
    "payload",
    [
        f"buy:{SUPERSCRIPT}",
        f"buy:{HUGE}",
        f"buy:{2**64}",
        f"pay:{HUGE}",
        f"course:{HUGE}",
        f"course:1:{HUGE}",
        f"cat:1:{HUGE}",
        f"cat:{SUPERSCRIPT}:0",
        f"rvw:1:{HUGE}",
        f"rate:{HUGE}",
        f"rt:1:{SUPERSCRIPT}",
        f"askc:{HUGE}",
        f"askin:{HUGE}",
        f"cpn:{HUGE}",
        f"qok:{ARABIC}",
    ],
)
async def test_a_button_with_a_tampered_number_never_fails(app, payload):
    said = (await Chat(app, "u4").press(payload)).text
    assert said and GENERIC not in said


# ----------------------------------------------------------------------------- admins


async def test_payments_of_a_learner_id_beyond_the_column_finds_no_one(app):
    said = (await admin(app).send("/payments learner:99999999999")).text
    assert "No learner matches" in said
    assert "Usage: /payments" in (await admin(app).send(f"/payments learner:{SUPERSCRIPT}")).text


async def test_audit_with_a_bad_count_gets_its_usage_line(app):
    assert "Usage: /audit" in (await admin(app).send(f"/audit {SUPERSCRIPT}")).text
    assert "Usage: /audit" in (await admin(app).send("/audit many")).text
    assert GENERIC not in (await admin(app).send("/audit 100000")).text


@pytest.mark.parametrize(
    ("fields", "wrong"),
    [
        (dict(stars="0"), "Field 4 (stars) is wrong: a whole number of Stars from 1 to 25000"),
        (dict(stars=HUGE), "Field 4 (stars) is wrong"),
        (dict(stars=SUPERSCRIPT), "Field 4 (stars) is wrong"),
        (dict(stars="１００"), "Field 4 (stars) is wrong"),
        (dict(cny="0"), "Field 5 (CNY) is wrong: a price in yuan of at least 0.01"),
        (dict(cny="１９９"), "Field 5 (CNY) is wrong"),
        (dict(cny="1e9"), "Field 5 (CNY) is wrong"),
        (dict(cny=HUGE), "Field 5 (CNY) is wrong"),
        (dict(title_en=""), "Field 3 (title en) is wrong: it is empty"),
        (dict(title_zh="   "), "Field 2 (title zh) is wrong: it is empty"),
        (dict(title_en="x" * 129), "Field 3 (title en) is wrong: at most 128 characters"),
        (dict(instructor="y" * 500), "Field 6 (instructor) is wrong: at most 128 characters"),
        (dict(description="z" * 5000), "Field 7 (description) is wrong: at most 2000"),
    ],
)
async def test_addcourse_names_the_wrong_field_and_creates_nothing(app, fields, wrong):
    before = await course_count(app)
    said = (await admin(app).send(course_line(**fields))).text
    assert wrong in said, said
    assert "Usage: /addcourse" in said
    assert await course_count(app) == before


async def test_a_zh_admin_hears_the_wrong_field_in_chinese(app):
    said = (await Chat(app, "me", name="管理员", locale="zh").send(course_line(stars="0"))).text
    assert "1 到 25000 之间的整数个星星" in said


async def test_a_title_with_markup_is_stored_and_shown_literally(app):
    said = (await admin(app).send(course_line(title_en="<b>Bold</b> & Co"))).text
    assert "Added course #" in said and "&lt;b&gt;Bold&lt;/b&gt; &amp; Co" in said
    course = await newest_course(app)
    assert course.title_en == "<b>Bold</b> & Co"
    learner = Chat(app, "u5")
    card = await learner.press(f"course:{course.id}")
    assert "&lt;b&gt;Bold&lt;/b&gt; &amp; Co" in card.text and "<b>Bold</b> &" not in card.text
    invoice = (await learner.press(f"buy:{course.id}")).invoice
    assert invoice.title == "<b>Bold</b> & Co"  # invoices are plain text: shown as typed


async def test_a_long_stored_title_is_clipped_only_in_the_invoice(app):
    title = "Advanced Asynchronous Python Programming in Depth"  # 49 characters
    await admin(app).send(course_line(title_en=title, description=""))
    course = await newest_course(app)
    assert course.title_en == title
    invoice = (await Chat(app, "u6").press(f"buy:{course.id}")).invoice
    assert len(invoice.title) <= 32 and invoice.title.endswith("…")
    assert invoice.description == title and invoice.amount == 100


@pytest.mark.parametrize(
    ("field", "value", "wrong"),
    [
        ("stars", "0", "a whole number of Stars from 1 to 25000"),
        ("stars", SUPERSCRIPT, "a whole number of Stars"),
        ("stars", HUGE, "a whole number of Stars"),
        ("cny", "0", "at least 0.01"),
        ("cny", "１９９", "at least 0.01"),
        ("title_en", "t" * 5000, "at most 128 characters"),
        ("bio", "b" * 281, "at most 280 characters"),
        ("description", "d" * 2001, "at most 2000 characters"),
    ],
)
async def test_editcourse_refuses_a_bad_value_and_keeps_the_old_one(app, field, value, wrong):
    said = (await admin(app).send(f"/editcourse 1 {field} {value}")).text
    assert wrong in said, said
    async with app.uow() as uow:
        course = await uow.courses.get(1)
        assert course.price_stars == 150 and course.price_fen == 19900
        assert course.title_en == "Python for Beginners"


async def test_a_5000_character_session_title_is_refused(app, clock):
    title = "T" * 5000
    command = f"/schedule 1 2026-12-01T20:00 https://live.example/1 {title}"
    said = (await admin(app).send(command)).text
    assert "session title is too long (5000 characters, at most 128)" in said
    async with app.uow() as uow:
        assert not await uow.session.scalar(select(func.count()).select_from(LiveSession))
    ok = await admin(app).send("/schedule 1 2026-12-01T20:00 https://live.example/1 <i>Q&A</i>")
    assert "#1" in ok.text
    async with app.uow() as uow:
        session = await uow.session.scalar(select(LiveSession))
        assert session.title == "<i>Q&A</i>"


@pytest.mark.parametrize(
    "when", ["0001-01-01T10:00", "9999-12-31T10:00", f"2026-12-0{SUPERSCRIPT}T10:00"]
)
async def test_schedule_years_outside_the_window_get_the_usage_line(app, when):
    said = (await admin(app).send(f"/schedule 1 {when} https://live.example/1")).text
    assert "Usage: /schedule" in said


@pytest.mark.parametrize(
    "discount", [f"{SUPERSCRIPT}%", f"{HUGE}stars", "１０cny", "0%", "101%", "0stars"]
)
async def test_coupon_create_with_a_bad_discount_gets_its_usage_line(app, discount):
    said = (await admin(app).send(f"/coupon create SAVE {discount}")).text
    assert "Usage:" in said and "/coupon create CODE" in said


@pytest.mark.parametrize("extra", [f"#{HUGE}", HUGE, f"#{SUPERSCRIPT}", "5 - #²"])
async def test_coupon_create_with_a_bad_count_or_course_gets_its_usage_line(app, extra):
    said = (await admin(app).send(f"/coupon create SAVE 20% {extra}")).text
    assert "/coupon create CODE" in said


async def test_a_chinese_alias_with_a_bad_number_gets_the_commands_usage_line(app):
    learner = Chat(app, "u7", locale="zh")
    assert "用法：/rate" in (await learner.send(f"/评分 {SUPERSCRIPT}")).text
    assert "用法：/reviews" in (await learner.send(f"/评价列表 {HUGE}")).text


async def broadcasts(app) -> int:
    async with app.uow() as uow:
        return await uow.session.scalar(select(func.count()).select_from(Broadcast))


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ("all " + "x" * 4000, "too long (at most 3500 characters)"),
        (f"all hello at 2026-12-0{SUPERSCRIPT}T10:00", "Usage: /announce"),
        ("all hello at 0001-01-01T10:00", "Usage: /announce"),
        ("all hello at 2020-01-01T10:00", "already passed"),
        ("all hello at 9999-12-31T10:00", "Usage: /announce"),
        (f"{HUGE} hello", "Usage: /announce"),
        (f"#{SUPERSCRIPT} hello", "Usage: /announce"),
    ],
)
async def test_announce_refuses_bad_fields_and_sends_nothing(app, args, said):
    assert said in (await admin(app).send(f"/announce {args}")).text
    assert await broadcasts(app) == 0


@pytest.mark.parametrize("until", ["9999-12-31", "0001-01-01", "2026-02-30", "2020-01-01"])
async def test_coupon_create_with_a_date_outside_the_window_gets_its_usage_line(app, until):
    said = (await admin(app).send(f"/coupon create SAVE 20% 5 {until}")).text
    assert "/coupon create CODE" in said
    assert "SAVE" in (await admin(app).send("/coupon create SAVE 20% 5 2026-12-31")).text
