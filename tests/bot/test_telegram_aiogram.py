"""The learner journey and the payment rules through the real aiogram adapter over HTTP."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from sqlalchemy import func, select

from storage.models import Enrolment, Order, Payment
from tests.conftest import ADMIN_TG, free_port, start_telegram_app
from tests.fakes.telegram_api import has

JOURNEY = {
    "zh": {
        "browse": "📚 浏览课程",
        "card": "价格：150 ⭐",
        "paid": "支付成功",
        "mine": "我的课程",
        "title": "Python 入门：从零开始学编程",
    },
    "en": {
        "browse": "📚 Browse courses",
        "card": "Price: 150 ⭐",
        "paid": "Payment received",
        "mine": "My courses",
        "title": "Python for Beginners",
    },
}


async def count(app, model, *where) -> int:
    """Rows of `model` in the app's database."""
    async with app.uow() as uow:
        stmt = select(func.count()).select_from(model).where(*where)
        return int(await uow.session.scalar(stmt))


async def buy_python_course(user) -> str:
    """Open course #1 and pay for it; returns the charge id."""
    await user.send("/start course_1")
    await user.wait_for_message(has("#1"))
    await user.press("buy:1")
    await user.wait_for_message(lambda m: "invoice" in m)
    charge = await user.pay()
    assert charge, user.last_payment_error
    await user.wait_for_message(lambda m: "🎉" in (m.get("text") or ""))
    return charge


@pytest.mark.parametrize("locale", ["zh", "en"])
async def test_learner_journey(telegram_app, tg, locale):
    """start → catalog → card → buy → pay → mycourses, every reply in the learner's language."""
    words = JOURNEY[locale]
    user = tg.user(1001, first_name="Li", language_code=locale)
    await user.send("/start")
    await user.wait_for_message(has("👋"))
    await user.press(words["browse"])
    categories = await user.wait_for_message(lambda m: "cat:1:0" in str(m.get("reply_markup")))
    assert "(4)" in str(categories["reply_markup"])
    await user.press("cat:1:0")
    await user.wait_for_message(has("1/1"))
    await user.press("course:1")
    card = await user.wait_for_message(has("#1"))
    assert words["title"] in card["text"] and words["card"] in card["text"]
    await user.press("buy:1")
    invoice = await user.wait_for_message(lambda m: "invoice" in m)
    assert invoice["invoice"]["currency"] == "XTR" and invoice["invoice"]["total_amount"] == 150
    charge = await user.pay()
    assert charge is not None, user.last_payment_error
    await user.wait_for_message(has(words["paid"]))
    await user.send("/mycourses")
    mine = await user.wait_for_message(has(words["mine"]))
    assert words["title"] in mine["text"]
    assert await count(telegram_app, Payment, Payment.provider_charge_id == charge) == 1
    assert await count(telegram_app, Enrolment) == 1


async def test_commands_published_in_zh_and_en(telegram_app, tg):
    """setMyCommands was called for both languages with the learner commands."""
    calls = tg.calls("setMyCommands")
    by_lang = {c.get("language_code"): c["commands"] for c in calls}
    assert {"zh", "en"} <= set(by_lang)
    zh = {c["command"]: c["description"] for c in by_lang["zh"]}
    en = {c["command"]: c["description"] for c in by_lang["en"]}
    assert zh["catalog"] == "按分类浏览课程" and en["catalog"] == "Browse courses by category"
    assert "refund" not in zh


async def test_language_switch(telegram_app, tg):
    """/language en switches every later reply to English."""
    user = tg.user(1002, language_code="zh")
    await user.send("/help")
    await user.wait_for_message(has("可用命令"))
    await user.send("/language")
    await user.wait_for_message(has("Choose a language"))
    await user.press("English")
    await user.wait_for_message(has("English from now on"))
    await user.send("/help")
    await user.wait_for_message(has("Commands"))


