"""Shared fixtures: a real SQLite file or a real PostgreSQL database, the app, a fixed clock."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.bootstrap import build_app
from bot.demo import seed_demo
from bot.settings import Settings

PG_URL = os.environ.get("COURSEBOT_TEST_PG_URL")
REQUIRE_PG = os.environ.get("COURSEBOT_REQUIRE_PG") == "1"
ADMIN_TG = 900001


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


async def reset_postgres(url: str) -> None:
    """Drop and recreate the public schema so each test starts empty."""
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request, tmp_path) -> str:
    """A fresh database: a real SQLite file, or a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'coursebot.db'}"
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("COURSEBOT_REQUIRE_PG=1 but COURSEBOT_TEST_PG_URL is not set")
        pytest.skip("no PostgreSQL server (set COURSEBOT_TEST_PG_URL)")
    await reset_postgres(PG_URL)
    return PG_URL


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
        _env_file=None,
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def app(db_url, clock):
    """The app on a fresh database with the demo catalog."""
    app = await build_app(make_settings(db_url), clock=clock)
    async with app.uow() as uow:
        await seed_demo(uow)
    yield app
    await app.close()
