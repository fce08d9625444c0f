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
    services = []
    try:
        if settings.telegram_bot_token:
            from bot.channels.telegram_aiogram import AiogramChannel

            telegram = AiogramChannel(app)
            app.channels.add(telegram)
            if role in ("all", "bot"):  # the scheduler role only sends through it
                await telegram.start()
            started.append(telegram)
        if not started:
            log.warning("no channel configured: set TELEGRAM_BOT_TOKEN (see .env.example)")
        if role in ("all", "scheduler"):  # exactly one scheduler process per database
            from scheduler.sender import Sender
            from scheduler.service import SchedulerService

            service = SchedulerService(app)
            await service.start()
            services.append(service)
            sender = Sender(app)
            sender.start()
            services.append(sender)
        await stop.wait()
    finally:
        for service in reversed(services):
            await service.stop()
        for channel in started:
            await channel.stop()
        await app.close()
