"""The python-telegram-bot runtime has the aiogram runtime's robustness (issue 17): lone
surrogates cleaned at the adapter, unparsable updates skipped and counted while polling goes on,
a crash between commit and send re-sends the stored reply once, webhook refusals (403 / 400),
a pre-checkout declined when the dispatch fails. Real PtbChannel against the fake Bot API."""

from __future__ import annotations

import json

import aiohttp
import pytest
from sqlalchemy import func, select
from telegram import Update

import bot.channels.telegram_ptb as ptb_module
from bot.bootstrap import build_app
from bot.channels.telegram_ptb import PtbChannel
from bot.demo import seed_demo
from storage.models import KeyValue, Payment
from tests.bot.test_telegram_ptb import start_ptb_app
from tests.conftest import free_port, make_settings
from tests.fakes.telegram_api import has
from tests.robustness.test_telegram_hostile import message_update

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
async def ptb(db_url, clock, tg):
    """The app with the PTB channel polling the fake server."""
    app, channel = await start_ptb_app(db_url, clock, tg)
    yield app, channel
    await channel.stop()
    await app.close()


POISON = [
    {"update_id": 100, "message": {"message_id": 1, "text": "/help", "date": 1}},  # no chat
    {"update_id": 101, "message": {"message_id": 2, "chat": {"id": 5, "type": "private"}}},
    {
        "update_id": 102,
        "message": {"message_id": 3, "date": "yesterday", "chat": {"id": 5, "type": "private"}},
    },
]


async def test_poison_updates_are_skipped_counted_and_polling_goes_on(ptb, tg, caplog):
    _, channel = ptb
    for raw in POISON:
        await tg.push_update(raw)
    user = tg.user(4344, language_code="en")
    await user.send("/help")
    await user.wait_for_message(has("Commands"))
    await tg.wait_until(lambda: not list(tg.pending_updates), what="every update confirmed")
    assert channel.skipped_updates == 3
    skipped = [r for r in caplog.records if "skipped unparsable update" in r.getMessage()]
    assert len(skipped) == 3  # logged once each, although polled again while in flight


async def test_lone_surrogates_are_cleaned_and_answered(ptb, tg):
    _, channel = ptb
    tg.user(4345, language_code="en")
    texts = ["\ud800", "/search \udfff python", "hi \ud83d", "\udc00/help", "/ask #\ud800 hi"]
    for n, text in enumerate(texts):
        await tg.push_update(message_update(300 + n, 4345, text))
    await tg.wait_until(lambda: len(tg.messages_for(4345)) >= len(texts), what="the replies")
    assert channel.failed_updates == 0 and channel.skipped_updates == 0
    for message in tg.messages_for(4345):
        (message.get("text") or "").encode("utf-8")  # nothing unencodable was sent


async def test_a_superscript_button_payload_is_a_stale_button(ptb, tg):
    user = tg.user(4346, language_code="en")
    update = {
        "update_id": 400,
        "callback_query": {
            "id": "cq-sup",
            "from": user.user_dict,
            "chat_instance": "1",
            "data": "buy:²",
            "message": message_update(0, 4346, "old")["message"],
        },
    }
    await tg.push_update(update)
    await user.wait_for_message(has("no longer valid"))


class Crash(BaseException):
    """kill -9 stand-in: nothing after it runs, nothing catches it."""


