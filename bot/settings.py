"""Settings read from the environment and `.env` (pydantic-settings)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from dotenv import dotenv_values
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.parsing import is_number

_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_offset(text: str) -> timedelta:
    """Turn `24h`, `10m`, `2d` or `30s` into a timedelta."""
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in _UNITS or not is_number(text[:-1]):
        raise ValueError(f"bad duration {text!r}: use a number and one of d, h, m, s")
    try:
        return timedelta(**{_UNITS[text[-1]]: int(text[:-1])})
    except OverflowError:
        raise ValueError(f"bad duration {text!r}: too long") from None


SETTING_PREFIXES = ("TELEGRAM_", "WECHAT_", "WECHATPAY_", "COURSEBOT_")
CHANNELS = ("telegram", "wechat", "console")
#: Telegram accounts that are never people: GroupAnonymousBot and the service notifications.
TELEGRAM_SERVICE_IDS = frozenset({"1087968824", "777000"})


def admin_problem(entry: str) -> str:
    """Why an ADMINS entry can never match anyone ('' when it is fine)."""
    channel, _, user = entry.partition(":")
    if channel not in CHANNELS or not user:
        return f"ADMINS entry {entry!r} is not channel:user (e.g. telegram:123456789)"
    if channel == "telegram" and not is_number(user):
        return f"ADMINS entry {entry!r}: a Telegram user id is a number"
    if channel == "telegram" and user in TELEGRAM_SERVICE_IDS:
        return f"ADMINS entry {entry!r} is a Telegram service account and is never an admin"
    return ""


def _dotenv_names() -> list[str]:
    """Variable names in ./.env, if there is one."""
    path = Path(".env")
    return [name.upper() for name in dotenv_values(path)] if path.is_file() else []


class Settings(BaseSettings):
    """Every setting of coursebot; names match DESIGN.md and `.env.example`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./coursebot.db"
    telegram_bot_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    telegram_runtime: Literal["aiogram", "ptb"] = "aiogram"
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: SecretStr | None = None
    #: Announcements with Telegram's allow_paid_broadcast (0.1 Star per message, paid from the
    #: bot's balance) at up to `telegram_paid_broadcast_rate` messages per second.
    telegram_paid_broadcast: bool = False
    telegram_paid_broadcast_rate: float = Field(default=1000.0, gt=0, le=1000)
    wechat_token: SecretStr | None = None
    wechat_app_id: str | None = None
    wechat_app_secret: SecretStr | None = None
    wechat_aes_key: SecretStr | None = None
    wechat_api_url: str = "https://api.weixin.qq.com/cgi-bin/"
    # WeChat Official Account behaviour (issue 11).
    wechat_aes_key_previous: SecretStr | None = None
    wechat_reply_budget_seconds: float = Field(default=3.0, gt=0, le=4.5)
    wechat_max_body_bytes: int = Field(default=65536, ge=1024)
    wechat_template_id: str | None = None
    wechat_send_rate_per_second: float = Field(default=20.0, gt=0)
    wechat_token_refresh_margin_seconds: int = Field(default=240, ge=60)
    wechat_token_wait_seconds: float = Field(default=3.0, gt=0)
    # Shared store for several processes (the WeChat access token); the database when unset.
    redis_url: SecretStr | None = None
    wechatpay_mch_id: str | None = None
    wechatpay_cert_serial_no: str | None = None
    wechatpay_private_key_path: str | None = None
    wechatpay_apiv3_key: SecretStr | None = None
    wechatpay_api_url: str = "https://api.mch.weixin.qq.com"
    wechatpay_public_key_path: str | None = None
    wechatpay_public_key_id: str | None = None
    wechatpay_notify_url: str | None = None
    wechatpay_order_expire_minutes: int = Field(default=120, ge=5)
    wechatpay_query_after_seconds: int = Field(default=60, ge=0)
    web_host: str = "127.0.0.1"
    # Tracked session links (/go/<token>): the public base URL of the web server and the key
    # that signs the tokens (a random key is kept in the database when unset).
    public_url: str | None = None
    link_secret: SecretStr | None = None
    web_port: int = 8080
    admins: Annotated[frozenset[str], NoDecode] = frozenset()
    timezone: str = "Asia/Shanghai"
    reminder_offsets: Annotated[tuple[timedelta, ...], NoDecode] = (
        timedelta(hours=24),
        timedelta(hours=1),
        timedelta(minutes=10),
    )
    send_rate_per_second: float = 25.0
    default_locale: Literal["zh", "en"] = "zh"
    catalog_page_size: int = Field(default=5, ge=1, le=20)
    # Ratings, reviews and questions (issue 5).
    session_duration_minutes: int = Field(default=90, ge=1)
    rating_weight_content: float = Field(default=0.4, ge=0)
    rating_weight_instructor: float = Field(default=0.3, ge=0)
    rating_weight_interaction: float = Field(default=0.3, ge=0)
    review_max_chars: int = Field(default=1000, ge=1)
    reviews_page_size: int = Field(default=5, ge=1, le=20)
    question_max_chars: int = Field(default=2000, ge=1)
    question_rate_per_hour: int = Field(default=10, ge=1)
    faq_match_threshold: float = Field(default=0.25, gt=0, le=1)
    # Scheduler and outbox sender (issue 4).
    scheduler_misfire_grace_seconds: int = Field(default=3600, ge=1)
    scheduler_sync_seconds: float = Field(default=15.0, gt=0)
    scheduler_jobstore_url: str | None = None
    sender_batch_size: int = Field(default=100, ge=1, le=1000)
    sender_concurrency: int = Field(default=8, ge=1, le=256)
    sender_max_attempts: int = Field(default=5, ge=1)
    sender_lease_seconds: float = Field(default=120.0, gt=0)
    sender_poll_seconds: float = Field(default=0.5, gt=0)
    # Scale-out roles (issue 15): a standby scheduler (or a refused second poller's lease)
    # takes over within this many seconds of the holder's death.
    scheduler_lease_seconds: float = Field(default=30.0, gt=0)
    recommender_model_path: str = "./models/recommender.npz"
    recommender_retrain_cron: str = "0 3 * * *"
    recommender_retrain_new_interactions: int = Field(default=500, ge=0)
    recommender_retrain_check_minutes: float = Field(default=10.0, gt=0)
    recommender_reload_seconds: float = Field(default=60.0, ge=0)
    log_level: str = "INFO"

    @field_validator("admins", mode="before")
    @classmethod
    def _split_admins(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("reminder_offsets", mode="before")
    @classmethod
    def _split_offsets(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(parse_offset(part) for part in value.split(",") if part.strip())
        return value

    @field_validator("recommender_retrain_cron")
    @classmethod
    def _valid_crontab(cls, value: str) -> str:
        if value.strip():
            CronTrigger.from_crontab(value)
        return value.strip()

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _valid_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()):
            raise ValueError("use 1-256 characters of A-Z a-z 0-9 _ - (Telegram's rule)")
        return value

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> Settings:
        # Without a secret anybody who finds /telegram can post a forged update (a "payment").
        if self.telegram_webhook_url and self.telegram_webhook_secret is None:
            raise ValueError(
                "TELEGRAM_WEBHOOK_SECRET must be set when TELEGRAM_WEBHOOK_URL is set "
                "(webhook mode refuses to start without it)"
            )
        return self

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            message = f"unknown time zone {value!r}: use a name like Asia/Shanghai"
            raise ValueError(message) from None
        return value

    @cached_property
    def zone(self) -> ZoneInfo:
        """The default learner time zone."""
        return ZoneInfo(self.timezone)

    def is_admin(self, channel: str, user_ref: str) -> bool:
        """True when `channel:user_ref` is on the ADMINS allow-list (never a Telegram service
        account such as GroupAnonymousBot or the Telegram notifications account)."""
        if channel == "telegram" and user_ref in TELEGRAM_SERVICE_IDS:
            return False
        return f"{channel}:{user_ref}" in self.admins

    def problems(self, environ: Mapping[str, str] | None = None) -> list[str]:
        """Warnings for the operator: look-alike unknown variables, malformed ADMINS entries."""
        environ = os.environ if environ is None else environ
        known = {name.upper() for name in type(self).model_fields}
        found = [
            f"{name} is not a coursebot setting and is ignored (see .env.example)"
            for name in sorted(set(environ) | set(_dotenv_names()))
            if name.startswith(SETTING_PREFIXES) and name not in known
        ]
        return found + [
            admin_problem(entry) for entry in sorted(self.admins) if admin_problem(entry)
        ]

    def secrets(self) -> list[str]:
        """Every secret value that is set, for the log redaction filter."""
        fields = (
            self.telegram_bot_token,
            self.telegram_webhook_secret,
            self.wechat_token,
            self.wechat_app_secret,
            self.wechat_aes_key,
            self.wechat_aes_key_previous,
            self.wechatpay_apiv3_key,
            self.link_secret,
        )
        return [f.get_secret_value() for f in fields if f and f.get_secret_value()]
