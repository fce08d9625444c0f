"""/recommend through the real aiogram adapter against the fake Bot API."""

from __future__ import annotations

import re

from tests.bot.test_telegram_aiogram import buy_python_course
from tests.fakes.telegram_api import has


async def test_recommend_after_purchase_and_on_demand(telegram_app, tg):
    """Suggestions never include owned courses and each names a real course or category."""
    user = tg.user(3001, language_code="en")
    await user.send("/start course_6")  # views the pandas course: a browsed category
    await user.wait_for_message(has("#6"))
    await buy_python_course(user)
    await user.send("/recommend")
    reply = await user.wait_for_message(has("You may also like"))
    keyboard = [b for row in reply["reply_markup"]["inline_keyboard"] for b in row]
    lines = [b["text"] for b in keyboard]  # each suggestion once: its button is the listing
    assert 1 <= len(lines) <= 5 and "#" not in reply["text"]
    ids = [int(re.match(r"#(\d+) ", line).group(1)) for line in lines]
    assert 1 not in ids, "an owned course is never suggested"
    titles = {"Python for Beginners", "Data analysis", "Programming", "Career", "Lifestyle"}
    for line in lines:
        reason = line.split(" — ", 1)[1]
        named = any(name in reason for name in titles)
        assert named or reason in ("popular with learners like you", "popular with everyone")
    buttons = [b["callback_data"] for b in keyboard]
    assert buttons == [f"course:{i}:rec" for i in ids], "suggestions are marked for rec_click"


async def test_new_learner_gets_suggestions(telegram_app, tg):
    """A learner with no history still gets suggestions (cold-start fallback)."""
    user = tg.user(3002, language_code="zh")
    await user.send("/recommend")
    reply = await user.wait_for_message(has("猜你喜欢"))
    assert len(reply["reply_markup"]["inline_keyboard"]) >= 1
