"""Exactly one holder per database: the active scheduler, the one Telegram poller.

Two backends behind one small interface (`acquire`, `keep`, `release`, `abandon`):

- PostgreSQL: `pg_try_advisory_lock` on a dedicated connection held for the process lifetime.
  The server drops the lock when that connection ends, so a killed process frees it at once;
  `keep` checks the connection is still alive (lost connection = lost lock).
- SQLite: a lease row in the kv table (`storage/leases.py`) with an expiry, renewed by `keep`.
  A killed process stops renewing and the lease runs out.

Timing, for a bound `seconds` (SCHEDULER_LEASE_SECONDS): the lease is written for three
quarters of it and renewed (or, by a standby, tried) every quarter, so a standby takes over
within `seconds` of the holder's death, and the holder may miss two renewals in a row.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import NullPool

from storage.db import is_sqlite, make_engine

log = logging.getLogger(__name__)

#: Share of the bound a lease is written for, and how often it is renewed / tried.
TERM_SHARE = 0.75
CHECK_SHARE = 0.25


def holder_id() -> str:
    """Who we are, for logs and the lease row: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def advisory_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for a name."""
    digest = hashlib.sha256(f"coursebot:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def check_interval(seconds: float) -> float:
    """How often a holder renews and a standby tries, for a takeover bound of `seconds`."""
    return seconds * CHECK_SHARE


class Leadership:
    """The interface of both backends."""

    name: str
    holder: str
    held: bool = False

    async def acquire(self) -> bool:
        """Try once to become the holder; True when we are (again)."""
        raise NotImplementedError

    async def keep(self) -> bool:
        """Renew or check; False when we are no longer the holder (step down)."""
        raise NotImplementedError

    async def release(self) -> None:
        """Give it up so a standby takes over at its next try."""
        raise NotImplementedError

    async def abandon(self) -> None:
        """Stop holding without a goodbye, as a killed process would (tests)."""
        raise NotImplementedError


class AdvisoryLock(Leadership):
    """PostgreSQL: a session advisory lock on a connection of our own."""

    def __init__(self, url: str, name: str) -> None:
        self.name, self.holder, self.key = name, holder_id(), advisory_key(name)
        self.held = False
        self._url = url
        self._engine: AsyncEngine | None = None
        self._conn: AsyncConnection | None = None

    async def _connection(self) -> AsyncConnection:
        if self._engine is None:
            self._engine = make_engine(self._url, poolclass=NullPool)
        if self._conn is None or self._conn.closed:
            conn = await self._engine.connect()
            self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    async def acquire(self) -> bool:
        if self.held:
            return await self.keep()
        try:
            conn = await self._connection()
            got = await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})
        except Exception as error:  # noqa: BLE001 - the database may be briefly away
            log.warning("%s: advisory lock try failed (%s); retrying", self.name, error)
            await self._drop()
            return False
        self.held = bool(got)
        return self.held

    async def keep(self) -> bool:
        if not self.held:
            return False
        try:
            await self._conn.scalar(text("SELECT 1"))
        except Exception as error:  # noqa: BLE001 - the connection (and so the lock) is gone
            log.error("%s: lock connection lost (%s); stepping down", self.name, error)
            await self._drop()
            return False
        return True

    async def release(self) -> None:
        if self.held and self._conn is not None:
            try:
                await self._conn.scalar(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            except Exception:  # noqa: BLE001 - closing the connection frees it anyway
                log.warning("%s: unlock failed; closing the connection", self.name)
        await self._drop()
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def abandon(self) -> None:
        await self._drop()
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def _drop(self) -> None:
        self.held = False
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:  # noqa: BLE001 - a broken connection may not close cleanly
                await conn.invalidate()


class KvLease(Leadership):
    """SQLite: a lease row with an expiry in the kv table."""

    def __init__(
        self, uow, name: str, seconds: float, now: Callable[[], float] = time.time
    ) -> None:
        self.name, self.holder = name, holder_id()
        self.held = False
        self._uow, self._now = uow, now
        self._term = seconds * TERM_SHARE
        self._renewed_at = 0.0

    async def _take(self) -> bool:
        now = self._now()
        async with self._uow() as uow:
            got = await uow.leases.take(self.name, self.holder, self._term, now)
            await uow.commit()
        if got:
            self._renewed_at = now
        return got

    async def acquire(self) -> bool:
        try:
            self.held = await self._take()
        except Exception as error:  # noqa: BLE001 - e.g. a long write lock; try again later
            log.warning("%s: lease try failed (%s); retrying", self.name, error)
            self.held = False
        return self.held

    async def keep(self) -> bool:
        if not self.held:
            return False
        try:
            self.held = await self._take()
        except Exception as error:  # noqa: BLE001 - keep holding while the term lasts
            if self._now() - self._renewed_at < self._term:
                log.warning("%s: lease renewal failed (%s); retrying", self.name, error)
                return True
            log.error("%s: lease ran out while renewals failed; stepping down", self.name)
            self.held = False
        if not self.held:
            log.error("%s: lease taken by another process; stepping down", self.name)
        return self.held

    async def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            async with self._uow() as uow:
                await uow.leases.release(self.name, self.holder)
                await uow.commit()
        except Exception:  # noqa: BLE001 - it expires on its own
            log.warning("%s: lease release failed; it runs out by itself", self.name)

    async def abandon(self) -> None:
        self.held = False


def leadership(app, name: str, seconds: float) -> Leadership:
    """The right backend for the app's database."""
    if is_sqlite(app.settings.database_url):
        return KvLease(app.uow, name, seconds)
    return AdvisoryLock(app.settings.database_url, name)