async def test_crash_between_commit_and_send_resends_the_stored_reply_once(
    db_url, clock, tg, monkeypatch
):
    """The process dies after the commit, before the send. The restarted process gets the
    update again (PTB confirms only processed updates) and sends the stored reply once; a
    later redelivery sends nothing."""
    settings = make_settings(
        db_url, telegram_bot_token=tg.token, telegram_api_url=tg.base_url, telegram_runtime="ptb"
    )
    first = await build_app(settings, clock=clock)
    async with first.uow() as uow:
        await seed_demo(uow)
    channel = PtbChannel(first)
    first.channels.add(channel)
    await channel.application.initialize()

    async def die(*args, **kwargs):
        raise Crash

    monkeypatch.setattr(ptb_module, "deliver", die)
    user = tg.user(4347, language_code="en")
    await user.send("/help")
    [raw] = list(tg.pending_updates)
    with pytest.raises(Crash):
        await channel.process(Update.de_json(raw, channel.bot))
    assert not tg.messages_for(4347)
    async with first.uow() as uow:  # the reply is stored with the inbox row
        assert await uow.session.scalar(select(func.count()).select_from(KeyValue)) >= 1
    await channel.application.shutdown()
    await first.close()
    monkeypatch.undo()

    second = await build_app(settings, clock=clock)
    again = PtbChannel(second)
    second.channels.add(again)
    await again.application.initialize()
    try:
        assert await again.process(again.parse(raw))  # the redelivery after the restart
        assert await again.process(again.parse(raw))  # and once more: nothing left to send
    finally:
        await again.application.shutdown()
    texts = [m.get("text") or "" for m in tg.messages_for(4347)]
    assert sum("Commands" in t for t in texts) == 1, texts
    async with second.uow() as uow:
        keys = (await uow.session.execute(select(KeyValue.key))).scalars().all()
        assert not [k for k in keys if k.startswith("replies:")]
    await second.close()


@pytest.fixture
async def ptb_hook(db_url, clock, tg):
    port = free_port()
    app, channel = await start_ptb_app(
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


async def test_webhook_refusals_match_aiogram(ptb_hook, tg, caplog):
    """No or wrong secret → 403, nothing happens; invalid JSON → 400 and one log line; a JSON
    array → 400; an unparsable update → 200 (skipped and counted, not retried forever)."""
    app, channel, url = ptb_hook
    forged = message_update(7, 4348, "")
    forged["message"].pop("text")
    forged["message"]["successful_payment"] = {
        "currency": "XTR",
        "total_amount": 1,
        "invoice_payload": "order:1",
        "telegram_payment_charge_id": "forged-ptb",
        "provider_payment_charge_id": "",
    }
    good = {"X-Telegram-Bot-Api-Secret-Token": "s3cret-hook"}
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "s3cret-hooK"}):
            assert (await http.post(url, json=forged, headers=headers)).status == 403
        caplog.clear()
        assert (await http.post(url, data=b"{not json", headers=good)).status == 400
        assert len([r for r in caplog.records if "not JSON" in r.getMessage()]) == 1
        assert (await http.post(url, data=b"[1, 2]", headers=good)).status == 400
        assert (await http.post(url, json=POISON[0], headers=good)).status == 200
        tg.user(4349, language_code="en")
        surrogate = message_update(9, 4349, "/help \ud800")
        body = json.dumps(surrogate).encode()  # \ud800 escaped, as Telegram may send it
        assert (await http.post(url, data=body, headers=good)).status == 200
    assert channel.skipped_updates == 1
    async with app.uow() as uow:
        assert not await uow.session.scalar(select(func.count()).select_from(Payment))
    assert not tg.messages_for(4348)
    assert any("Commands" in (m.get("text") or "") for m in tg.messages_for(4349))


async def test_webhook_mode_without_a_secret_serves_no_route(db_url, clock, tg):
    settings = make_settings(
        db_url,
        telegram_bot_token=tg.token,
        telegram_api_url=tg.base_url,
        telegram_runtime="ptb",
        telegram_webhook_url="https://example.org/telegram",
        telegram_webhook_secret="s3cret-hook",
    )
    app = await build_app(settings.model_copy(update={"telegram_webhook_secret": None}))
    try:
        channel = PtbChannel(app)
        from aiohttp import web

        with pytest.raises(RuntimeError, match="TELEGRAM_WEBHOOK_SECRET"):
            channel.add_routes(web.Application())
    finally:
        await app.close()


async def test_pre_checkout_is_declined_when_the_dispatch_fails(ptb, tg):
    app, _ = ptb

    async def broken(msg, **kw):
        raise ConnectionError("database went away")

    app.dispatcher.dispatch = broken
    buyer = tg.user(4350, language_code="en")
    query = {
        "id": "pcq-broken",
        "from": buyer.user_dict,
        "currency": "XTR",
        "total_amount": 150,
        "invoice_payload": "order:1",
    }
    tg._precheckout_queries["pcq-broken"] = tg.clock()
    await tg.push_update({"update_id": 500, "pre_checkout_query": query})
    answer = await tg.wait_until(lambda: tg.precheckout_answers.get("pcq-broken"))
    assert answer  # answered (declined) at once instead of timing out
