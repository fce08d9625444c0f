"""`coursebot run`: start the configured channels, the web server and, by role, the scheduler
and the outbox sender; wait until stopped."""

from __future__ import annotations

import asyncio
import logging
import signal

from bot.bootstrap import build_app
from bot.channels import configured_channels
from bot.channels.base import ChannelConfigError
from bot.channels.links import TrackedLinks
from bot.channels.web import WebServer
from bot.settings import Settings

log = logging.getLogger(__name__)
ROLES = ("all", "bot", "scheduler")
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0


async def start_channels(app, channels, stop: asyncio.Event | None = None) -> None:
    """Register channels, serve their routes on the one web server, then start them.

    The web server always listens: tracked session links (`/go/<token>`) and `/healthz` live
    there next to the channels' webhooks. `app.close()` stops the channels and the server.
    """
    if app.web is None:
        app.web = WebServer(app.settings.web_host, app.settings.web_port)
        app.web.add(TrackedLinks(app))  # /go/<token>: personal session links (attendance)
    web = app.web
    for channel in channels:
        app.channels.add(channel)
        web.add(channel)
    await web.start()
    for channel in channels:
        if await start_with_retry(channel, stop):
            app.started.append(channel)


async def start_with_retry(channel, stop: asyncio.Event | None = None) -> bool:
    """Start a channel, retrying network failures with backoff (one log line each).

    Raises ChannelConfigError when the failure means a setting is wrong; returns False when
    `stop` was set while waiting.
    """
    delay = RETRY_FIRST_SECONDS
    while True:
        try:
            await channel.start()
            return True
        except Exception as error:  # noqa: BLE001 - every start failure is retried or reported
            problem = channel.config_problem(error)
            if problem:
                raise ChannelConfigError(problem) from error
            log.warning(
                "%s: start failed (%s: %s); retrying in %.0f s",
                channel.name,
                type(error).__name__,
                str(error)[:200],
                delay,
            )
        if stop is None:
            await asyncio.sleep(delay)
        elif await _stopped_within(stop, delay):
            return False
        delay = min(RETRY_MAX_SECONDS, delay * 2)


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


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
            await start_channels(app, channels, stop=stop)
        if role in ("all", "scheduler"):  # exactly one scheduler process per database
            services = await start_scheduler_and_sender(app)
        await stop.wait()
    finally:
        for service in reversed(services):
            await service.stop()
        await app.close()
