"""`coursebot run`: start the configured channels and wait until stopped."""

from __future__ import annotations

import asyncio
import logging
import signal

from bot.bootstrap import build_app
from bot.settings import Settings

log = logging.getLogger(__name__)


async def run_forever(settings: Settings, role: str = "all") -> None:
    """Run until SIGINT/SIGTERM."""
    app = await build_app(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = []
    try:
        if role in ("all", "bot") and settings.telegram_bot_token:
            from bot.channels.telegram_aiogram import AiogramChannel

            telegram = AiogramChannel(app)
            app.channels.add(telegram)
            await telegram.start()
            started.append(telegram)
        if not started:
            log.warning("no channel configured: set TELEGRAM_BOT_TOKEN (see .env.example)")
        await stop.wait()
    finally:
        for channel in started:
            await channel.stop()
        await app.close()
