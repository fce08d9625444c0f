"""An admin sends a picture captioned `/cover <id>` on Telegram (aiogram and PTB): the adapter
fetches its largest size through getFile, the course card then shows it. `/cover <id>` alone
asks for the picture next; a learner's picture changes nothing."""

from __future__ import annotations

import pytest

from tests.bot.test_telegram_ptb import start_ptb_app
from tests.conftest import ADMIN_TG, start_telegram_app
from tests.fakes.telegram_api import has

#: A PNG header and enough bytes that the thumbnail (the first 64) differs from the full size.
PICTURE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture(params=["aiogram", "ptb"])
async def running(request, sqlite_url, clock, tg):
    """The app with one of the two Telegram runtimes polling the fake."""
    start = start_telegram_app if request.param == "aiogram" else start_ptb_app
    app, channel = await start(sqlite_url, clock, tg)
    yield app
    await channel.stop()
    await app.close()


async def test_a_captioned_picture_becomes_the_course_cover(running, tg):
    admin = tg.user(ADMIN_TG, first_name="Boss", language_code="en")
    await admin.send_photo(PICTURE, caption="/cover 1")
    await admin.wait_for_message(has("new cover"), timeout=10)
    fetched = [p["file_id"] for p in tg.calls("getFile")]
    assert len(fetched) == 1 and tg.files[fetched[0]].data == PICTURE, "the largest size"

    learner = tg.user(70_001, language_code="en")
    await learner.send("/start course_1")
    card = await learner.wait_for_message(lambda m: "photo" in m, timeout=10)
    assert tg.files[card["photo"][-1]["file_id"]].data == PICTURE


async def test_cover_then_a_picture_sets_it_and_a_learners_picture_changes_nothing(running, tg):
    admin = tg.user(ADMIN_TG, first_name="Boss", language_code="en")
    await admin.send("/cover 2")
    await admin.wait_for_message(has("Now send the picture for course #2"), timeout=10)
    await admin.send_photo(PICTURE)
    await admin.wait_for_message(has("Course #2 has a new cover"), timeout=10)

    learner = tg.user(70_002, language_code="en")
    await learner.send_photo(PICTURE, caption="/cover 3")
    await learner.wait_for_message(timeout=10)
    await learner.send("/start course_3")
    card = await learner.wait_for_message(has("Cracking 50"), timeout=10)
    assert "photo" not in card, "course 3 has no cover"
