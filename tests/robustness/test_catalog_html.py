"""Every message of every catalog, filled with example values (hostile ones included), is
valid for Telegram once the adapter prepares it: the fake Bot API's HTML parser accepts it,
and placeholders such as `<question_id>` reach the user literally."""

from __future__ import annotations

import re
import string

import pytest

from bot.channels.telegram_common import safe_html
from bot.i18n import LOCALES, read_catalog
from tests.fakes.telegram_api import parse_html

EXAMPLES = ["42", "<b>x</b> & <i>", "Li & <Wang>", "\ud800 lone", "2030-03-15 20:00"]


class Example(dict):
    """Any placeholder gets the example value (format specs are dropped)."""

    def __init__(self, value: str) -> None:
        super().__init__()
        self.value = value

    def __missing__(self, key: str) -> str:
        return self.value


def fill(template: str, value: str) -> str:
    """The template with every `{name}` / `{name:spec}` replaced by `value`."""
    out = []
    for literal, field, _spec, _conv in string.Formatter().parse(template):
        out.append(literal)
        if field is not None:
            out.append(value)
    return "".join(out)


def messages(locale: str) -> list[tuple[str, str]]:
    found = []
    for message in read_catalog(locale):
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple | list) else [message.string]
        key = message.id[0] if isinstance(message.id, tuple | list) else message.id
        found += [(key, s) for s in strings if s]
    return found


@pytest.mark.parametrize("locale", LOCALES)
def test_every_message_is_valid_telegram_html(locale):
    checked = 0
    for key, template in messages(locale):
        for value in EXAMPLES:
            try:
                text = fill(template, value)
            except ValueError:  # a template with a stray brace shows it as is
                text = template
            html = safe_html(text)
            try:
                parse_html(html)
            except ValueError as error:
                pytest.fail(f"{locale} {key!r} with {value!r}: {error}: {html!r}")
            checked += 1
    assert checked > 100


def test_placeholders_reach_the_user_literally():
    plain, _ = parse_html(safe_html("Usage: /faq <question_id> <text>"))
    assert plain == "Usage: /faq <question_id> <text>"
    plain, entities = parse_html(safe_html("<b>Bold</b> stays & <code>x</code>"))
    assert plain == "Bold stays & x" and len(entities) == 2
    assert not re.search("&(?!amp;|lt;|gt;)", safe_html("a & b <c>"))
