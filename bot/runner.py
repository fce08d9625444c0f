"""`coursebot run --role web|scheduler|sender|all`: start, by role, the configured channels and
the one web server (`web`; `bot` is an alias), the scheduler (exactly one active per database;
another waits), the outbox sender, or everything (`all`); wait until stopped.

Telegram long polling stays in one process per database: a second poller is refused (a lease,
see `scheduler.leader`). Webhook mode may run in several web processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from bot import heap
from bot.bootstrap import build_app
from bot.channels import configured_channels
from bot.channels.base import ChannelConfigError
from bot.channels.links import TrackedLinks
from bot.channels.web import WebServer
from bot.settings import Settings
from bot.textindex import warm_up_in_background
from services import catalog_index

log = logging.getLogger(__name__)
ROLES = ("all", "web", "scheduler", "sender", "bot")
ALIASES = {"bot": "web"}
POLLER_LEASE = "telegram-poller"
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
    # jieba loads once the channels listen, then the catalogue index builds in the background:
    # start-up never waits for them, and no learner's message builds the index. Once built,
    # what start-up made is frozen out of the garbage collector's full collections.
    warm_up_in_background()
    app.tasks.append(heap.freeze_after(catalog_index.start(app.uow).wait()))


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


def polls_telegram(settings: Settings) -> bool:
    """True when this configuration reads Telegram by long polling (not webhook)."""
    return bool(settings.telegram_bot_token) and not settings.telegram_webhook_url


class PollerGuard:
    """Holds the one-poller-per-database lease while this process polls Telegram."""

    def __init__(self, app, lost: asyncio.Event | None = None) -> None:
        from scheduler import leader

        self._leader = leader
        self.seconds = app.settings.scheduler_lease_seconds
        self.lease = leader.leadership(app, POLLER_LEASE, self.seconds)
        self.lost = lost
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Take the lease or refuse with ChannelConfigError (one clear line)."""
        if not await self.lease.acquire():
            await self.lease.release()  # closes our lock connection on PostgreSQL
            raise ChannelConfigError(
                "another process already polls Telegram on this database; polling is "
                "single-process (set TELEGRAM_WEBHOOK_URL to run several web processes, or "
                f"wait {self.seconds:g} s if the other one has just died)"
            )
        self._task = asyncio.create_task(self._keep(), name="telegram-poller-lease")

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self._leader.check_interval(self.seconds))
            if not await self.lease.keep():
                log.error("lost the Telegram polling lease; stopping this process")
                if self.lost is not None:
                    self.lost.set()
                return

    async def stop(self) -> None:
        """Stop renewing and give the lease up."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.lease.release()


async def start_scheduler(app):
    """Start the scheduler service (active, or standby while another one is)."""
    from scheduler.service import SchedulerService

    service = SchedulerService(app)
    await service.start()
    return service


def start_sender(app):
    """Start the outbox sender in the background."""
    from scheduler.sender import Sender

    sender = Sender(app)
    sender.start()
    return sender


async def start_scheduler_and_sender(app) -> list:
    """Start the APScheduler service and the outbox sender; returns them for `stop()`."""
    return [await start_scheduler(app), start_sender(app)]


def parse_role(role: str) -> str:
    """The canonical role name; ValueError for an unknown one."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES[:4])}")
    return ALIASES.get(role, role)


async def run_forever(settings: Settings, role: str = "all") -> None:
    """Run the role's parts until SIGINT/SIGTERM."""
    role = parse_role(role)
    app = await build_app(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    services: list = []
    try:
        await start_role(app, role, stop, services)
        await stop.wait()
    finally:
        for service in reversed(services):
            await service.stop()
        await app.close()


async def start_role(app, role: str, stop: asyncio.Event, services: list) -> None:
    """Start what `role` runs, appending what needs stopping to `services` (last first)."""
    channels = configured_channels(app)
    for channel in channels:  # the scheduler and sender roles only send through them
        app.channels.add(channel)
    if not channels:
        log.warning("no channel configured: set TELEGRAM_BOT_TOKEN or WECHAT_* (see .env.example)")
    if role in ("all", "web"):
        if polls_telegram(app.settings) and any(c.name == "telegram" for c in channels):
            guard = PollerGuard(app, lost=stop)
            await guard.start()
            services.append(guard)
        await start_channels(app, channels, stop=stop)
    if role in ("all", "scheduler"):  # exactly one active per database; others wait
        services.append(await start_scheduler(app))
    if role in ("all", "sender"):
        services.append(start_sender(app))
    app.ready.set()  # background start-up work may begin (see bootstrap.POPULARITY_WAIT_SECONDS)
