"""Leases: "this process is the one that …" rows in the kv table, with an expiry.

A lease is the kv row `lease:<name>` holding `{"holder": <id>, "expires": <epoch seconds>}`.
Taking it succeeds when nobody holds it, its holder is us (a renewal), or it has expired. The
read-then-write runs in one transaction: `BEGIN IMMEDIATE` on SQLite, `FOR UPDATE` on
PostgreSQL, so two processes never both take the same lease. Expiry is wall-clock time of the
one machine an SQLite file lives on (PostgreSQL uses advisory locks instead, see
`scheduler/leader.py`).
"""

from __future__ import annotations

from sqlalchemy import delete, select

from storage.models import KeyValue, utcnow
from storage.repos import Repo, dialect_module

PREFIX = "lease:"


def lease_key(name: str) -> str:
    """The kv key of a lease."""
    return PREFIX + name


class LeaseRepo(Repo):
    """Take, renew, read and release named leases."""

    async def take(self, name: str, holder: str, seconds: float, now: float) -> bool:
        """Take or renew the lease for `seconds` from `now`; False when someone else holds it."""
        key, value = lease_key(name), {"holder": holder, "expires": now + seconds}
        module = dialect_module(self.session)
        inserted = await self.session.execute(
            module.insert(KeyValue)
            .values(key=key, value=value, updated_at=utcnow())
            .on_conflict_do_nothing()
        )
        if inserted.rowcount == 1:
            return True
        row = await self.session.scalar(
            select(KeyValue).where(KeyValue.key == key).with_for_update()
        )
        if row is None:  # released between our insert and read: take it next time
            return False
        current = row.value or {}
        if current.get("holder") != holder and float(current.get("expires", 0)) > now:
            return False
        row.value, row.updated_at = value, utcnow()
        return True

    async def holder(self, name: str, now: float) -> str | None:
        """Who holds the lease now (None when free or expired)."""
        value = await self.session.scalar(
            select(KeyValue.value).where(KeyValue.key == lease_key(name))
        )
        if not value or float(value.get("expires", 0)) <= now:
            return None
        return value.get("holder")

    async def release(self, name: str, holder: str) -> bool:
        """Give the lease up if we hold it; True when a row was removed."""
        row = await self.session.scalar(
            select(KeyValue).where(KeyValue.key == lease_key(name)).with_for_update()
        )
        if row is None or (row.value or {}).get("holder") != holder:
            return False
        await self.session.execute(delete(KeyValue).where(KeyValue.key == row.key))
        return True
