"""Numbers read outside the handlers go through bot.parsing too (issue 17): console option
numbers, setting durations, ADMINS entries. `str.isdigit()` accepts `²` and `١`, which
`int()` refuses or reads as another number."""

from __future__ import annotations

import io

import pytest

from bot.channels.console import ConsoleChannel
from bot.core import Button, Reply
from bot.settings import admin_problem, parse_offset


async def test_a_console_line_of_odd_digits_is_text_not_an_option():
    console = ConsoleChannel(lambda msg: [], out=io.StringIO())
    await console.send("me", Reply("Pick", [[Button("A", "course:1")], [Button("B", "course:2")]]))
    assert console.to_incoming("2").payload == "course:2"
    for line in ("²", "١", "٢", "9" * 30, "0", "3"):
        msg = console.to_incoming(line)
        assert msg.kind == "text" and msg.text == line, line


@pytest.mark.parametrize("text", ["²h", "١٢m", "9" * 30 + "s", "99999999999999999d", "-1h"])
def test_a_bad_duration_is_a_value_error(text):
    with pytest.raises(ValueError, match="bad duration"):
        parse_offset(text)


def test_admins_telegram_ids_are_ascii_numbers():
    assert admin_problem("telegram:123456789") == ""
    assert "is a number" in admin_problem("telegram:١٢٣")
    assert "is a number" in admin_problem("telegram:12²")
