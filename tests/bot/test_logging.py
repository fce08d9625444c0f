"""Secrets never reach the logs."""

from __future__ import annotations

import io
import logging

from bot.logging_setup import RedactSecrets
from tests.conftest import start_telegram_app


def test_filter_redacts_secrets_and_tokens_in_urls():
    """Configured secrets and any bot token inside a URL become ***."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets(["hunter2-secret"]))
    log = logging.getLogger("test.redact")
    log.addHandler(handler)
    try:
        log.warning("GET https://api/bot123456:ABC-def_ghi/getMe with %s", "hunter2-secret")
        try:
            raise RuntimeError("boom hunter2-secret")
        except RuntimeError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    output = stream.getvalue()
    assert "hunter2-secret" not in output and "123456:ABC" not in output
    assert "/bot***" in output and "boom ***" in output


async def test_canary_token_absent_from_a_real_session(sqlite_url, clock, tg):
    """A whole Telegram session logged at DEBUG never shows the bot token."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root = logging.getLogger()
    app, channel = await start_telegram_app(sqlite_url, clock, tg)
    handler.addFilter(RedactSecrets(app.settings.secrets()))
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        user = tg.user(2001, language_code="en")
        await user.send("/start")
        await user.wait_for_message()
        await user.send("/refund 1")
        await user.wait_for_message()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        await channel.stop()
        await app.close()
    output = stream.getvalue()
    assert output, "something was logged"
    assert tg.token not in output
    assert tg.token.split(":")[1] not in output
