"""Tests of the fake Telegram Bot API server, driven by a real aiogram Bot."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiogram import Bot, Dispatcher, F, Router, methods
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command
from aiogram.methods.base import Response
from aiogram.types import (
    BotCommand,
    BotCommandScopeDefault,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LabeledPrice,
    Message,
    PreCheckoutQuery,
    Update,
)
from aiohttp import web

from .telegram_api import (
    SECRET_HEADER,
    FakeTelegram,
    aiogram_bot,
    close_bot,
    parse_html,
    parse_markdown_v2,
)

USER_ID = 1001


def _png(width: int, height: int) -> bytes:
    """Build a tiny valid PNG so sendPhoto can report its size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    raw = b"".join(b"\x00" + b"\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def make_bot(tg: FakeTelegram, token: str | None = None, **kwargs: Any) -> Bot:
    """Build a real aiogram Bot pointed at the fake."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url))
    return Bot(token or tg.token, session=session, **kwargs)


@pytest.mark.asyncio
async def test_aiogram_bot_helper(tg: FakeTelegram) -> None:
    bot = aiogram_bot(tg)
    assert (await bot.get_me()).id == tg.bot_id
    await close_bot(bot)


@pytest_asyncio.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    """Run a fresh fake Bot API server for one test."""
    async with FakeTelegram() as fake:
        yield fake


@pytest_asyncio.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    """Give an aiogram Bot talking to the fake."""
    bot = make_bot(tg)
    yield bot
    await close_bot(bot)


@contextlib.asynccontextmanager
async def polling(dp: Dispatcher, bot: Bot) -> AsyncIterator[None]:
    """Run aiogram long polling against the fake for the duration of the block."""
    task = asyncio.create_task(
        dp.start_polling(bot, handle_signals=False, close_bot_session=False, polling_timeout=5)
    )
    try:
        yield
    finally:
        with contextlib.suppress(RuntimeError):
            await dp.stop_polling()
        await asyncio.wait_for(task, 5)


async def raw_call(tg: FakeTelegram, method: str, **params: Any) -> tuple[int, dict[str, Any]]:
    """POST a JSON body to the fake and return (status, body)."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{tg.api_url}/{method}", json=params) as resp,
    ):
        return resp.status, await resp.json()


# --------------------------------------------------------------------------- basics


