"""Shared fixtures: a real SQLite file or a real PostgreSQL database, the app, a fixed clock."""

from __future__ import annotations

import os
import socket
import tempfile
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bot.bootstrap import build_app
from bot.demo import seed_demo
from bot.settings import Settings

PG_URL = os.environ.get("COURSEBOT_TEST_PG_URL")
REQUIRE_PG = os.environ.get("COURSEBOT_REQUIRE_PG") == "1"
ADMIN_TG = 900001


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FixedClock:
    """A clock tests move by hand."""

    def __init__(self, now: datetime | None = None) -> None:
        self.moment = now or datetime(2026, 11, 23, 8, 0, tzinfo=UTC)

    def now(self) -> datetime:
        """The current (fixed) time."""
        return self.moment

    def advance(self, **delta: float) -> None:
        """Move time forward."""
        self.moment += timedelta(**delta)


async def private_database(url: str) -> str:
    """A database of this test process's own on the server of `url` (parallel runs collide)."""
    parsed = make_url(url)
    name = f"{parsed.database}_{os.getpid()}"
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        exists = await conn.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
        )
        if not exists:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()
    return parsed.set(database=name).render_as_string(hide_password=False)


async def reset_postgres(url: str) -> str:
    """This process's own database with an empty public schema; returns its URL."""
    url = await private_database(url)
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request, tmp_path) -> str:
    """A fresh database: a real SQLite file, or a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'coursebot.db'}"
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("COURSEBOT_REQUIRE_PG=1 but COURSEBOT_TEST_PG_URL is not set")
        pytest.skip("no PostgreSQL server (set COURSEBOT_TEST_PG_URL)")
    return await reset_postgres(PG_URL)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A fresh real SQLite file only (for tests that need no PostgreSQL twin)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'coursebot.db'}"


@pytest.fixture
def clock() -> FixedClock:
    """A fixed, movable clock."""
    return FixedClock()


def make_settings(url: str, **overrides) -> Settings:
    """Settings for tests, independent of the developer's environment and .env."""
    values = dict(
        database_url=url,
        admins=frozenset({f"telegram:{ADMIN_TG}", "console:me"}),
        default_locale="zh",
        telegram_bot_token=None,
        web_port=0,  # a free port: tests never collide on the web server
        recommender_model_path=f"{tempfile.gettempdir()}/coursebot-no-model-{os.getpid()}.npz",
        _env_file=None,
    )
    values.update(overrides)
    return Settings(**values)


async def demo_app(url: str, clock):
    """The app on the database at `url` with the demo catalog (the caller closes it)."""
    app = await build_app(make_settings(url), clock=clock)
    async with app.uow() as uow:
        await seed_demo(uow)
    return app


@pytest.fixture
async def app(db_url, clock):
    """The app on a fresh database with the demo catalog."""
    app = await demo_app(db_url, clock)
    yield app
    await app.close()


@pytest.fixture
async def tg():
    """A fake Telegram Bot API server."""
    from tests.fakes.telegram_api import FakeTelegram

    async with FakeTelegram() as fake:
        yield fake


async def start_telegram_app(db_url: str, clock, tg, **overrides):
    """The app with the real aiogram channel polling (or webhook) against the fake server."""
    from bot.channels.telegram_aiogram import AiogramChannel
    from bot.runner import start_channels

    settings = make_settings(
        db_url, telegram_bot_token=tg.token, telegram_api_url=tg.base_url, **overrides
    )
    app = await build_app(settings, clock=clock)
    async with app.uow() as uow:
        await seed_demo(uow)
    channel = AiogramChannel(app)
    await start_channels(app, [channel])
    return app, channel


@pytest.fixture
async def telegram_app(db_url, clock, tg):
    """The app serving Telegram by long polling against the fake server."""
    app, channel = await start_telegram_app(db_url, clock, tg)
    yield app
    await channel.stop()
    await app.close()


@pytest.fixture(autouse=True)
def _searches_wait_for_the_catalog_index(monkeypatch):
    """A search waits for the catalogue index being built instead of falling back to a plain
    word match (production waits a quarter second), so answers do not depend on timing."""
    from services import catalog_index

    monkeypatch.setattr(catalog_index, "FIRST_WAIT_SECONDS", 60.0)
