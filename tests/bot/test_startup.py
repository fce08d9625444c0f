"""A blip at start-up never kills the bot; a refused token is one clear line."""

from __future__ import annotations

import asyncio
import os
import sys

from bot.runner import start_channels
from tests.conftest import make_settings
from tests.fakes.telegram_api import has


async def test_the_bot_starts_once_the_bot_api_comes_back(sqlite_url, clock, tg, monkeypatch):
    from bot import runner
    from bot.bootstrap import build_app
    from bot.channels.telegram_aiogram import AiogramChannel
    from bot.demo import seed_demo

    monkeypatch.setattr(runner, "RETRY_FIRST_SECONDS", 0.05)
    settings = make_settings(sqlite_url, telegram_bot_token=tg.token, telegram_api_url=tg.base_url)
    app = await build_app(settings, clock=clock)
    async with app.uow() as uow:
        await seed_demo(uow)
    tg.fail_next("*", status=502, description="Bad Gateway", times=3)
    try:
        await start_channels(app, [AiogramChannel(app)], stop=asyncio.Event())
        user = tg.user(3301, language_code="en")
        await user.send("/catalog")
        await user.wait_for_message(has("Categories"))
    finally:
        await app.close()


def run_env(tmp_path, tg, token: str, log_level: str) -> dict:
    """The environment of a `coursebot run` against the fake Bot API."""
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.db",
        "TELEGRAM_BOT_TOKEN": token,
        "TELEGRAM_API_URL": tg.base_url,
        "RECOMMENDER_MODEL_PATH": str(tmp_path / "m.npz"),
        "WEB_PORT": "0",
        "LOG_LEVEL": log_level,
    }


async def test_a_refused_token_is_one_line_and_exit_code_2(tmp_path, tg):
    env = run_env(tmp_path, tg, "123:not-a-real-token", "ERROR")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    stderr = err.decode()
    assert proc.returncode == 2, stderr
    assert "TELEGRAM_BOT_TOKEN was refused" in stderr
    assert "Traceback" not in stderr
    assert "not-a-real-token" not in stderr


async def test_sigterm_stops_the_bot_cleanly_within_5_seconds(tmp_path, tg):
    env = run_env(tmp_path, tg, tg.token, "WARNING")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await tg.wait_for_request("getUpdates", timeout=60, since=0)
    proc.terminate()
    _, err = await asyncio.wait_for(proc.communicate(), 5)
    assert proc.returncode == 0, err.decode()
    assert "Unclosed client session" not in err.decode()