async def test_search_chinese_and_english(telegram_app, tg):
    """`Python 入门` and `python` both find the Python course first."""
    user = tg.user(1003, language_code="zh")
    await user.send("/search Python 入门")
    reply = await user.wait_for_message(has("搜索结果"))
    assert listed(reply)[0].startswith("#1 Python 入门"), listed(reply)
    await user.send("/search python")
    reply = await user.wait_for_message(has("搜索结果"))
    found = "\n".join(listed(reply))
    assert "#1 Python 入门" in found and "#6 Python 数据分析" in found
    assert "摄影" not in found and "#" not in reply["text"], "each result once: its button"
    await user.send("摄影")
    reply = await user.wait_for_message(has("搜索结果"))
    assert "手机摄影" in "\n".join(listed(reply))


def listed(reply: dict) -> list[str]:
    """The button labels of a message (a list of courses is its buttons)."""
    return [b["text"] for row in reply["reply_markup"]["inline_keyboard"] for b in row]


async def test_html_in_names_and_search_renders_literally(telegram_app, tg):
    """`<b>&` in a name and in search words is escaped; the fake rejects broken HTML."""
    user = tg.user(1004, first_name="<b>&Tom", language_code="en")
    await user.send("/start")
    welcome = await user.wait_for_message(has("Hi"))
    assert "<b>&Tom" in welcome["text"]
    await user.send("/search <b>&")
    reply = await user.wait_for_message(has("<b>&"))
    assert "No course matches “<b>&”" in reply["text"]
    assert not tg.errors, tg.errors


async def test_non_admin_refund_is_refused(telegram_app, tg):
    """A learner who is not on ADMINS cannot /refund, and nothing is refunded."""
    user = tg.user(1005, language_code="en")
    await buy_python_course(user)
    await user.send("/refund 1")
    await user.wait_for_message(has("only admins"))
    assert not tg.refunds
    assert await count(telegram_app, Enrolment) == 1


async def test_admin_refund_revokes_enrolment(telegram_app, tg):
    """/refund calls refundStarPayment with the charge id and revokes the enrolment."""
    learner = tg.user(1006, language_code="en")
    charge = await buy_python_course(learner)
    admin = tg.user(ADMIN_TG, language_code="en")
    await admin.send("/refund 1")
    asked = await admin.wait_for_message(has("Refund payment #1"))
    assert tg.refunds == [], "/refund asks first"
    await admin.press("rfy:1", asked)
    await admin.wait_for_message(has("Refunded payment #1"))
    assert [r["telegram_payment_charge_id"] for r in tg.refunds] == [charge]
    assert await count(telegram_app, Enrolment) == 0
    await admin.press("rfy:1", asked)  # a second press of the same button
    await admin.wait_for_message(has("already refunded"))
    await admin.send("/refund 1")
    await admin.wait_for_message(has("already refunded"))
    assert len(tg.refunds) == 1


async def test_tampered_buttons_are_refused(telegram_app, tg):
    """A fabricated course id or someone else's order gets a polite refusal, changing nothing."""
    owner = tg.user(1007, language_code="en")
    await owner.send("/start course_2")
    await owner.wait_for_message(has("#2"))
    await owner.press("buy:2")
    await owner.wait_for_message(lambda m: "invoice" in m)
    intruder = tg.user(1008, language_code="en")
    await intruder.send("/start")
    await intruder.wait_for_message(has("Hi"))
    orders_before = await count(telegram_app, Order)
    for data, answer in (
        ("buy:9999", "can't be bought"),
        ("pay:1", "may not be yours"),
        ("course:abc", "not available"),
        ("cat:1:x", "no longer valid"),
    ):
        await tg.push_update(
            {
                "callback_query": {
                    "id": f"forged-{data}",
                    "from": intruder.user_dict,
                    "chat_instance": "x",
                    "data": data,
                }
            }
        )
        await intruder.wait_for_message(has(answer))
    assert await count(telegram_app, Order) == orders_before


async def test_pre_checkout_refuses_someone_elses_order(telegram_app, tg):
    """A pre-checkout query for another learner's order is answered ok=False."""
    owner = tg.user(1009, language_code="en")
    await owner.send("/start course_3")
    await owner.wait_for_message(has("#3"))
    await owner.press("buy:3")
    await owner.wait_for_message(lambda m: "invoice" in m)
    invoice = tg.invoices_for(owner.id)[-1]
    intruder = tg.user(1010, language_code="en")
    tg.invoices.append(invoice.__class__(**{**invoice.__dict__, "chat_id": intruder.id}))
    assert await intruder.pay() is None
    assert "no longer valid" in intruder.last_payment_error
    assert await count(telegram_app, Payment) == 0


