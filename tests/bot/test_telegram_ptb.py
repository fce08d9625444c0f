"""The python-telegram-bot runtime over HTTP against the fake Bot API: what differs from aiogram.

The learner journeys run for PTB in tests/conversations; here: confirm-after-commit with a crash
between receive and commit, pre-checkout beside a slow handler, the webhook, error mapping, and
what PTB must not bring (JobQueue, persistence, rate limiter, its Updater).
"""

from __future__ import annotations

import asyncio
import warnings

import aiohttp
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from bot.bootstrap import build_app
from bot.channels import configured_channels
from bot.channels.telegram_ptb import PtbChannel, UpdateTracker
from bot.core import ChannelError, RateLimited, RejectedMessage, Reply, Unreachable
from bot.demo import seed_demo
from bot.runner import start_channels
from bot.settings import Settings
from storage.models import Enrolment, InboxEntry, Payment
from tests.conftest import free_port, make_settings
from tests.fakes.telegram_api import has


async def start_ptb_app(db_url: str, clock, tg, lanes: int | None = None, **overrides):
    """The app with the real PTB channel polling (or webhook) against the fake server."""
    settings = make_settings(
        db_url,
        telegram_bot_token=tg.token,
        telegram_api_url=tg.base_url,
        telegram_runtime="ptb",
        **overrides,
    )
    app = await build_app(settings, clock=clock)
    async with app.uow() as uow:
        await seed_demo(uow)
    (channel,) = configured_channels(app)
    assert isinstance(channel, PtbChannel)
    if lanes is not None:
        channel = PtbChannel(app, lanes=lanes)
    await start_channels(app, [channel])
    return app, channel


@pytest.fixture
async def ptb_app(sqlite_url, clock, tg):
    """The app serving Telegram through PTB by long polling, on SQLite."""
    app, channel = await start_ptb_app(sqlite_url, clock, tg)
    yield app, channel
    await channel.stop()
    await app.close()


async def count(app, model, *where) -> int:
    """Rows of `model` in the app's database."""
    async with app.uow() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(model).where(*where)))


def pending_ids(tg) -> set[int]:
    """Update ids the fake still holds (not confirmed)."""
    return {u["update_id"] for u in tg.pending_updates}


class StallFirstCommit:
    """A unit-of-work factory whose first commit never returns: a process frozen (then killed)
    after it received an update and wrote its rows, before the transaction committed."""

    def __init__(self, factory) -> None:
        self.factory = factory
        self.stalled = asyncio.Event()
        self.armed = True

    def __call__(self):
        uow = self.factory()
        commit = uow.commit

        async def stalling_commit() -> None:
            if self.armed:
                self.armed = False
                self.stalled.set()
                await asyncio.Event().wait()  # until the "kill" cancels us
            await commit()

        uow.commit = stalling_commit
        return uow


async def test_kill_between_receive_and_commit_redelivers(sqlite_url, clock, tg):
    """Killed mid-transaction: the update stays unconfirmed, the next process handles it once."""
    app, channel = await start_ptb_app(sqlite_url, clock, tg)
    try:
        stall = StallFirstCommit(app.dispatcher.uow_factory)
        app.dispatcher.uow_factory = stall
        user = tg.user(2001, language_code="en")
        update = await user.send("/help")
        await asyncio.wait_for(stall.stalled.wait(), 5)
        await channel.abort()  # the crash
        assert update["update_id"] in pending_ids(tg)
        assert not tg.messages_for(user.id)
        assert await count(app, InboxEntry) == 0  # rolled back
        restarted = PtbChannel(app)  # the next process
        app.channels.add(restarted)
        await restarted.start()
        try:
            await user.wait_for_message(has("Commands"))
            await tg.wait_until(lambda: update["update_id"] not in pending_ids(tg))
        finally:
            await restarted.stop()
        helps = [m for m in tg.messages_for(user.id) if "Commands" in m["text"]]
        assert len(helps) == 1
        assert await count(app, InboxEntry) == 1
    finally:
        await app.close()


async def test_failed_processing_is_retried_and_confirmed_after(ptb_app, tg):
    """An update whose dispatch raises is not confirmed; the retry handles it, then confirms."""
    app, _ = ptb_app
    real = app.dispatcher.dispatch
    calls = []

    async def flaky(msg, **kw):
        calls.append(msg.update_key)
        if len(calls) == 1:
            raise ConnectionError("database went away")
        return await real(msg, **kw)

    app.dispatcher.dispatch = flaky
    user = tg.user(2002, language_code="en")
    update = await user.send("/help")
    await tg.wait_until(lambda: calls, what="a first attempt")
    assert update["update_id"] in pending_ids(tg)
    await user.wait_for_message(has("Commands"))
    await tg.wait_until(lambda: update["update_id"] not in pending_ids(tg))
    assert calls == [f"tg:{update['update_id']}"] * 2


