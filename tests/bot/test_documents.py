"""Documents reach the user: `/export` sends a CSV (UTF-8 with BOM, Chinese intact) and `/mydata`
a JSON of the learner's rows, as Telegram documents (aiogram and PTB, through the fake Bot API)
and as files the console prints the path of."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path

import pytest

from bot.channels.console import ConsoleChannel
from bot.channels.telegram_common import MAX_CAPTION, reply_parts
from bot.core import Button, Document, Reply
from services import export
from storage.models import Identity
from tests.bot.test_telegram_ptb import start_ptb_app
from tests.conftest import ADMIN_TG, start_telegram_app
from tests.services.test_stats import build_dataset

BOM = "\ufeff".encode()
LEARNER_TG = 70_002


@pytest.fixture(params=["aiogram", "ptb"])
async def running(request, sqlite_url, clock, tg):
    """The app with one of the two Telegram runtimes polling the fake."""
    start = start_telegram_app if request.param == "aiogram" else start_ptb_app
    app, channel = await start(sqlite_url, clock, tg)
    yield app
    await channel.stop()
    await app.close()


async def chinese_titles(app) -> set[str]:
    """The Chinese titles of the demo courses."""
    async with app.uow() as uow:
        return {c.title_zh for c in await uow.courses.all()}


async def own_identity(app, learner_id: int, channel: str, user_ref: str, now) -> None:
    """Give a learner of the dataset an account on `channel`."""
    async with app.uow() as uow:
        row = Identity(learner_id=learner_id, channel=channel, user_ref=user_ref)
        row.last_seen_at = now
        uow.session.add(row)
        await uow.commit()


def check_sales_csv(data: bytes, titles: set[str]) -> None:
    """The sales CSV of the dataset: BOM, seven payments, Chinese titles as stored."""
    assert data.startswith(BOM)
    rows = export.read_csv(data)
    assert len(rows) == 7
    assert {r["title_zh"] for r in rows} <= titles
    assert any(re.search("[\u4e00-\u9fff]", r["title_zh"]) for r in rows)


def check_mydata(data: bytes, user_ref: str) -> None:
    """The JSON of dataset learner 2: their two payments and enrolments, their account."""
    exported = json.loads(data.decode("utf-8"))
    assert len(exported["payments"]) == 2 and len(exported["enrolments"]) == 2
    assert [i["user_ref"] for i in exported["identities"]] == [user_ref]


async def test_export_and_mydata_arrive_as_telegram_documents(running, tg, clock):
    app = running
    data = await build_dataset(app, clock.now())
    await own_identity(app, data["L"][2], "telegram", str(LEARNER_TG), clock.now())
    admin = tg.user(ADMIN_TG, language_code="en")
    await admin.send("/export sales")
    sent = await admin.wait_for_message(lambda m: "document" in m, timeout=10)
    assert "7 rows" in sent["caption"]
    upload = tg.document_of(sent)
    assert re.fullmatch(r"sales-\d{8}-\d{6}\.csv", sent["document"]["file_name"])
    check_sales_csv(upload.data, await chinese_titles(app))

    learner = tg.user(LEARNER_TG, language_code="zh")
    await learner.send("/mydata")
    sent = await learner.wait_for_message(lambda m: "document" in m, timeout=10)
    assert sent["document"]["file_name"].endswith(".json") and "JSON" in sent["caption"]
    check_mydata(tg.document_of(sent).data, str(LEARNER_TG))


async def test_the_console_saves_documents_and_prints_their_paths(app, clock, tmp_path):
    data = await build_dataset(app, clock.now())
    await own_identity(app, data["L"][2], "console", "learner2", clock.now())
    out = io.StringIO()
    console = ConsoleChannel(app.dispatcher.dispatch, out=out, locale="en")
    console.image_dir = tmp_path
    app.channels.add(console)

    async def saved_after(line: str, user_ref: str = "me") -> bytes:
        msg = dataclasses.replace(console.to_incoming(line), user_ref=user_ref)
        for reply in await app.dispatcher.dispatch(msg):
            await console.send(user_ref, reply)
        path = Path(re.findall(r"📎 (\S+)", out.getvalue())[-1])
        assert path.parent.parent == tmp_path
        return path.read_bytes()

    check_sales_csv(await saved_after("/export sales"), await chinese_titles(app))
    check_mydata(await saved_after("/mydata", "learner2"), "learner2")


def test_reply_parts_caption_a_short_text_and_put_the_keyboard_last():
    doc = Document("a.csv", b"x")
    keys = [[Button("Again", "again")]]
    (only,) = reply_parts(Reply("📎 <b>a</b> & b", keys, document=doc))
    assert (only.kind, only.text, only.filename, only.keyboard) == (
        "document",
        "📎 <b>a</b> &amp; b",
        "a.csv",
        True,
    )
    long = reply_parts(Reply("x" * (MAX_CAPTION + 1), keys, document=doc))
    assert [(p.kind, p.keyboard) for p in long] == [("message", False), ("document", True)]
    assert long[1].text is None
    both = reply_parts(Reply("chart", image=b"png", document=doc))
    assert [(p.kind, p.text) for p in both] == [("photo", "chart"), ("document", None)]
