"""`coursebot run`: start the configured channels, the web server and, by role, the scheduler
and the outbox sender; wait until stopped."""

from __future__ import annotations

import asyncio
import logging
import signal

from bot.bootstrap import build_app
from bot.channels import configured_channels
from bot.channels.web import WebServer
from bot.settings import Settings

log = logging.getLogger(__name__)
ROLES = ("all", "bot", "scheduler")


async def start_channels(app, channels, healthz: bool = False) -> None:
    """Register channels, serve their routes on the one web server, then start them.

    The web server listens when a channel added a route, or always with `healthz` (operators
    probe `/healthz`). `app.close()` stops the channels and the server.
    """
    web = app.web = app.web or WebServer(app.settings.web_host, app.settings.web_port)
    for channel in channels:
        app.channels.add(channel)
        web.add(channel)
    if healthz or len(web.paths()) > 1:
        await web.start()
    for channel in channels:
        await channel.start()
        app.started.append(channel)


async def start_scheduler_and_sender(app) -> list:
    """Start the APScheduler service and the outbox sender; returns them for `stop()`."""
    from scheduler.sender import Sender
    from scheduler.service import SchedulerService

    service = SchedulerService(app)
    await service.start()
    sender = Sender(app)
    sender.start()
    return [service, sender]


async def run_forever(settings: Settings, role: str = "all") -> None:
    """Run until SIGINT/SIGTERM."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    app = await build_app(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    channels = configured_channels(app)
    for channel in channels:  # the scheduler role only sends through them
        app.channels.add(channel)
    if not channels:
        log.warning("no channel configured: set TELEGRAM_BOT_TOKEN or WECHAT_* (see .env.example)")
    services = []
    try:
        if role in ("all", "bot"):
            await start_channels(app, channels, healthz=True)
        if role in ("all", "scheduler"):  # exactly one scheduler process per database
            services = await start_scheduler_and_sender(app)
        await stop.wait()
    finally:
        for service in reversed(services):
            await service.stop()
        await app.close()
