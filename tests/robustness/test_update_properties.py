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

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.bootstrap import build_app
from bot.channels.telegram_common import safe_html
from bot.core import Incoming, PaymentInfo, PreCheckoutAnswer, Reply
from bot.demo import seed_demo
from storage.models import Enrolment, Identity, KeyValue, Learner, Order, Payment
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
]
PREFIXES = ["buy", "course", "cat", "pay", "rate", "lang", "faq", "page", "sess", "rev", "x"]
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
