"""Hostile and faulty input through the real aiogram adapter against the fake Bot API:
forged webhooks, invalid JSON, poison updates, surrogates, a crash between commit and send,
429 on a direct reply, non-JSON 5xx and 401, a pre-checkout behind a queue."""

from __future__ import annotations

import time

import aiohttp
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from bot.bootstrap import build_app
from bot.channels.telegram_aiogram import AiogramChannel
from bot.core import ChannelError, RateLimited, Reply, Unauthorized
from storage.models import Enrolment, KeyValue, Payment
from tests.conftest import free_port, make_settings, start_telegram_app
from tests.fakes.telegram_api import has

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def count(app, model, *where) -> int:
    async with app.uow() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(model).where(*where)))


def message_update(update_id: int, user_id: int, text: str, **extra) -> dict:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1_790_000_000,
            "chat": {"id": user_id, "type": "private"},
            "from": {"id": user_id, "is_bot": False, "first_name": "X", "language_code": "en"},
            "text": text,
            **extra,
        },
    }


def test_webhook_mode_refuses_to_start_without_a_secret(db_url):
    with pytest.raises(ValidationError, match="TELEGRAM_WEBHOOK_SECRET"):
        make_settings(db_url, telegram_webhook_url="https://example.org/telegram")
    with pytest.raises(ValidationError):
        make_settings(
            db_url,
            telegram_webhook_url="https://example.org/telegram",
            telegram_webhook_secret="has space",
        )


@pytest.fixture
async def hook(db_url, clock, tg):
    port = free_port()
    app, channel = await start_telegram_app(
        db_url,
        clock,
        tg,
        web_port=port,
        telegram_webhook_url=f"http://127.0.0.1:{port}/telegram",
        telegram_webhook_secret="s3cret-hook",
    )
    yield app, channel, f"http://127.0.0.1:{port}/telegram"
    await channel.stop()
    await app.close()


async def test_forged_webhook_payment_is_refused_and_bad_json_gets_400(hook, tg, caplog):
    """No header / wrong header → 403 and nothing happens; invalid JSON → 400, one line."""
    app, channel, url = hook
    forged = message_update(7, 4242, "")
    forged["message"].pop("text")
    forged["message"]["successful_payment"] = {
        "currency": "XTR",
        "total_amount": 1,
        "invoice_payload": "order:1",
        "telegram_payment_charge_id": "forged-1",
        "provider_payment_charge_id": "",
    }
    good = {"X-Telegram-Bot-Api-Secret-Token": "s3cret-hook"}
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "s3cret-hooK"}):
            resp = await http.post(url, json=forged, headers=headers)
            assert resp.status == 403
        caplog.clear()
        resp = await http.post(url, data=b"{not json", headers=good)
        assert resp.status == 400
        assert len([r for r in caplog.records if "not JSON" in r.getMessage()]) == 1
        resp = await http.post(url, data=b"[1, 2]", headers=good)
        assert resp.status == 400
        poison = {"update_id": 8, "message": {"message_id": 1, "text": "no chat, no date"}}
        resp = await http.post(url, json=poison, headers=good)
        assert resp.status == 200  # skipped, not retried forever
    assert channel.skipped_updates == 1
    assert await count(app, Payment) == 0 and await count(app, Enrolment) == 0
    assert not tg.messages_for(4242)


async def test_payment_with_a_wrong_amount_is_recorded_refunded_never_enrols(hook, tg):
    app, _, _ = hook
    user = tg.user(4243, language_code="en")
    await user.send("/start course_4")
    await user.wait_for_message(has("#4"))
    await user.press("buy:4")
    await user.wait_for_message(lambda m: "invoice" in m)
    invoice = tg.invoices_for(user.id)[-1]
    invoice.total_amount = 1
    await user.deliver_payment(invoice, "charge-wrong-amount")
    await tg.wait_until(lambda: tg.refunds, what="a refund")
    assert await count(app, Enrolment) == 0
    assert await count(app, Payment, Payment.provider_charge_id == "charge-wrong-amount") == 1


async def test_poison_updates_are_skipped_and_polling_goes_on(telegram_app, tg):
    """No chat, no date, a string date: logged, skipped (offset confirmed), counted."""
    channel = telegram_app.channels.get("telegram")
    bad = [
        {"update_id": 100, "message": {"message_id": 1, "text": "/help", "date": 1}},
        {"update_id": 101, "message": {"message_id": 2, "chat": {"id": 5, "type": "private"}}},
        {
            "update_id": 102,
            "message": {
                "message_id": 3,
                "date": "yesterday",
                "chat": {"id": 5, "type": "private"},
            },
        },
    ]
    for raw in bad:
        await tg.push_update(raw)
    user = tg.user(4244, language_code="en")
    await user.send("/help")
    await user.wait_for_message(has("Commands"))
    assert channel.skipped_updates == 3
    await tg.wait_until(lambda: not list(tg.pending_updates), what="every update confirmed")