@pytest.mark.asyncio
async def test_get_me_and_token(tg: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == 123456 and me.is_bot and me.username == "coursebot_test_bot"
    wrong = make_bot(tg, token="999:WRONG")
    with pytest.raises(TelegramUnauthorizedError):
        await wrong.get_me()
    await close_bot(wrong)
    with pytest.raises(ValueError):
        FakeTelegram(token="not-a-token")


@pytest.mark.asyncio
async def test_methods_are_case_insensitive_and_unknown_is_404(tg: FakeTelegram) -> None:
    status, body = await raw_call(tg, "GETME")
    assert status == 200 and body["result"]["id"] == tg.bot_id
    status, body = await raw_call(tg, "sendTelepathy", chat_id=1)
    assert status == 404
    assert body == {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
    async with aiohttp.ClientSession() as http, http.get(f"{tg.api_url}/getMe") as resp:
        assert (await resp.json())["ok"] is True


@pytest.mark.asyncio
async def test_every_result_validates_as_the_aiogram_type(tg: FakeTelegram) -> None:
    """Call each method with a JSON body and validate the result as aiogram would."""
    user = tg.user(USER_ID, first_name="Li", language_code="zh")
    keyboard = {"inline_keyboard": [[{"text": "Buy", "callback_data": "buy:1"}]]}
    cases: list[tuple[str, type[methods.TelegramMethod[Any]], dict[str, Any]]] = [
        ("getMe", methods.GetMe, {}),
        (
            "setMyCommands",
            methods.SetMyCommands,
            {"commands": [{"command": "start", "description": "Start"}]},
        ),
        ("getMyCommands", methods.GetMyCommands, {}),
        ("setWebhook", methods.SetWebhook, {"url": "http://127.0.0.1:9/hook"}),
        ("getWebhookInfo", methods.GetWebhookInfo, {}),
        ("deleteWebhook", methods.DeleteWebhook, {}),
        (
            "sendMessage",
            methods.SendMessage,
            {
                "chat_id": USER_ID,
                "text": "<b>hi</b>",
                "parse_mode": "HTML",
                "reply_markup": keyboard,
            },
        ),
        (
            "editMessageText",
            methods.EditMessageText,
            {"chat_id": USER_ID, "message_id": 1, "text": "edited"},
        ),
        (
            "editMessageReplyMarkup",
            methods.EditMessageReplyMarkup,
            {"chat_id": USER_ID, "message_id": 1, "reply_markup": keyboard},
        ),
        (
            "sendInvoice",
            methods.SendInvoice,
            {
                "chat_id": USER_ID,
                "title": "Course",
                "description": "A course",
                "payload": "order:1",
                "currency": "XTR",
                "prices": [{"label": "Course", "amount": 50}],
            },
        ),
        (
            "sendPhoto",
            methods.SendPhoto,
            {"chat_id": USER_ID, "photo": "https://x.test/a.jpg", "caption": "pic"},
        ),
        ("sendChatAction", methods.SendChatAction, {"chat_id": USER_ID, "action": "typing"}),
        ("deleteMessage", methods.DeleteMessage, {"chat_id": USER_ID, "message_id": 3}),
        ("close", methods.Close, {}),
        ("logOut", methods.LogOut, {}),
    ]
    for name, method_cls, params in cases:
        status, body = await raw_call(tg, name, **params)
        assert status == 200, (name, body)
        Response[method_cls.__returning__].model_validate(body)  # type: ignore[name-defined]

    await user.send("/start")
    press = await user.press("Buy")
    status, body = await raw_call(
        tg, "answerCallbackQuery", callback_query_id=press["callback_query"]["id"]
    )
    Response[bool].model_validate(body)

    paying = asyncio.create_task(user.pay())
    query = await tg.wait_until(
        lambda: next((u["pre_checkout_query"] for u in tg.updates if "pre_checkout_query" in u), 0)
    )
    status, body = await raw_call(
        tg, "answerPreCheckoutQuery", pre_checkout_query_id=query["id"], ok=True
    )
    Response[bool].model_validate(body)
    charge_id = await paying
    status, body = await raw_call(
        tg, "refundStarPayment", user_id=USER_ID, telegram_payment_charge_id=charge_id
    )
    assert status == 200
    Response[bool].model_validate(body)

    status, body = await raw_call(tg, "getUpdates", offset=0)
    assert {update_type for u in body["result"] for update_type in u} >= {
        "message",
        "callback_query",
        "pre_checkout_query",
    }
    Response[list[Update]].model_validate(body)
    for update in tg.updates:
        Update.model_validate(update)
    for message in tg.sent:
        Message.model_validate(message)


# --------------------------------------------------------------------------- getUpdates


@pytest.mark.asyncio
async def test_get_updates_offset_and_limit(tg: FakeTelegram, bot: Bot) -> None:
    user = tg.user(USER_ID)
    sent = [await user.send(f"m{i}") for i in range(3)]
    ids = [u["update_id"] for u in sent]
    assert ids == sorted(ids) and len(set(ids)) == 3

    updates = await bot.get_updates()
    assert [u.update_id for u in updates] == ids
    assert updates[0].message and updates[0].message.text == "m0"
    assert [u.update_id for u in await bot.get_updates(limit=1)] == ids[:1]
    # offset confirms everything below it, for good
    assert [u.update_id for u in await bot.get_updates(offset=ids[1])] == ids[1:]
    assert [u.update_id for u in await bot.get_updates()] == ids[1:]
    assert await bot.get_updates(offset=ids[2] + 1) == []
    assert tg.pending_updates == []


@pytest.mark.asyncio
async def test_get_updates_long_poll_wakes_on_update(tg: FakeTelegram, bot: Bot) -> None:
    user = tg.user(USER_ID)
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await tg.wait_for_request("getUpdates", since=0)
    await asyncio.sleep(0)  # let the handler reach its wait
    assert not poll.done()
    await user.send("hello")
    updates = await asyncio.wait_for(poll, 1)
    assert [u.message.text for u in updates if u.message] == ["hello"]


@pytest.mark.asyncio
async def test_get_updates_long_poll_times_out_empty(tg: FakeTelegram) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, body = await raw_call(tg, "getUpdates", timeout=0.2)
    assert status == 200 and body["result"] == []
    assert 0.15 <= loop.time() - started < 2


@pytest.mark.asyncio
async def test_second_poller_conflicts_with_first(tg: FakeTelegram, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await tg.wait_for_request("getUpdates", since=0)
    assert await bot.get_updates() == []
    with pytest.raises(TelegramConflictError):
        await asyncio.wait_for(first, 1)


@pytest.mark.asyncio
async def test_allowed_updates_filter(tg: FakeTelegram, bot: Bot) -> None:
    user = tg.user(USER_ID)
    await tg.push_update(
        {
            "message_reaction": {
                "chat": user.chat_dict,
                "message_id": 1,
                "date": 0,
                "old_reaction": [],
                "new_reaction": [],
            }
        }
    )
    await user.send("kept")
    updates = await bot.get_updates(allowed_updates=["message"])
    assert [u.message.text for u in updates if u.message] == ["kept"]
    assert len(updates) == 1


@pytest.mark.asyncio
async def test_replayed_update_keeps_its_id_and_is_redelivered(tg: FakeTelegram, bot: Bot) -> None:
    user = tg.user(USER_ID)
    first = await user.send("pay me once")
    updates = await bot.get_updates()
    assert await bot.get_updates(offset=updates[-1].update_id + 1) == []
    await tg.push_update(first)  # Telegram redelivers after a crash
    replay = await bot.get_updates(offset=updates[-1].update_id + 1)
    assert [u.update_id for u in replay] == [first["update_id"]]
    assert await bot.get_updates(offset=first["update_id"] + 1) == []
    fresh = await user.send("next")
    assert fresh["update_id"] > first["update_id"]


# --------------------------------------------------------------------------- webhook


@pytest.mark.asyncio
async def test_webhook_delivery_with_secret_and_conflict(tg: FakeTelegram, bot: Bot) -> None:
    received: list[tuple[str | None, dict[str, Any]]] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        received.append((request.headers.get(SECRET_HEADER), body))
        if body.get("message", {}).get("text") == "ping":  # reply-in-webhook
            return web.json_response(
                {"method": "sendMessage", "chat_id": body["message"]["chat"]["id"], "text": "pong"}
            )
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/telegram", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        url = f"http://127.0.0.1:{port}/telegram"
        assert await bot.set_webhook(url, secret_token="s3cret_TOKEN-1")
        info = await bot.get_webhook_info()
        assert info.url == url and info.pending_update_count == 0
        with pytest.raises(TelegramConflictError):
            await bot.get_updates()

        user = tg.user(USER_ID)
        await user.send("ping")
        assert received[0][0] == "s3cret_TOKEN-1"
        assert received[0][1]["message"]["text"] == "ping"
        assert [m["text"] for m in user.inbox] == ["pong"]

        with pytest.raises(TelegramBadRequest):
            await bot.set_webhook(url, secret_token="bad secret!")
        assert await bot.delete_webhook()
        await user.send("queued")
        assert len(received) == 1
        assert [u.message.text for u in await bot.get_updates() if u.message] == ["queued"]
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_failed_webhook_keeps_update_pending(tg: FakeTelegram, bot: Bot) -> None:
    app = web.Application()

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500)

    app.router.add_post("/hook", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        await bot.set_webhook(f"http://127.0.0.1:{runner.addresses[0][1]}/hook")
        await tg.user(USER_ID).send("hi")
        info = await bot.get_webhook_info()
        assert info.pending_update_count == 1
        assert info.last_error_message and "500" in info.last_error_message
    finally:
        await runner.cleanup()


# --------------------------------------------------------------------------- errors


@pytest.mark.asyncio
async def test_errors_map_to_aiogram_exceptions(tg: FakeTelegram, bot: Bot) -> None:
    user = tg.user(USER_ID)
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(USER_ID, "<b>unclosed", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(USER_ID, "Tom & Jerry", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(USER_ID, "1 < 2", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(USER_ID, "x" * 4097)
    # 4096 characters after entity parsing is fine even with tags around them
    await bot.send_message(USER_ID, "<b>" + "x" * 4096 + "</b>", parse_mode="HTML")
    long_data = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="B", callback_data="x" * 65)]]
    )
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(USER_ID, "hi", reply_markup=long_data)
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(424242, "hi")
    never_started = tg.user(5005, started=False)
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(never_started.id, "hi")

    user.block()
    with pytest.raises(TelegramForbiddenError, match="blocked by the user"):
        await bot.send_message(USER_ID, "hi")
    user.unblock()

    tg.fail_next("sendMessage", 500, "Internal Server Error")
    with pytest.raises(TelegramServerError):
        await bot.send_message(USER_ID, "hi")
    tg.fail_next("SENDMESSAGE", 429, "Too Many Requests: retry after 9")
    with pytest.raises(TelegramRetryAfter) as exc:
        await bot.send_message(USER_ID, "hi")
    assert exc.value.retry_after == 9
    await bot.send_message(USER_ID, "one-shot errors are gone")
    assert [m["text"] for m in user.inbox][-1] == "one-shot errors are gone"
    assert ("sendMessage", 403, "Forbidden: bot was blocked by the user") in tg.errors


@pytest.mark.asyncio
async def test_rate_limit_every_nth_send(tg: FakeTelegram, bot: Bot) -> None:
    tg.user(USER_ID)
    tg.rate_limit_every(3, retry_after=7)
    await bot.send_message(USER_ID, "1")
    await bot.send_message(USER_ID, "2")
    with pytest.raises(TelegramRetryAfter) as exc:
        await bot.send_message(USER_ID, "3")
    assert exc.value.retry_after == 7
    await bot.send_message(USER_ID, "3 again")
    assert tg.send_counts[USER_ID] == 3
    assert len(tg.send_times) == 3


@pytest.mark.asyncio
async def test_global_ceiling_counts_violations(tg: FakeTelegram, bot: Bot) -> None:
    now = [100.0]
    tg.clock = lambda: now[0]
    for uid in (1, 2, 3):
        tg.user(uid)
    tg.max_per_second = 2
    await bot.send_message(1, "a")
    await bot.send_message(2, "b")
    with pytest.raises(TelegramRetryAfter) as exc:
        await bot.send_message(3, "c")
    assert exc.value.retry_after == 1 and tg.rate_violations == 1
    now[0] += 1.0
    await bot.send_message(3, "c")
    assert tg.peak_rate() == 2
    assert tg.send_counts == {1: 1, 2: 1, 3: 1}


@pytest.mark.asyncio
async def test_per_chat_ceiling(tg: FakeTelegram, bot: Bot) -> None:
    tg.clock = lambda: 5.0
    tg.user(USER_ID)
    tg.max_per_chat_per_second = 1
    await bot.send_message(USER_ID, "a")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(USER_ID, "b")
    assert tg.chat_rate_violations[USER_ID] == 1


@pytest.mark.parametrize(
    "text",
    [
        "<b>bold</b> <strong>s</strong> <i>i</i> <em>e</em> <u>u</u> <ins>n</ins>",
        "<s>s</s> <strike>k</strike> <del>d</del> <tg-spoiler>x</tg-spoiler>",
        '<span class="tg-spoiler">x</span> <a href="https://e.com/?a=1&amp;b=2">link</a>',
        '<code>x &lt; y</code> <pre><code class="language-python">print(1)</code></pre>',
        '<blockquote expandable>q</blockquote> <tg-emoji emoji-id="5368324170671202286">'
        "👍</tg-emoji>",
        "&lt;&gt;&amp;&quot; &#65; &#x42; a > b",
    ],
)
def test_html_validator_accepts_telegram_subset(text: str) -> None:
    plain, entities = parse_html(text)
    assert "</" not in plain and "&amp;" not in plain
    assert all(e["length"] > 0 for e in entities)


@pytest.mark.parametrize(
    "text",
    [
        "<b>open",
        "<b><i>x</b></i>",
        "</b>",
        "<div>x</div>",
        "<br/>",
        '<span class="red">x</span>',
        "a < b",
        "a <b",
        "Tom & Jerry",
        "&nbsp;",
        "&#0;",
        "<tg-emoji>x</tg-emoji>",
    ],
)
def test_html_validator_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_html(text)


def test_html_entities_use_utf16_offsets() -> None:
    plain, entities = parse_html("😀 <b>课程</b>")
    assert plain == "😀 课程"
    assert entities == [{"type": "bold", "offset": 3, "length": 2}]


def test_markdown_v2_validation() -> None:
    plain, entities = parse_markdown_v2(r"*bold* _it_ [link](https://e\.com) 1\.5 `a.b`")
    assert plain == "bold it link 1.5 a.b"
    assert {e["type"] for e in entities} == {"bold", "italic", "text_link", "code"}
    for bad in ("1.5", "*open", "a-b", "[x](y"):
        with pytest.raises(ValueError):
            parse_markdown_v2(bad)


@pytest.mark.asyncio
async def test_edit_and_delete(tg: FakeTelegram, bot: Bot) -> None:
    tg.user(USER_ID)
    msg = await bot.send_message(USER_ID, "v1")
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(text="v1", chat_id=USER_ID, message_id=msg.message_id)
    edited = await bot.edit_message_text(text="v2", chat_id=USER_ID, message_id=msg.message_id)
    assert isinstance(edited, Message) and edited.text == "v2" and edited.edit_date
    assert tg.message(USER_ID, msg.message_id)["text"] == "v2"
    assert await bot.delete_message(USER_ID, msg.message_id)
    assert tg.messages_for(USER_ID) == []
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text(text="v3", chat_id=USER_ID, message_id=msg.message_id)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(USER_ID, msg.message_id)


@pytest.mark.asyncio
async def test_commands_per_language(bot: Bot, tg: FakeTelegram) -> None:
    zh = [BotCommand(command="catalog", description="课程")]
    en = [BotCommand(command="catalog", description="Catalog")]
    assert await bot.set_my_commands(en)
    assert await bot.set_my_commands(zh, language_code="zh")
    assert [c.description for c in await bot.get_my_commands()] == ["Catalog"]
    got = await bot.get_my_commands(scope=BotCommandScopeDefault(), language_code="zh")
    assert [c.description for c in got] == ["课程"]
    assert tg.commands_for("zh") == [{"command": "catalog", "description": "课程"}]
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad-Name", description="x")])


@pytest.mark.asyncio
async def test_send_photo_upload(tg: FakeTelegram, bot: Bot) -> None:
    tg.user(USER_ID)
    msg = await bot.send_photo(
        USER_ID,
        BufferedInputFile(_png(3, 2), filename="card.png"),
        caption="<b>Course</b> card",
        parse_mode="HTML",
    )
    assert msg.photo and (msg.photo[0].width, msg.photo[0].height) == (3, 2)
    assert msg.caption == "Course card"
    assert tg.files[msg.photo[0].file_id].filename == "card.png"
    again = await bot.send_photo(USER_ID, msg.photo[0].file_id)
    assert again.photo and again.photo[0].file_id == msg.photo[0].file_id
    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await bot.send_photo(USER_ID, "/tmp/local/path.png")
    with pytest.raises(TelegramBadRequest, match="caption is too long"):
        await bot.send_photo(USER_ID, msg.photo[0].file_id, caption="x" * 1025)


# --------------------------------------------------------------------------- payments


@pytest.mark.asyncio
async def test_send_invoice_validation(tg: FakeTelegram, bot: Bot) -> None:
    tg.user(USER_ID)
    good: dict[str, Any] = {
        "chat_id": USER_ID,
        "title": "Python 101",
        "description": "Live course",
        "payload": "order:7",
        "currency": "XTR",
        "prices": [LabeledPrice(label="Course", amount=100)],
    }
    msg = await bot.send_invoice(**good)
    assert msg.invoice and msg.invoice.total_amount == 100
    assert tg.invoices_for(USER_ID)[0].payload == "order:7"
    bad_cases = [
        {"provider_token": "12345:TEST"},
        {"prices": [LabeledPrice(label="a", amount=1), LabeledPrice(label="b", amount=2)]},
        {"title": "x" * 33},
        {"description": ""},
        {"payload": "界" * 43},  # 129 bytes
        {"prices": [LabeledPrice(label="a", amount=0)]},
        {"currency": "USD"},  # needs a provider token
    ]
    for change in bad_cases:
        with pytest.raises(TelegramBadRequest):
            await bot.send_invoice(**{**good, **change})
    assert len(tg.invoices_for(USER_ID)) == 1


def payments_router(decline: str | None = None) -> Router:
    """Build a small aiogram router that sells one course for Stars."""
    router = Router()

    @router.message(Command("buy"))
    async def buy(message: Message, bot: Bot) -> None:
        await bot.send_invoice(
            message.chat.id,
            title="Python 101",
            description="Live course",
            payload="course:42",
            currency="XTR",
            prices=[LabeledPrice(label="Python 101", amount=250)],
        )

    @router.pre_checkout_query()
    async def checkout(query: PreCheckoutQuery) -> None:
        if decline:
            await query.answer(ok=False, error_message=decline)
        else:
            await query.answer(ok=True)

    @router.message(F.successful_payment)
    async def paid(message: Message) -> None:
        sp = message.successful_payment
        assert sp is not None
        await message.answer(f"paid {sp.total_amount} {sp.telegram_payment_charge_id}")

    return router


@pytest.mark.asyncio
async def test_full_stars_payment_and_refunds(tg: FakeTelegram, bot: Bot) -> None:
    dp = Dispatcher()
    dp.include_router(payments_router())
    user = tg.user(USER_ID, first_name="Li", language_code="zh")
    async with polling(dp, bot):
        await user.send("/buy")
        invoice_msg = await user.wait_for_message(lambda m: "invoice" in m)
        assert invoice_msg["invoice"]["currency"] == "XTR"
        charge_id = await user.pay()
        assert charge_id
        receipt = await user.wait_for_message(lambda m: m.get("text", "").startswith("paid"))
        assert receipt["text"] == f"paid 250 {charge_id}"

        answers = list(tg.precheckout_answers.values())
        assert answers[0]["ok"] is True and answers[0]["seconds"] < 10
        payment = tg.updates[-1]["message"]["successful_payment"]
        assert payment["invoice_payload"] == "course:42"

        # duplicate delivery of the same charge id
        await user.deliver_payment(charge_id=charge_id)
        await user.wait_for_message(lambda m: m.get("text", "").startswith("paid"))

    assert await bot.refund_star_payment(USER_ID, charge_id)
    with pytest.raises(TelegramBadRequest, match="CHARGE_ALREADY_REFUNDED"):
        await bot.refund_star_payment(USER_ID, charge_id)
    with pytest.raises(TelegramBadRequest, match="CHARGE_NOT_FOUND"):
        await bot.refund_star_payment(USER_ID, "stxUNKNOWN")
    assert tg.refunds == [
        {
            "user_id": USER_ID,
            "telegram_payment_charge_id": charge_id,
            "total_amount": 250,
            "invoice_payload": "course:42",
        }
    ]


@pytest.mark.asyncio
async def test_declined_pre_checkout(tg: FakeTelegram, bot: Bot) -> None:
    dp = Dispatcher()
    dp.include_router(payments_router(decline="Sold out"))
    user = tg.user(USER_ID)
    async with polling(dp, bot):
        await user.send("/buy")
        await user.wait_for_message(lambda m: "invoice" in m)
        assert await user.pay() is None
    assert user.last_payment_error == "Sold out"
    assert not any("successful_payment" in u.get("message", {}) for u in tg.updates)


@pytest.mark.asyncio
async def test_pay_times_out_when_bot_never_answers(tg: FakeTelegram, bot: Bot) -> None:
    user = tg.user(USER_ID)
    await bot.send_invoice(
        USER_ID,
        title="T",
        description="D",
        payload="p",
        currency="XTR",
        prices=[LabeledPrice(label="T", amount=1)],
    )
    with pytest.raises(TimeoutError, match="pre_checkout_query"):
        await user.pay(timeout=0.05)
    with pytest.raises(LookupError):
        await tg.user(2002).pay()


# --------------------------------------------------------------------------- buttons


@pytest.mark.asyncio
async def test_press_button_and_answer_callback(tg: FakeTelegram) -> None:
    router = Router()

    @router.message(Command("start"))
    async def start(message: Message) -> None:
        await message.answer(
            "<b>Catalog</b> for " + (message.from_user.first_name if message.from_user else ""),
            parse_mode="HTML",
            reply_markup=InlineKeyboardMarkup(
                inline_keyboard=[
                    [InlineKeyboardButton(text="Buy #42", callback_data="buy:42")],
                    [InlineKeyboardButton(text="Site", url="https://example.com")],
                ]
            ),
        )

    @router.callback_query(F.data.startswith("buy:"))
    async def buy(query: CallbackQuery) -> None:
        await query.answer("ok")
        assert isinstance(query.message, Message)
        await query.message.edit_text(f"chose {query.data}")

    dp = Dispatcher()
    dp.include_router(router)
    bot = make_bot(tg, default=DefaultBotProperties(parse_mode="HTML"))
    user = tg.user(USER_ID, first_name="Li")
    try:
        async with polling(dp, bot):
            await user.send("/start")
            card = await user.wait_for_message()
            assert card["text"] == "Catalog for Li"
            assert card["entities"] == [{"type": "bold", "offset": 0, "length": 7}]
            with pytest.raises(LookupError, match="Buy #42"):
                await user.press("Refund")
            with pytest.raises(LookupError, match="no callback_data"):
                await user.press("Site")
            update = await user.press("buy:42")  # by callback_data
            assert update["callback_query"]["data"] == "buy:42"
            assert update["callback_query"]["message"]["message_id"] == card["message_id"]
            query_id = update["callback_query"]["id"]
            await tg.wait_until(lambda: query_id in tg.callback_answers)
            assert tg.callback_answers[query_id]["text"] == "ok"
            await tg.wait_for_request("editMessageText")
            edited = tg.message(USER_ID, card["message_id"])
            assert edited["text"] == "chose buy:42"
            assert "reply_markup" not in edited  # edit_text without markup drops the keyboard
            with pytest.raises(LookupError, match="no inline keyboard"):
                await user.press("Buy #42")
    finally:
        await close_bot(bot)


@pytest.mark.asyncio
async def test_wait_for_message_times_out_with_context(tg: FakeTelegram, bot: Bot) -> None:
    user = tg.user(USER_ID)
    await user.send("/start")
    await bot.send_message(USER_ID, "hello")
    with pytest.raises(TimeoutError, match="hello"):
        await user.wait_for_message(lambda m: m.get("text") == "bye", timeout=0.05)


@pytest.mark.asyncio
async def test_python_telegram_bot_client_also_works(tg: FakeTelegram) -> None:
    telegram = pytest.importorskip("telegram")
    tg.user(USER_ID)
    async with telegram.Bot(tg.token, base_url=f"{tg.base_url}/bot") as ptb:
        assert (await ptb.get_me()).id == tg.bot_id
        keyboard = telegram.InlineKeyboardMarkup(
            [[telegram.InlineKeyboardButton("Buy", callback_data="buy:1")]]
        )
        msg = await ptb.send_message(
            USER_ID, "<i>hi</i>", parse_mode="HTML", reply_markup=keyboard
        )
        assert msg.text == "hi"
        with pytest.raises(telegram.error.BadRequest):
            await ptb.send_message(USER_ID, "<i>hi", parse_mode="HTML")
    assert tg.messages_for(USER_ID)[0]["reply_markup"]["inline_keyboard"][0][0]["text"] == "Buy"
