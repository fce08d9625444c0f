"""A NUL character in a learner's text (PostgreSQL text refuses it) is dropped at the adapter:
the question is stored and answered on both databases, and the display name too."""

from __future__ import annotations

from sqlalchemy import select

from storage.models import Question
from tests.conftest import start_telegram_app
from tests.fakes.telegram_api import has
from tests.robustness.test_telegram_hostile import message_update


async def test_nul_characters_are_dropped_before_anything_is_stored(db_url, clock, tg):
    app, channel = await start_telegram_app(db_url, clock, tg)
    try:
        user = tg.user(4301, language_code="en", first_name="Nu\x00ll")
        await user.send("/start")
        await tg.push_update(message_update(900, 4301, "/ask 1 what\x00 is a list?"))
        await user.wait_for_message(has("#"), timeout=10)
        async with app.uow() as uow:
            texts = (await uow.session.scalars(select(Question.text))).all()
        assert len(texts) == 1 and "\x00" not in texts[0] and "what is a list?" in texts[0]
        assert channel.failed_updates == 0
    finally:
        await channel.stop()
        await app.close()
