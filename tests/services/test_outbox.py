"""The one outbox door keeps everything a reply can carry."""

from __future__ import annotations

from sqlalchemy import select

from bot.core import Button, Document, Invoice, Reply, reply_from_body, reply_to_body
from scheduler.sender import drain_once
from services.outbox import Outgoing, enqueue
from storage.models import OutboxMessage
from tests.fakes.collecting import CollectingChannel

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


async def test_image_buttons_and_invoice_survive_the_outbox_round_trip(app):
    channel = CollectingChannel("console")
    app.channels.add(channel)
    invoice = Invoice("Python", "A course", "order:7", "XTR", 150, "Python")
    reply = Reply("<b>chart</b>", [[Button("Buy", "buy:1")]], image=PNG, invoice=invoice)
    async with app.uow() as uow:
        assert await enqueue(uow, Outgoing("console", "u1", reply, "test"), app.clock.now()) == 1
        await uow.commit()
    assert await drain_once(app) == 1
    received = channel.pop("u1")
    assert received.image == PNG
    assert received.invoice == invoice
    assert received.buttons == [[Button("Buy", "buy:1")]]
    assert received.text == "<b>chart</b>"


async def test_a_document_survives_the_outbox_round_trip(app):
    channel = CollectingChannel("console")
    app.channels.add(channel)
    document = Document("sales.csv", "\ufeff课程,金额\r\n".encode())
    reply = Reply("📎 sales.csv", document=document)
    assert reply_from_body(reply_to_body(reply)) == reply
    async with app.uow() as uow:
        await enqueue(uow, Outgoing("console", "u1", reply, "test"), app.clock.now())
        await uow.commit()
    assert await drain_once(app) == 1
    assert channel.pop("u1").document == document


async def test_a_repeated_dedupe_key_is_stored_once_and_unreachable_is_never_sent(app):
    channel = CollectingChannel("console")
    app.channels.add(channel)
    now = app.clock.now()
    async with app.uow() as uow:
        first = Outgoing("console", "u2", Reply("once"), "test", dedupe_key="k")
        gone = Outgoing("console", "u3", Reply("no"), "test", undeliverable="blocked")
        assert await enqueue(uow, [first, first, gone], now) == 2
        await uow.commit()
    assert await drain_once(app) == 1
    assert [r.text for r in channel.pop_all("u2")] == ["once"]
    assert channel.pop_all("u3") == []
    async with app.uow() as uow:
        rows = (await uow.session.execute(select(OutboxMessage))).scalars().all()
    assert sorted(r.status for r in rows) == ["sent", "unreachable"]
