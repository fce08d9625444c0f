"""The conversation suite runs every script against every channel driver, on SQLite."""

from __future__ import annotations

import pytest

from tests.conversations.drivers import DRIVERS, driver_class


@pytest.fixture(params=list(DRIVERS))
async def driver(request, sqlite_url, clock):
    """A started driver of one channel; the app on a fresh SQLite file with the demo catalog."""
    driver = driver_class(request.param)()
    await driver.start(sqlite_url, clock)
    yield driver
    await driver.stop()
