"""Plain updates (a text message or a button press in a private chat) are read as they are,
without aiogram's models: they give the Incoming the models give; every other update is left
to the models."""

from __future__ import annotations

import copy

import pytest
from aiogram.types import Update

from bot.channels.telegram_common import (
    PlainObject,
    callback_to_incoming,
    lane_of,
    message_to_incoming,
    plain_update,
)

USER = {"id": 51, "is_bot": False, "first_name": "Ann", "last_name": "B", "language_code": "zh"}
CHAT = {"id": 51, "type": "private", "first_name": "Ann"}
TEXT = {
    "update_id": 9,
    "message": {
        "message_id": 3,
        "from": USER,
        "chat": CHAT,
        "date": 1700000000,
        "text": "/search@coursebot Python 入门",
        "entities": [{"type": "bot_command", "offset": 0, "length": 17}],
    },
}
PRESS = {
    "update_id": 10,
    "callback_query": {
        "id": "q1",
        "from": USER,
        "chat_instance": "ci",
        "data": "course:4",
        "message": {"message_id": 4, "date": 1700000000, "chat": CHAT, "text": "Python"},
    },
}


def changed(raw: dict, path: tuple, value) -> dict:
    """A copy of `raw` with the field at `path` set to `value` (removed when value is ...)."""
    raw = copy.deepcopy(raw)
    body = raw
    for key in path[:-1]:
        body = body[key]
    if value is ...:
        del body[path[-1]]
    else:
        body[path[-1]] = value
    return raw


def test_a_text_message_reads_as_aiogram_reads_it():
    plain, model = plain_update(TEXT), Update.model_validate(TEXT)
    assert isinstance(plain, PlainObject)
    assert message_to_incoming(plain, plain.message) == message_to_incoming(model, model.message)
    assert lane_of(plain) == lane_of(model) == "c51"
    assert plain.callback_query is None and plain.message.reply_to_message is None


def test_a_button_press_reads_as_aiogram_reads_it():
    plain, model = plain_update(PRESS), Update.model_validate(PRESS)
    assert isinstance(plain, PlainObject)
    query, modelled = plain.callback_query, model.callback_query
    assert callback_to_incoming(plain, query) == callback_to_incoming(model, modelled)
    assert lane_of(plain) == lane_of(model) == "c51"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (changed(TEXT, ("message", "reply_to_message"), TEXT["message"]), "a reply"),
        (changed(TEXT, ("message", "photo"), []), "a picture"),
        (changed(TEXT, ("message", "chat", "type"), "group"), "a group"),
        (changed(TEXT, ("message", "text"), 5), "text not a string"),
        (changed(TEXT, ("message", "from", "id"), "51"), "a user id not an integer"),
        (changed(TEXT, ("message", "from", "language_code"), True), "a boolean language"),
        (changed(TEXT, ("message", "date"), ...), "no date"),
        (changed(TEXT, ("message", "chat"), ...), "no chat"),
        (changed(TEXT, ("edited_message",), {}), "two kinds in one update"),
        (changed(PRESS, ("callback_query", "data"), None), "null data"),
        (changed(PRESS, ("callback_query", "game_short_name"), "g"), "a game"),
        (changed(PRESS, ("update_id",), "10"), "update_id not an integer"),
        ({"update_id": 11, "pre_checkout_query": {"id": "p"}}, "a pre-checkout query"),
        ([TEXT], "not an object"),
    ],
)
def test_anything_else_is_left_to_the_runtime_models(raw, why):
    assert plain_update(raw) is None, why