async def test_replayed_update_is_handled_once(telegram_app, tg):
    """The same update_id delivered twice gets one answer."""
    user = tg.user(1011, language_code="en")
    raw = {
        "update_id": 777,
        "message": {
            "message_id": 5,
            "date": 1_790_000_000,
            "chat": user.chat_dict,
            "from": user.user_dict,
            "text": "/help",
            "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
        },
    }
    await tg.push_update(raw)
    await user.wait_for_message(has("Commands"))
    await tg.push_update(raw)
    await user.send("/start")
    await user.wait_for_message(has("Hi"))
    helps = [m for m in tg.messages_for(user.id) if "Commands" in (m.get("text") or "")]
    assert len(helps) == 1


async def test_reply_carries_the_quoted_text_or_caption(tg):
    """A reply's Incoming holds the replied-to message id and its text, or its caption."""
    from aiogram.types import Update

    from bot.channels.telegram_aiogram import message_to_incoming

    user = tg.user(1012, language_code="en")
    own = await user.send("/help")
    photo = await tg.call(
        "sendPhoto",
        {"chat_id": user.id, "photo": "https://x.example/a.jpg", "caption": "❓ Question #3"},
    )
    for quoted, expected in ((own["message"], "/help"), (photo, "❓ Question #3")):
        raw = await user.send("Yes.", reply_to=quoted)
        assert "reply_to_message" not in raw["message"]["reply_to_message"]
        update = Update.model_validate(raw)
        msg = message_to_incoming(update, update.message)
        assert (msg.kind, msg.text, msg.reply_to_text) == ("text", "Yes.", expected)
        assert msg.reply_to == str(raw["message"]["reply_to_message"]["message_id"])
    plain = Update.model_validate(await user.send("no reply"))
    assert message_to_incoming(plain, plain.message).reply_to_text is None
    with pytest.raises(LookupError):
        await user.send("Yes.", reply_to=999)


async def test_surplus_charge_is_refunded(telegram_app, tg):
    """A second charge for a course already owned is refunded automatically."""
    user = tg.user(1012, language_code="en")
    await buy_python_course(user)
    invoice = tg.invoices_for(user.id)[-1]
    await user.deliver_payment(invoice, "surplus-charge-1")
    await user.wait_for_message(has("refunded automatically"))
    assert [r["telegram_payment_charge_id"] for r in tg.refunds] == ["surplus-charge-1"]
    assert await count(telegram_app, Enrolment) == 1
    assert await count(telegram_app, Payment, Payment.status == "refunded") == 1


@pytest.fixture
async def webhook_app(db_url, clock, tg):
    """The app in webhook mode: the fake server POSTs updates to /telegram."""
    port = free_port()
    app, channel = await start_telegram_app(
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


async def test_same_payment_five_times_concurrently(webhook_app, tg):
    """One charge id delivered 5× concurrently (new update ids) → one payment, one enrolment."""
    app, _ = webhook_app
    user = tg.user(1013, language_code="en")
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


async def test_webhook_rejects_a_wrong_secret(webhook_app, tg):
    """A POST without the right secret header is refused and not processed."""
    app, port = webhook_app
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


async def test_one_web_server_serves_the_webhook_and_healthz(webhook_app, tg):
    """`/telegram` lives on the process's one web app, next to `/healthz`."""
    app, port = webhook_app
    assert app.web is not None and "/telegram" in app.web.paths()
    async with aiohttp.ClientSession() as http:
        resp = await http.get(f"http://127.0.0.1:{port}/healthz")
        assert resp.status == 200
        assert (await resp.json()) == {"ok": True, "channels": ["telegram"]}
    user = tg.user(1099, language_code="en")
    await user.send("/catalog")
    await user.wait_for_message(has("Categories"))