@pytest.mark.parametrize("lanes", [None, 4])
async def test_pre_checkout_does_not_wait_for_a_slow_handler(sqlite_url, clock, tg, lanes):
    """One learner's slow update never holds another's pre-checkout; with several lanes (the
    PostgreSQL default) not their payment either. Nothing after the slow one is confirmed."""
    app, channel = await start_ptb_app(sqlite_url, clock, tg, lanes=lanes)
    try:
        buyer = tg.user(2003, language_code="en")
        await buyer.send("/start course_2")
        await buyer.wait_for_message(has("#2"))
        await buyer.press("buy:2")
        await buyer.wait_for_message(lambda m: "invoice" in m)
        real, release = app.dispatcher.dispatch, asyncio.Event()

        async def slow_for_one(msg, **kw):
            if msg.user_ref == "2004":
                await release.wait()
            return await real(msg, **kw)

        app.dispatcher.dispatch = slow_for_one
        slow = tg.user(2004, language_code="en")
        stuck = await slow.send("/catalog")
        assert await buyer.pay(timeout=3), buyer.last_payment_error
        if lanes:
            await buyer.wait_for_message(has("Payment received"))
        assert not tg.messages_for(slow.id)
        assert stuck["update_id"] in pending_ids(tg)  # nothing at or after it confirmed yet
        release.set()
        await slow.wait_for_message(lambda m: m.get("reply_markup"))
        await buyer.wait_for_message(has("Payment received"))
        await tg.wait_until(lambda: not pending_ids(tg), what="everything confirmed")
        assert await count(app, Enrolment) == 1
    finally:
        await channel.stop()
        await app.close()


async def test_commands_published_and_nothing_of_ptb_that_must_persist(ptb_app, tg):
    """setMyCommands in zh and en; no Updater, JobQueue, persistence or rate limiter."""
    _, channel = ptb_app
    by_lang = {c.get("language_code"): c["commands"] for c in tg.calls("setMyCommands")}
    assert {"zh", "en"} <= set(by_lang)
    en = {c["command"]: c["description"] for c in by_lang["en"]}
    assert en["catalog"] == "Browse courses by category" and "refund" not in en
    application = channel.application
    with warnings.catch_warnings():  # PTB warns that there is no JobQueue: that is the point
        warnings.simplefilter("ignore")
        assert application.updater is None and application.job_queue is None
    assert application.persistence is None and application.bot.rate_limiter is None
    await tg.wait_for_request("getUpdates", since=0)
    assert tg.calls("getMe")
    assert channel.bot.base_url == f"{tg.base_url}/bot{tg.token}"


async def test_replayed_update_is_handled_once(ptb_app, tg):
    """The same update_id delivered twice gets one answer."""
    user = tg.user(2005, language_code="en")
    raw = await user.send("/help")
    await user.wait_for_message(has("Commands"))
    await tg.wait_until(lambda: not pending_ids(tg))
    await tg.push_update(raw)
    await user.send("/start")
    await user.wait_for_message(has("Hi"))
    assert sum("Commands" in m["text"] for m in tg.messages_for(user.id)) == 1


@pytest.mark.parametrize(
    ("status", "extra", "error"),
    [
        (429, {"retry_after": 3}, RateLimited),
        (403, {}, Unreachable),
        (400, {}, RejectedMessage),
        (502, {}, ChannelError),
    ],
)
async def test_send_errors_map_to_the_core(ptb_app, tg, status, extra, error):
    """429 → RateLimited(retry_after), 403 → Unreachable, 400 → RejectedMessage, 5xx → retry."""
    _, channel = ptb_app
    tg.user(2006)
    tg.fail_next("sendMessage", status, f"scripted {status}", **extra)
    with pytest.raises(error) as caught:
        await channel.send("2006", Reply("hello"))
    assert type(caught.value) is error
    if status == 429:
        assert caught.value.retry_after == 3


