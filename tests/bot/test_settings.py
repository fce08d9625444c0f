"""Settings: `.env.example` lists every one, and bad values fail with a clear message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_env_example_lists_every_setting_and_nothing_else():
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", EXAMPLE.read_text("utf-8"), re.M))
    assert listed == {name.upper() for name in Settings.model_fields}


def test_env_example_loads_as_it_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings(_env_file=EXAMPLE)
    assert settings.recommender_retrain_cron == "0 3 * * *"
    assert settings.zone.key == settings.timezone


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("recommender_retrain_cron", "every night", "Wrong number of fields"),
        ("timezone", "Mars/Olympus", "Mars/Olympus"),
        ("reminder_offsets", "24h,soon", "bad duration"),
    ],
)
def test_bad_values_say_what_is_wrong(field, value, message):
    with pytest.raises(ValidationError, match=message):
        Settings(_env_file=None, **{field: value})


def test_look_alike_variables_and_malformed_admins_are_reported():
    from bot.settings import Settings

    settings = Settings(admins="123,telegram:777000,telegram:42,wechat:oAbC", _env_file=None)
    problems = settings.problems({"TELEGRAM_TOKEN": "x", "TELEGRAM_BOT_TOKEN": "y", "HOME": "/"})
    assert any(p.startswith("TELEGRAM_TOKEN is not a coursebot setting") for p in problems)
    assert not any("TELEGRAM_BOT_TOKEN" in p for p in problems)
    assert any("'123' is not channel:user" in p for p in problems)
    assert any("telegram:777000" in p and "service account" in p for p in problems)
    assert len(problems) == 3


def test_telegram_service_accounts_are_never_admins():
    from bot.settings import Settings

    settings = Settings(admins="telegram:1087968824,telegram:777000,telegram:42", _env_file=None)
    assert not settings.is_admin("telegram", "1087968824")
    assert not settings.is_admin("telegram", "777000")
    assert settings.is_admin("telegram", "42")
