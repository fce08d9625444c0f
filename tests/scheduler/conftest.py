"""Fixtures of the scheduler tests: the Telegram app at a fixed time far ahead."""

from __future__ import annotations

import pytest

from tests.conftest import PG_URL, REQUIRE_PG, FixedClock, reset_postgres, start_telegram_app
from tests.scheduler.support import FUTURE


@pytest.fixture
def clock() -> FixedClock:
    """A fixed clock in 2030, so real-time APScheduler never fires the tests' jobs itself."""
    return FixedClock(FUTURE)


@pytest.fixture
async def live_app(db_url, clock, tg):
    """The app serving Telegram (fake Bot API) with the sender's state on fake time."""
    app, channel = await start_telegram_app(db_url, clock, tg)
    yield app
    await channel.stop()
    await app.close()


@pytest.fixture
async def live_sqlite(sqlite_url, clock, tg):
    """The Telegram app on SQLite only."""
    app, channel = await start_telegram_app(sqlite_url, clock, tg)
    yield app
    await channel.stop()
    await app.close()


@pytest.fixture
async def pg_url() -> str:
    """A fresh real PostgreSQL database (skipped only when no server is configured)."""
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("COURSEBOT_REQUIRE_PG=1 but COURSEBOT_TEST_PG_URL is not set")
        pytest.skip("no PostgreSQL server (set COURSEBOT_TEST_PG_URL)")
    return await reset_postgres(PG_URL)
