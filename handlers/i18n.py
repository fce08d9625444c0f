"""Reply texts in zh and en, plus Babel formatting of money and time."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.numbers import format_currency

LOCALES = ("zh", "en")
_BABEL_LOCALE = {"zh": "zh_CN", "en": "en_US"}
MESSAGES: dict[str, dict[str, str]] = {}


def add_messages(messages: dict[str, dict[str, str]]) -> None:
    """Register a feature's texts; every key needs every locale."""
    for key, texts in messages.items():
        missing = set(LOCALES) - set(texts)
        if missing:
            raise ValueError(f"message {key!r} lacks {sorted(missing)}")
        if key in MESSAGES and MESSAGES[key] != texts:
            raise ValueError(f"message {key!r} defined twice")
        MESSAGES[key] = texts


add_messages(
    {
        "admin.refused": {
            "zh": "抱歉，这个命令只有管理员可以使用。",
            "en": "Sorry, only admins can use this command.",
        },
        "error.generic": {
            "zh": "抱歉，出了点问题，请稍后再试。",
            "en": "Sorry, something went wrong. Please try again later.",
        },
        "error.unknown_command": {
            "zh": "我没听懂这个命令。发送 /help 查看我能做什么。",
            "en": "I don't know that command. Send /help to see what I can do.",
        },
        "error.stale_button": {
            "zh": "这个按钮已经失效了，请重新打开 /catalog。",
            "en": "That button is no longer valid. Please open /catalog again.",
        },
    }
)


class Translator:
    """Texts and formats for one locale and time zone."""

    def __init__(self, locale: str, zone: ZoneInfo) -> None:
        self.locale = locale if locale in LOCALES else "en"
        self.zone = zone

    def __call__(self, key: str, **values: object) -> str:
        """The text for `key` in this locale, with `{placeholders}` filled."""
        text = MESSAGES[key][self.locale]
        return text.format(**values) if values else text

    def pick(self, zh: str, en: str) -> str:
        """Choose between a zh and an en field of a record (falls back to the other)."""
        return (zh or en) if self.locale == "zh" else (en or zh)

    def stars(self, amount: int) -> str:
        """A Telegram Stars price."""
        return f"{amount} ⭐"

    def cny(self, fen: int) -> str:
        """A CNY price given in fen."""
        return format_currency(fen / 100, "CNY", locale=_BABEL_LOCALE[self.locale])

    def when(self, moment: datetime, zone: ZoneInfo | None = None) -> str:
        """A UTC-aware moment shown in the learner's zone."""
        local = moment.astimezone(zone or self.zone)
        pattern = "yyyy-MM-dd HH:mm zzz" if self.locale == "en" else "yyyy年M月d日 HH:mm zzz"
        return format_datetime(local, pattern, locale=_BABEL_LOCALE[self.locale])


def translator_for(locale: str, settings, zone_name: str | None = None) -> Translator:
    """A translator for a learner's locale and time zone (default: TIMEZONE)."""
    zone = ZoneInfo(zone_name) if zone_name else settings.zone
    return Translator(locale, zone)
