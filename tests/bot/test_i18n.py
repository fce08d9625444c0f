"""The gettext catalogs are complete, consistent with each other and with the code."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir

from bot.i18n import LOCALES, Translator, read_catalog

ROOT = Path(__file__).resolve().parents[2]
CODE = ("bot", "handlers", "services", "scheduler")
PLACEHOLDER = re.compile(r"\{(\w+)[^}]*\}")


def used_ids() -> dict[str, str]:
    """Message ids the code names literally, with how: `t` or `plural`."""
    found: dict[str, str] = {}
    for folder in CODE:
        if not (ROOT / folder).is_dir():
            continue
        extracted = extract_from_dir(
            ROOT / folder,
            method_map=[("**.py", "python")],
            keywords={"t": None, "plural": None},
        )
        for _file, _line, message, _comments, _context in extracted:
            key = message[0] if isinstance(message, tuple) else message
            found[key] = "plural" if re.fullmatch(r"[a-z_]+(\.[a-z0-9_]+)+", key) else "t"
    return found


def entries(locale: str) -> dict[str, object]:
    return {m.id[0] if isinstance(m.id, tuple) else m.id: m for m in read_catalog(locale) if m.id}


def test_every_id_used_in_the_code_is_in_every_catalog():
    ids = used_ids()
    assert len(ids) > 100, "the extractor found almost nothing: is the keyword list right?"
    for locale in LOCALES:
        missing = sorted(set(ids) - set(entries(locale)))
        assert not missing, f"{locale} catalog lacks {missing}"


def test_catalogs_have_the_same_ids_and_no_untranslated_or_fuzzy_entry():
    zh, en = entries("zh"), entries("en")
    assert set(zh) == set(en)
    for locale, catalog in (("zh", zh), ("en", en)):
        for key, message in catalog.items():
            strings = message.string if isinstance(message.string, tuple) else (message.string,)
            assert all(s.strip() for s in strings), f"{locale}:{key} is untranslated"
            assert not message.fuzzy, f"{locale}:{key} is fuzzy"


def test_both_languages_use_the_same_placeholders():
    zh, en = entries("zh"), entries("en")
    for key in zh:
        strings = [
            s
            for message in (zh[key], en[key])
            for s in (message.string if isinstance(message.string, tuple) else (message.string,))
        ]
        names = [set(PLACEHOLDER.findall(s)) for s in strings]
        assert all(n == names[0] for n in names), f"{key}: placeholders differ {names}"


def test_plural_entries_are_plural_in_every_catalog():
    for key in ("live.scheduled", "catalog.page", "announce.queued"):
        assert read_catalog("en")[key].pluralizable
        assert len(read_catalog("en")[key].string) == 2
        assert read_catalog("zh")[key].pluralizable


def test_a_reply_with_a_count_uses_the_right_plural_in_zh_and_en():
    en, zh = Translator("en", None), Translator("zh", None)
    one = en.plural("live.cancelled.admin", 1, id=7, learners=1)
    many = en.plural("live.cancelled.admin", 3, id=7, learners=3)
    assert "1 learner was told" in one
    assert "3 learners were told" in many
    assert "3 位学员" in zh.plural("live.cancelled.admin", 3, id=7, learners=3)
