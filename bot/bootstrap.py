"""Wires everything once: engine, unit of work, dispatcher, channels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.core import Channels, Clock, Dispatcher, SystemClock
from bot.settings import Settings
from handlers import build_router
from scheduler.sender import quiet_start
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade_engine
from storage.uow import UnitOfWorkFactory


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


async def load_recommender(settings: Settings, uow: UnitOfWorkFactory, clock: Clock):
    """The recommender with the saved model, or popularity counted by the database."""
    from recommender.model import POSITIVE_THRESHOLD
    from recommender.service import Recommender
    from recommender.signals import positive_rule
    from storage.popularity import positive_learners_per_course

    recommender = Recommender(
        settings.recommender_model_path,
        clock=clock.now,
        reload_seconds=settings.recommender_reload_seconds,
        training_schedule=training_schedule(settings),
    )
    if recommender.model is None:  # one row per course, however many interactions are stored
        rule = positive_rule(recommender.weights, POSITIVE_THRESHOLD)
        async with uow() as work:
            counts = await positive_learners_per_course(work.session, *rule)
        recommender.set_popularity(counts)
    return recommender


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

    def wake(self) -> None:
        """Ask this process's scheduler and sender (when they run here) to look again soon."""
        for service in (self.scheduler, self.sender):
            if service is not None:
                service.wake()

    async def close(self) -> None:
        """Stop started channels and the web server, release the database connections."""
        for channel in reversed(self.started):
            await channel.stop()
        self.started.clear()
        if self.web is not None:
            await self.web.stop()
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
    deps: dict[str, Any] = {
        "settings": settings,
        "clock": clock,
        "channels": channels,
        "recommender": await load_recommender(settings, uow, clock),
        "wake": lambda: app.wake(),
        **extra_deps,
    }
    dispatcher = Dispatcher(build_router(), uow, deps)
    app = App(settings, engine, uow, dispatcher, channels, clock, deps)
    await quiet_start(app)
    return app