async def test_lone_surrogates_are_cleaned_and_answered(telegram_app, tg):
    tg.user(4245, language_code="en")
    for n, text in enumerate(["\ud800", "/search \udfff python", "hi \ud83d", "\udc00/help"]):
        await tg.push_update(message_update(200 + n, 4245, text))
    await tg.wait_until(lambda: len(tg.messages_for(4245)) >= 4, what="four replies")
    assert telegram_app.channels.get("telegram").failed_updates == 0


async def test_usage_lines_with_placeholders_reach_the_user(telegram_app, tg):
    """A reply with raw `<question_id>` is escaped at the adapter, not refused by Telegram."""
    channel = telegram_app.channels.get("telegram")
    tg.user(4246)
    await channel.send("4246", Reply("Usage: /faq <question_id> <text> & <b>bold</b>"))
    [message] = tg.messages_for(4246)
    assert message["text"] == "Usage: /faq <question_id> <text> & bold"


async def test_a_reply_after_a_429_arrives(telegram_app, tg):
    tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    user = tg.user(4247, language_code="en")
    await user.send("/help")
    await user.wait_for_message(has("Commands"), timeout=6)
    assert sum("Commands" in (m.get("text") or "") for m in tg.messages_for(4247)) == 1


async def test_non_json_5xx_and_401_map_to_channel_errors(telegram_app, tg):
    channel = telegram_app.channels.get("telegram")
    tg.user(4248)
    tg.fail_next("sendMessage", 401, "Unauthorized")
    with pytest.raises(Unauthorized):
        await channel.send("4248", Reply("hello"))
    tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
    with pytest.raises(RateLimited):
        await channel.send("4248", Reply("hello"))
    channel.bot.session.api = channel.bot.session.api.__class__(
        base=tg.base_url + "/nowhere/bot{token}/{method}",
        file=tg.base_url + "/file/bot{token}/{path}",
    )
    with pytest.raises(ChannelError):
        await channel.send("4248", Reply("hello"))


async def test_pre_checkout_is_answered_first_behind_500_texts(db_url, clock, tg):
    """500 texts queued, then a pre-checkout: answered within 1 s of the bot starting."""
    app = await build_app(
        make_settings(db_url, telegram_bot_token=tg.token, telegram_api_url=tg.base_url),
        clock=clock,
    )
    from bot.demo import seed_demo

    async with app.uow() as uow:
        await seed_demo(uow)
    buyer = tg.user(4300, language_code="en")
    channel = AiogramChannel(app)
    app.channels.add(channel)
    for n in range(500):
        tg.user(5000 + n)
        await tg.push_update(message_update(1000 + n, 5000 + n, f"hello {n}"))
    query = {
        "id": "pcq-behind",
        "from": buyer.user_dict,
        "currency": "XTR",
        "total_amount": 150,
        "invoice_payload": "order:999999",
    }
    tg._precheckout_queries["pcq-behind"] = tg.clock()
    await tg.push_update({"update_id": 2000, "pre_checkout_query": query})
    start = time.monotonic()
    await channel.start()
    try:
        await tg.wait_until(lambda: tg.precheckout_answers.get("pcq-behind"), 1.0)
        assert time.monotonic() - start < 1.0
    finally:
        await channel.stop()
        await app.close()


class Crash(BaseException):
    """kill -9 stand-in: nothing after it runs, nothing catches it."""


async def test_crash_between_commit_and_send_loses_no_reply(db_url, clock, tg):
    """The process dies after the commit and before the send; the restarted process gets the
    update again (never confirmed) and sends the stored reply once; a later redelivery sends
    nothing."""
    from bot.demo import seed_demo

    settings = make_settings(db_url, telegram_bot_token=tg.token, telegram_api_url=tg.base_url)
    first = await build_app(settings, clock=clock)
    async with first.uow() as uow:
        await seed_demo(uow)
    channel = AiogramChannel(first)
    first.channels.add(channel)

    async def die(msg, outputs):
        raise Crash

    channel._deliver = die
    user = tg.user(4301, language_code="en")
    await user.send("/help")
    raw = list(tg.pending_updates)
    with pytest.raises(Crash):
        await channel.handle_batch(raw)
    assert not tg.messages_for(4301)
    async with first.uow() as uow:  # the reply is stored with the inbox row
        assert await uow.session.scalar(select(func.count()).select_from(KeyValue)) >= 1
    await channel.bot.session.close()
    await first.close()

    second = await build_app(settings, clock=clock)
    again = AiogramChannel(second)
    second.channels.add(again)
    await again.handle_batch(raw)  # the redelivery after restart
    await again.handle_batch(raw)  # and once more: nothing left to send
    texts = [m.get("text") or "" for m in tg.messages_for(4301)]
    assert sum("Commands" in t for t in texts) == 1, texts
    async with second.uow() as uow:
        keys = (await uow.session.execute(select(KeyValue.key))).scalars().all()
        assert not [k for k in keys if k.startswith("replies:")]
    await again.bot.session.close()
    await second.close()
