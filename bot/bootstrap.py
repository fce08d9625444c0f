"""Wires everything once: engine, unit of work, dispatcher, channels."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.core import Channels, Clock, Dispatcher, SystemClock
from bot.settings import Settings
from handlers import build_router
from scheduler.sender import quiet_start
from storage.db import is_sqlite, make_engine, make_session_factory
from storage.migrate import upgrade_engine
from storage.uow import UnitOfWorkFactory

log = logging.getLogger(__name__)


def training_schedule(settings: Settings) -> str:
    """When the scheduler trains the recommender, in words for the start-up log line."""
    when = []
    if settings.recommender_retrain_cron:
        when.append(f"nightly (cron {settings.recommender_retrain_cron} in {settings.timezone})")
    if settings.recommender_retrain_new_interactions:
        when.append(f"after {settings.recommender_retrain_new_interactions} new interactions")
    if not when:
        return "with `coursebot recommender train`"
    return "by the scheduler " + " or ".join(when)


#: Up to this many stored interactions popularity is counted before start-up ends; above, it is
#: counted in the background once the process has started (`App.ready`, or after
#: POPULARITY_WAIT_SECONDS), so start-up neither waits for it nor shares the CPU with it.
POPULARITY_INLINE_MAX = 100_000
POPULARITY_WAIT_SECONDS = 30.0


async def load_recommender(
    settings: Settings,
    uow: UnitOfWorkFactory,
    clock: Clock,
    tasks: list | None = None,
    ready: asyncio.Event | None = None,
):
    """The recommender with the saved model, or popularity counted by the database.

    A background count (many interactions) waits for `ready`; it is appended to `tasks`."""
    from recommender.service import Recommender

    recommender = Recommender(
        settings.recommender_model_path,
        clock=clock.now,
        reload_seconds=settings.recommender_reload_seconds,
        training_schedule=training_schedule(settings),
    )
    if recommender.model is not None:
        return recommender
    async with uow() as work:
        stored = await work.interactions.newest_id()
    if stored <= POPULARITY_INLINE_MAX or tasks is None:
        await count_popularity(recommender, uow)
    else:
        count = _count_in_background(recommender, uow, ready or asyncio.Event())
        task = asyncio.create_task(count, name="popularity")
        tasks.append(task)
    return recommender


async def count_popularity(recommender, uow: UnitOfWorkFactory) -> None:
    """Serve per-course popularity counted in one aggregate query (one row per course)."""
    from recommender.params import POSITIVE_THRESHOLD
    from recommender.signals import positive_rule
    from storage.popularity import positive_learners_per_course

    rule = positive_rule(recommender.weights, POSITIVE_THRESHOLD)
    started = time.perf_counter()
    async with uow() as work:
        await work.read_only()  # on SQLite: no write lock held while the database counts
        counts = await positive_learners_per_course(work.session, *rule)
    recommender.set_popularity(counts)
    seconds = time.perf_counter() - started
    log.info("popularity of %d courses counted in %.1f s", len(counts), seconds)


async def _count_in_background(recommender, uow: UnitOfWorkFactory, ready) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ready.wait(), POPULARITY_WAIT_SECONDS)
    try:
        await count_popularity(recommender, uow)
    except Exception:  # noqa: BLE001 - popularity stays empty; suggestions still have content
        log.exception("counting course popularity failed; serving without it")


@dataclass
class App:
    """Everything a running coursebot process shares."""

    settings: Settings
    engine: AsyncEngine
    uow: UnitOfWorkFactory
    dispatcher: Dispatcher
    channels: Channels
    clock: Clock
    deps: dict[str, Any] = field(default_factory=dict)
    scheduler: Any = None  # scheduler.service.SchedulerService when this process runs it
    sender: Any = None  # scheduler.sender.Sender when this process runs it
    sender_state: Any = None  # rate limiters of scheduler.sender
    web: Any = None  # bot.channels.web.WebServer when this process serves HTTP
    started: list = field(default_factory=list)  # channels started by bot.runner
    tasks: list = field(default_factory=list)  # background start-up: popularity, gc freeze
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # set once started (runner)

    def wake(self) -> None:
        """Ask this process's scheduler and sender (when they run here) to look again soon."""
        for service in (self.scheduler, self.sender):
            if service is not None:
                service.wake()

    async def close(self) -> None:
        """Stop started channels and the web server, release the database connections."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for channel in reversed(self.started):
            await channel.stop()
        self.started.clear()
        if self.web is not None:
            await self.web.stop()
        await self.dispatcher.aclose()
        await self.uow.close()  # background work on this database (the catalogue index)
        await self.engine.dispose()


async def build_app(
    settings: Settings, clock: Clock | None = None, migrate: bool = True, **extra_deps: Any
) -> App:
    """Build the app; `extra_deps` add or replace handler dependencies (tests, recommender)."""
    engine = make_engine(settings.database_url)
    if migrate:
        await upgrade_engine(engine)
    uow = UnitOfWorkFactory(make_session_factory(engine))
    channels = Channels()
    clock = clock or SystemClock()
    app: App | None = None
    tasks: list = []
    ready = asyncio.Event()
    deps: dict[str, Any] = {
        "settings": settings,
        "clock": clock,
        "channels": channels,
        "recommender": await load_recommender(settings, uow, clock, tasks, ready),
        "wake": lambda: app.wake(),
        **extra_deps,
    }
    grouped = is_sqlite(settings.database_url)  # one writer at a time: share transactions
    dispatcher = Dispatcher(build_router(), uow, deps, group_commit=grouped)
    app = App(settings, engine, uow, dispatcher, channels, clock, deps, tasks=tasks, ready=ready)
    await quiet_start(app)
    return app
