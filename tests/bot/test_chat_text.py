"""Chat text without rough edges: every catalog message rendered in English with a count of 1
keeps its argument names, says "1 learner" (never "1 learners" or "learner(s)"), and only uses
the HTML tags Telegram understands."""

from __future__ import annotations

import re

from bot.channels.text import plain
from bot.i18n import Translator, read_catalog

#: Tags of Telegram's HTML parse mode; any other `<word>` is swallowed by it (and by `plain`).
TELEGRAM_TAGS = {
    "b",
    "i",
    "u",
    "s",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-spoiler",
    "strong",
    "em",
}
TAG = re.compile(r"</?([a-zA-Z][\w-]*)[^>]*>")
PLACEHOLDER = re.compile(r"\{(\w+)[^}]*\}")
COUNTED = (
    r"learners|reviews|ratings|courses|sessions|replays|payments|questions|lessons|people"
    r"|days|hours|minutes|messages|recipients|enrolments|buyers|uses|answers"
)
#: A number placeholder followed by a plural noun: this text must be a plural entry.
NUMBER_THEN_PLURAL = re.compile(r"\{(\w+)\}\s+(?:\w+\s+)?(" + COUNTED + r")\b")
ONE_THEN_PLURAL = re.compile(r"\b1\s+(?:\w+\s+)?(" + COUNTED + r")\b")


def english() -> dict:
    return {m.id[0] if isinstance(m.id, tuple) else m.id: m for m in read_catalog("en") if m.id}


def strings(message) -> tuple[str, ...]:
    return message.string if isinstance(message.string, tuple) else (message.string,)


def rendered_with_one(key: str, message) -> str:
    """The English text of `key` with every placeholder 1 (plural entries with count 1)."""
    en = Translator("en", None)
    names = {n for s in strings(message) for n in PLACEHOLDER.findall(s)}
    values = dict.fromkeys(names, 1)
    return en.plural(key, 1, **values) if message.pluralizable else en(key, **values)


def test_no_text_uses_a_tag_telegram_would_swallow():
    """`/refund <payment_id>` shows as "/refund " on Telegram and in the console: write
    `&lt;payment_id&gt;` or plain words."""
    bad = {
        key: tag
        for key, message in english().items()
        for s in strings(message)
        for tag in TAG.findall(s)
        if tag.lower() not in TELEGRAM_TAGS
    }
    assert not bad, f"texts with tags that vanish: {bad}"


def test_usage_lines_keep_their_argument_names_when_shown_as_plain_text():
    for key, message in english().items():
        text = plain(rendered_with_one(key, message))
        assert "  (" not in text and " )" not in text, f"{key}: empty placeholder in {text!r}"
        if key.endswith("usage"):
            assert re.search(r"/\w+ \S", text) or "/" not in text, f"{key}: {text!r}"


def test_counted_nouns_are_plural_entries_and_singular_for_one():
    for key, message in english().items():
        text = rendered_with_one(key, message)
        assert "(s)" not in text, f"{key}: {text!r}"
        assert not ONE_THEN_PLURAL.search(text), f"{key} says {text!r} for a count of 1"
        if not message.pluralizable:
            hit = NUMBER_THEN_PLURAL.search(message.string)
            assert not hit, f"{key}: '{hit.group(0)}' needs a plural entry (t.plural)"
