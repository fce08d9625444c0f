"""Property-based tests (Hypothesis) of the update path: arbitrary text, commands, button
payloads and payments never raise out of a handler, never produce text Telegram would refuse,
and never change another learner's data. Plus the concrete cases the fuzz run found.

Bounded: a few hundred examples in all, on one SQLite app (well under a minute)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot import parsing
from bot.bootstrap import build_app
from bot.channels.telegram_common import safe_html
from bot.core import Incoming, PaymentInfo, PreCheckoutAnswer, Reply
from bot.demo import seed_demo
from handlers.purchase import MAX_INVOICE_TITLE
from storage.models import Course, Enrolment, Identity, KeyValue, Learner, Order, Payment
from tests.conftest import FixedClock, make_settings
from tests.fakes.collecting import CollectingChannel
from tests.fakes.telegram_api import parse_html

ATTACKER, VICTIM = "666", "777"
_keys = itertools.count(1)


class Harness:
    """One app on one SQLite file, driven from a private event loop (Hypothesis is sync)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.dir = tempfile.TemporaryDirectory()
        url = f"sqlite+aiosqlite:///{Path(self.dir.name) / 'props.db'}"
        self.app = self.run(build_app(make_settings(url), clock=FixedClock()))
        self.channel = CollectingChannel("telegram")
        self.app.channels.add(self.channel)
        self.run(self._seed())
        self.failures: list[str] = []
        handler = logging.Handler()
        handler.emit = self._record  # type: ignore[method-assign]
        logging.getLogger("bot.core").addHandler(handler)
        self._handler = handler

    def _record(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.failures.append(record.getMessage())

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    async def _seed(self) -> None:
        async with self.app.uow() as uow:
            await seed_demo(uow)
        await self.dispatch(kind="command", command="start", user_ref=VICTIM)
        await self.dispatch(kind="button", payload="buy:1", user_ref=VICTIM)

    async def dispatch(self, user_ref: str = ATTACKER, **fields) -> list:
        msg = Incoming(
            channel="telegram", user_ref=user_ref, update_key=f"p:{next(_keys)}", **fields
        )
        return await self.app.dispatcher.dispatch(msg, durable=True)

    async def victim_state(self) -> tuple:
        async with self.app.uow() as uow:
            s = uow.session
            learner_id = await s.scalar(
                select(Identity.learner_id).where(Identity.user_ref == VICTIM)
            )
            rows = []
            for model, column in (
                (Enrolment, Enrolment.learner_id),
                (Order, Order.learner_id),
                (Payment, Payment.learner_id),
            ):
                found = await s.execute(select(model).where(column == learner_id))
                rows.append(sorted(repr(vars(r).get("id")) for r in found.scalars()))
            learner = await s.get(Learner, learner_id)
            kv = await s.execute(
                select(KeyValue.key).where(
                    KeyValue.key.endswith(f":{learner_id}"), ~KeyValue.key.startswith("replies:")
                )
            )
            return (
                learner.display_name,
                learner.locale,
                tuple(map(tuple, rows)),
                tuple(kv.scalars()),
            )

    def close(self) -> None:
        logging.getLogger("bot.core").removeHandler(self._handler)
        self.run(self.app.close())
        self.loop.close()
        self.dir.cleanup()


@pytest.fixture(scope="module")
def harness():
    h = Harness()
    yield h
    h.close()


def check(outputs: list) -> None:
    for output in outputs:
        if isinstance(output, Reply) and output.text:
            parse_html(safe_html(output.text))  # raises on what Telegram would refuse
        assert isinstance(output, Reply | PreCheckoutAnswer)


COMMANDS = [
    "start",
    "help",
    "catalog",
    "search",
    "mycourses",
    "recommend",
    "ask",
    "rate",
    "language",
    "stop",
    "mydata",
    "addcourse",
    "schedule",
    "announce",
    "answer",
    "refund",
    "stats",
    "faq",
    "reviews",
    "sessions",
    "reschedule",
    "cancelsession",
    "replay",
    "coupon",
    "export",
    "payments",
    "editcourse",
    "withdraw",
    "audit",
    "instructor",
    "课程",
    "评分",
]
PREFIXES = ["buy", "course", "cat", "pay", "rate", "lang", "faq", "page", "sess", "rev", "x"]
PREFIXES += ["askin", "askc", "cpn", "qok", "qans", "rt", "rvw", "rfq", "rfy", "rfn"]
NUMBERISH = st.sampled_from(
    ["0", "-1", "²", "٣", "１２", "9" * 30, "2147483648", "#1", "1", "3", "9223372036854775808"]
)
ARG = st.one_of(NUMBERISH, st.text(max_size=40), st.just("0001-01-01T00:00"), st.just("<b>"))
ARGS = st.lists(ARG, max_size=4).map(" ".join)
FAST = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)


