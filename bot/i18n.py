"""Reply texts from the gettext catalogs in `locales/`, plus Babel formatting of money and time.

Message ids are stable keys (`catalog.page`); each catalog holds the text for its language.
The `.po` files are read directly at start-up (compiled in memory), so no build step is needed.
Extract new ids with `pybabel extract -F babel.cfg -k t -k plural -o coursebot.pot .`.
"""

from __future__ import annotations

import gettext
from datetime import datetime
from functools import cache
from importlib import resources
from io import BytesIO
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency

LOCALES = ("zh", "en")
DOMAIN = "coursebot"
_BABEL_LOCALE = {"zh": "zh_CN", "en": "en_US"}
STARS = "XTR"
CNY = "CNY"


def catalog_path(locale: str):
    """The `.po` file of one locale."""
    return resources.files("locales") / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def read_catalog(locale: str):
    """The Babel catalog of one locale (parsed once)."""
    with catalog_path(locale).open("rb") as po:
        return read_po(po, locale=_BABEL_LOCALE[locale], domain=DOMAIN)


@cache
def translations(locale: str) -> gettext.GNUTranslations:
    """gettext translations of one locale, compiled from its `.po` in memory."""
    compiled = BytesIO()
    write_mo(compiled, read_catalog(locale))
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def has_message(key: str) -> bool:
    """True when `key` is a message id of the catalogs."""
    return key in read_catalog(LOCALES[0])


class Translator:
    """Texts and formats for one locale and time zone."""

    def __init__(self, locale: str, zone: ZoneInfo | None) -> None:
        self.locale = locale if locale in LOCALES else "en"
        self.zone = zone
        self._gettext = translations(self.locale)

    def __call__(self, key: str, **values: object) -> str:
        """The text for `key` in this locale, with `{placeholders}` filled."""
        text = self._gettext.gettext(key)
        return text.format(**values) if values else text

    def plural(self, key: str, count: int, /, **values: object) -> str:
        """The plural form of `key` that fits `count`, with `{placeholders}` filled."""
        return self._gettext.ngettext(key, key, count).format(**values)

    def pick(self, zh: str, en: str) -> str:
        """Choose between a zh and an en field of a record (falls back to the other)."""
        return (zh or en) if self.locale == "zh" else (en or zh)

    def stars(self, amount: int) -> str:
        """A Telegram Stars price."""
        return f"{amount} ⭐"

    def cny(self, fen: int) -> str:
        """A CNY price given in fen."""
        return format_currency(fen / 100, "CNY", locale=_BABEL_LOCALE[self.locale])

    def money(self, amount: int, currency: str) -> str:
        """An amount in its currency's smallest unit: ⭐ for Stars, yuan for CNY (fen)."""
        if currency == STARS:
            return self.stars(amount)
        if currency == CNY:
            return self.cny(amount)
        return f"{amount} {currency}"

    def when(self, moment: datetime, zone: ZoneInfo | None = None) -> str:
        """A UTC-aware moment shown in the learner's zone."""
        local = moment.astimezone(zone or self.zone)
        pattern = "yyyy-MM-dd HH:mm zzz" if self.locale == "en" else "yyyy年M月d日 HH:mm zzz"
        return format_datetime(local, pattern, locale=_BABEL_LOCALE[self.locale])


def translator_for(locale: str, settings, zone_name: str | None = None) -> Translator:
    """A translator for a learner's locale and time zone (default: TIMEZONE)."""
    zone = ZoneInfo(zone_name) if zone_name else settings.zone
    return Translator(locale, zone)
