"""The storefront through the dispatcher: prices in the channel's currency, paying against the
order, recommendation clicks."""

from __future__ import annotations

from sqlalchemy import select

from bot.core import PaymentInfo, PreCheckoutAnswer, Reply
from bot.i18n import CNY, Translator
from storage.models import Enrolment, Interaction, Payment
from tests.fakes.collecting import CollectingChannel
from tests.handlers.support import Chat, payloads

YUAN_199 = Translator("en", None).money(19900, CNY)


def wechat(app) -> CollectingChannel:
    """A CNY channel called "wechat" (as the WeChat adapter declares itself)."""
    if "wechat" not in app.channels:
        app.channels.add(CollectingChannel("wechat", currency=CNY))
    return app.channels.get("wechat")


async def outputs(app, channel: CollectingChannel, user_ref: str, **fields) -> list:
    found = await channel.receive(app, user_ref, locale="en", **fields)
    channel.pop_all(user_ref)
    return found


async def interactions(app, kind: str) -> list[Interaction]:
    async with app.uow() as uow:
        stmt = select(Interaction).where(Interaction.kind == kind)
        return list((await uow.session.execute(stmt)).scalars())


async def test_a_cny_channel_shows_and_invoices_yuan(app):
    wechat(app)
    person = Chat(app, "o1", channel="wechat")
    page = await person.press("cat:1:0")
    labels = [b.label for row in page.buttons for b in row]
    assert f"#1 Python for Beginners · {YUAN_199}" in labels
    card = await person.press("course:1")
    assert f"Price: {YUAN_199}" in card.text and "buy:1" in payloads(card)
    invoice = (await person.press("buy:1")).invoice
    assert (invoice.currency, invoice.amount) == (CNY, 19900)
    found = await person.send("/search python")
    assert any(YUAN_199 in b.label for row in found.buttons for b in row)


async def test_stars_on_an_unregistered_channel(app):
    card = await Chat(app, "u1", channel="console").press("course:1")
    assert "150 ⭐" in card.text


async def test_a_payment_in_the_wrong_currency_is_refunded_and_never_enrols(app):
    channel = wechat(app)
    person = Chat(app, "o2", channel="wechat")
    invoice = (await person.press("buy:1")).invoice
    stars = PaymentInfo("XTR", 150, invoice.payload, charge_id="tx-w1", provider="wechatpay")
    (answer,) = await outputs(app, channel, "o2", kind="pre_checkout", payment=stars)
    assert isinstance(answer, PreCheckoutAnswer) and not answer.ok
    (reply,) = await outputs(app, channel, "o2", kind="payment", payment=stars)
    assert isinstance(reply, Reply) and "refunded" in reply.text
    assert channel.refunds == [("o2", "tx-w1")]
    right = PaymentInfo(CNY, 19900, invoice.payload, charge_id="tx-w2", provider="wechatpay")
    (ok,) = await outputs(app, channel, "o2", kind="pre_checkout", payment=right)
    assert ok.ok
    paid = await outputs(app, channel, "o2", kind="payment", payment=right)
    assert "Payment received" in paid[0].text
    again = await outputs(app, channel, "o2", kind="payment", payment=right)
    assert [r.text for r in again] == [
        "This payment was already recorded; the course is in /mycourses."
    ]
    async with app.uow() as uow:
        statuses = sorted(p.status for p in (await uow.session.execute(select(Payment))).scalars())
        enrolments = (await uow.session.execute(select(Enrolment))).scalars().all()
    assert statuses == ["paid", "refunded"] and len(enrolments) == 1
    assert channel.refunds == [("o2", "tx-w1")]


async def test_opening_a_suggestion_records_a_recommendation_click(app):
    person = Chat(app, "u3")
    suggested = await person.send("/recommend")
    rec_buttons = [p for p in payloads(suggested) if p.startswith("course:")]
    assert rec_buttons and all(p.endswith(":rec") for p in rec_buttons)
    await person.press("course:1")
    assert not await interactions(app, "rec_click"), "a plain card view is not a click"
    course_id = int(rec_buttons[0].split(":")[1])
    card = await person.press(rec_buttons[0])
    assert f"#{course_id}" in card.text
    (click,) = await interactions(app, "rec_click")
    assert click.course_id == course_id
    assert len(await interactions(app, "view")) == 2


async def test_tampered_course_payloads_are_refused(app):
    person = Chat(app, "u4")
    for payload in ("course:1:foo", "course:1:rec:2", "course:x:rec", "course:999:rec"):
        assert "not available" in (await person.press(payload)).text
    assert not await interactions(app, "rec_click")
    assert not await interactions(app, "view")