async def test_long_text_photo_and_invoice(ptb_app, tg):
    """Long text is split at 4096; an image goes as a photo with caption and keyboard."""
    from bot.core import Button

    _, channel = ptb_app
    user = tg.user(2007)
    await channel.send("2007", Reply("\n".join(["x" * 100] * 50)))
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 8 + b"IHDR" + (1).to_bytes(4, "big") * 2 + b"\0" * 8
    await channel.send("2007", Reply("chart", [[Button("Open", "course:1")]], image=png))
    texts = [m.get("text") for m in tg.messages_for(user.id)]
    assert len(texts) == 3 and all(len(t) <= 4096 for t in texts[:2])
    photo = tg.messages_for(user.id)[-1]
    assert photo["caption"] == "chart" and "photo" in photo
    assert photo["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "course:1"


async def test_refund_failure_is_a_channel_error(ptb_app):
    """Refunding an unknown charge raises ChannelError (the admin is told, nothing changes)."""
    _, channel = ptb_app
    with pytest.raises(ChannelError):
        await channel.refund("2008", "no-such-charge")


def test_tracker_confirms_only_a_done_prefix():
    """The offset is the lowest update not done; done ones after it wait for it."""
    tracker = UpdateTracker()
    assert tracker.offset() is None
    for update_id in (10, 11, 12):
        tracker.started(update_id)
    tracker.done(11)
    tracker.done(12)
    assert tracker.offset() == 10 and tracker.in_flight == 1
    tracker.done(10)
    assert tracker.offset() == 13
    tracker.confirmed(13)
    assert not tracker.is_new(12) and tracker.is_new(13) and tracker.in_flight == 0


def test_unknown_runtime_is_a_clear_settings_error():
    """TELEGRAM_RUNTIME must be aiogram or ptb; anything else names both."""
    with pytest.raises(ValidationError, match=r"'aiogram' or 'ptb'"):
        Settings(_env_file=None, telegram_runtime="pyrogram")


@pytest.fixture
async def ptb_webhook(db_url, clock, tg):
    """The PTB app in webhook mode on the one web server (SQLite and PostgreSQL)."""
    port = free_port()
    app, channel = await start_ptb_app(
        db_url,
        clock,
        tg,
        web_port=port,
        telegram_webhook_url=f"http://127.0.0.1:{port}/telegram",
        telegram_webhook_secret="s3cret-hook",
    )
    yield app, port
    await channel.stop()
    await app.close()


async def test_webhook_same_payment_five_times_concurrently(ptb_webhook, tg):
    """One charge id delivered 5× concurrently through the webhook → one payment, one enrolment."""
    app, _ = ptb_webhook
    assert tg.webhook_url and tg.webhook_secret == "s3cret-hook"
    user = tg.user(2010, language_code="en")
    await user.send("/start course_4")
    await user.wait_for_message(has("#4"))
    await user.press("buy:4")
    await user.wait_for_message(lambda m: "invoice" in m)
    invoice = tg.invoices_for(user.id)[-1]
    await asyncio.gather(*(user.deliver_payment(invoice, "charge-x5") for _ in range(5)))
    assert await count(app, Payment) == 1
    assert await count(app, Enrolment) == 1
    assert not tg.refunds
    texts = [m.get("text") or "" for m in tg.messages_for(user.id)]
    assert sum("Payment received" in t for t in texts) == 1


async def test_webhook_answers_200_only_after_commit(ptb_webhook, tg):
    """A failing dispatch answers 500 (Telegram keeps the update); the redelivery is handled."""
    app, _ = ptb_webhook
    real, calls = app.dispatcher.dispatch, []

    async def fail_first(msg, **kw):
        calls.append(msg.update_key)
        if len(calls) == 1:
            raise ConnectionError("database went away")
        return await real(msg, **kw)

    app.dispatcher.dispatch = fail_first
    user = tg.user(2011, language_code="en")
    update = await user.send("/help")
    assert update["update_id"] in pending_ids(tg) and tg.webhook_errors
    assert await tg.flush_webhook() == 1
    await user.wait_for_message(has("Commands"))
    assert not pending_ids(tg)


async def test_webhook_rejects_a_wrong_secret(ptb_webhook, tg):
    """A POST without the right secret header is refused and not processed."""
    _, port = ptb_webhook
    update = {
        "update_id": 5,
        "message": {
            "message_id": 1,
            "date": 1_790_000_000,
            "chat": {"id": 42, "type": "private"},
            "from": {"id": 42, "is_bot": False, "first_name": "X"},
            "text": "/start",
        },
    }
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}):
            resp = await http.post(
                f"http://127.0.0.1:{port}/telegram", json=update, headers=headers
            )
            assert resp.status in (401, 403)
    assert not tg.messages_for(42)