@FAST
@given(command=st.sampled_from(COMMANDS), args=ARGS, admin=st.booleans())
def test_commands_with_any_arguments(harness, command, args, admin):
    harness.failures.clear()
    before = harness.run(harness.victim_state())
    user = "900001" if admin else ATTACKER
    outputs = harness.run(harness.dispatch(user, kind="command", command=command, args=args))
    check(outputs)
    assert not harness.failures, harness.failures
    if not admin:
        assert harness.run(harness.victim_state()) == before


@FAST
@given(
    payload=st.one_of(
        st.tuples(st.sampled_from(PREFIXES), st.lists(ARG, max_size=3)).map(
            lambda p: ":".join([p[0], *p[1]])
        ),
        st.text(max_size=64),
    ),
    text=st.text(max_size=200),
)
def test_buttons_and_text_never_fail(harness, payload, text):
    harness.failures.clear()
    before = harness.run(harness.victim_state())
    check(harness.run(harness.dispatch(kind="button", payload=payload[:64])))
    check(harness.run(harness.dispatch(kind="text", text=text)))
    assert not harness.failures, harness.failures
    assert harness.run(harness.victim_state()) == before


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(
    amount=st.integers(min_value=-(2**70), max_value=2**70),
    currency=st.sampled_from(["XTR", "CNY", "USD", ""]),
    payload=st.one_of(
        st.text(max_size=40), st.sampled_from(["order:1", "order:²", "order:" + "9" * 30])
    ),
)
def test_payments_and_pre_checkouts_are_always_answered_and_recorded(
    harness, amount, currency, payload
):
    harness.failures.clear()
    before = harness.run(harness.victim_state())
    info = PaymentInfo(currency, amount, payload, query_id="q", provider="telegram_stars")
    answers = harness.run(harness.dispatch(kind="pre_checkout", payment=info))
    assert any(isinstance(a, PreCheckoutAnswer) for a in answers)
    charge = f"charge-{next(_keys)}"
    paid = PaymentInfo(currency, amount, payload, charge_id=charge, provider="telegram_stars")
    check(harness.run(harness.dispatch(kind="payment", payment=paid)))
    assert not harness.failures, harness.failures
    assert harness.run(harness.victim_state())[2][0] == before[2][0]  # enrolments unchanged


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("refund", "²"),
        ("answer", "9" * 30 + " hi"),
        ("faq", "²"),
        ("sessions", "9" * 30),
        ("schedule", "1 0001-01-01T10:00 https://x.org t"),
        ("schedule", "1 9999-01-01T10:00 https://x.org t"),
        ("announce", "all hello at 2026-13-45T99:99"),
        ("announce", "all hello at 2020-01-01T10:00"),
        ("announce", "9" * 30 + " hello"),
    ],
)
def test_concrete_admin_cases_are_refused_cleanly(harness, command, args):
    harness.failures.clear()
    outputs = harness.run(harness.dispatch("900001", kind="command", command=command, args=args))
    check(outputs)
    assert not harness.failures, harness.failures
    assert outputs and all(isinstance(o, Reply) and o.text for o in outputs)
    texts = " ".join(o.text for o in outputs)
    assert "queued" not in texts.lower() and "已排队" not in texts


# ----------------------------------------------------------------------------- the parsers

_ASCII = st.text(alphabet="0123456789", min_size=1, max_size=25)
NUMBER_TEXT = st.one_of(_ASCII, NUMBERISH, st.text(max_size=25), _ASCII.map(lambda d: "#" + d))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=NUMBER_TEXT, lo=st.integers(0, 10), hi=st.integers(0, 2**64))
def test_parse_int_takes_ascii_numbers_within_range_only(text, lo, hi):
    value = parsing.parse_int(text, lo, hi)
    digits = text.strip().removeprefix("#")
    if value is None:
        ok = digits.isascii() and digits.isdigit() and len(digits) <= 19
        assert not ok or not lo <= int(digits) <= hi
    else:
        assert digits.isascii() and int(digits) == value and lo <= value <= hi


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    text=NUMBER_TEXT,
    payload=st.lists(NUMBER_TEXT, max_size=3).map(lambda p: ":".join(["x", *p])),
)
def test_parsers_never_raise_and_stay_in_column_range(text, payload):
    for found in (parsing.parse_id(text), parsing.payload_id(payload)):
        assert found is None or 1 <= found <= parsing.INT_MAX
    numbers = parsing.payload_numbers(payload)
    assert numbers is None or all(0 <= n <= parsing.INT_MAX for n in numbers)
    stars = parsing.parse_stars(text)
    assert stars is None or 1 <= stars <= parsing.MAX_STARS
    fen = parsing.parse_yuan(text)
    assert fen is None or 1 <= fen < parsing.MAX_YUAN * 100
    parsing.parse_local_datetime(text, ZoneInfo("Asia/Shanghai"))


# ----------------------------------------------------------------------------- admin fields

FIELD = st.one_of(
    NUMBERISH,
    st.text(max_size=30),
    st.just("<b>x</b>"),
    st.text(min_size=120, max_size=140),
    st.sampled_from(["programming", "199", "199.9", "0.01", "150", "25000", "25001"]),
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(fields=st.lists(FIELD, min_size=7, max_size=7))
def test_addcourse_never_fails_and_only_stores_sellable_courses(harness, fields):
    """Whatever the fields: no handler failure, and a course created has a title of 1-128
    characters in both languages, 1-25000 Stars and at least 1 fen; its invoice title fits
    Telegram's 32."""
    harness.failures.clear()
    fields[0] = "programming" if fields[0] == "199" else fields[0]
    args = "|".join(f.replace("|", "/") for f in fields)
    outputs = harness.run(
        harness.dispatch("900001", kind="command", command="addcourse", args=args)
    )
    check(outputs)
    assert not harness.failures, harness.failures
    course = harness.run(_newest_course(harness))
    assert 1 <= len(course.title_zh.strip()) <= 128 and 1 <= len(course.title_en.strip()) <= 128
    assert 1 <= course.price_stars <= parsing.MAX_STARS and course.price_fen >= 1
    if any("Added course" in o.text for o in outputs if isinstance(o, Reply)):
        buyer = f"buyer-{next(_keys)}"
        invoice = harness.run(harness.dispatch(buyer, kind="button", payload=f"buy:{course.id}"))
        [reply] = [o for o in invoice if isinstance(o, Reply)]
        title = reply.invoice.title
        assert title and len(title.encode("utf-16-le")) // 2 <= MAX_INVOICE_TITLE


async def _newest_course(harness) -> Course:
    async with harness.app.uow() as uow:
        return await uow.session.scalar(select(Course).order_by(Course.id.desc()).limit(1))


@FAST
@given(
    field=st.sampled_from(["title_zh", "title_en", "stars", "cny", "bio", "description", "x"]),
    value=FIELD,
)
def test_editcourse_never_fails_and_keeps_courses_sellable(harness, field, value):
    harness.failures.clear()
    args = f"2 {field} {value}"
    outputs = harness.run(
        harness.dispatch("900001", kind="command", command="editcourse", args=args)
    )
    check(outputs)
    assert not harness.failures, harness.failures

    async def course_2() -> Course:
        async with harness.app.uow() as uow:
            return await uow.courses.get(2)

    course = harness.run(course_2())
    assert course.price_stars >= 1 and course.price_fen >= 1
    assert 1 <= len(course.title_en) <= 128 and 1 <= len(course.title_zh) <= 128
