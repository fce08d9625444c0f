"""The statements every chat update runs, straight on SQLite's own connection.

On SQLite a write transaction's statements run on the event loop's thread (`InlineConnection`),
where one of them takes microseconds; SQLAlchemy's session and Core add 100–200 µs around each
(statement cache, execution context, greenlet hops, result objects). The handful of fixed
statements of every update (its inbox row, its kept replies, the learner behind the sender,
the catalogue fingerprint) are therefore run here directly, inside the session's transaction,
with their values converted by the columns' own SQLAlchemy types, so what is written and read
is exactly what the ORM writes and reads. PostgreSQL and read-only transactions (offloaded to
the worker thread) use the ORM path (`connection_of` returns None).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Column
from sqlalchemy.dialects.sqlite.aiosqlite import dialect as aiosqlite_dialect
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import InlineConnection

_DIALECT = aiosqlite_dialect()
#: `session.info` key: (the transaction, its sqlite3 connection or None).
_KNOWN = "storage.inline"


async def connection_of(session: AsyncSession) -> sqlite3.Connection | None:
    """The sqlite3 connection of the session's transaction when its statements run on the
    loop's thread, else None. Pending ORM changes are flushed first, as the ORM's autoflush
    would before a query, so a statement here sees them."""
    if session.bind.dialect.name != "sqlite":
        return None
    if session.new or session.dirty or session.deleted:
        await session.flush()
    # an update asks four or five times in one transaction: SQLAlchemy's answer once
    transaction = session.sync_session.get_transaction()
    known = session.info.get(_KNOWN)
    if transaction is not None and known is not None and known[0] is transaction:
        return known[1]
    connection = await session.connection()
    driver = connection.sync_connection.connection.driver_connection
    inline = driver.inline_sqlite() if isinstance(driver, InlineConnection) else None
    session.info[_KNOWN] = (session.sync_session.get_transaction(), inline)
    return inline


def _converters(columns: Iterable[Column], kind: str) -> list:
    convert = []
    for column in columns:
        impl = column.type.dialect_impl(_DIALECT)
        processor = (
            impl.bind_processor(_DIALECT)
            if kind == "bind"
            else impl.result_processor(_DIALECT, None)
        )
        convert.append(processor or (lambda value: value))
    return convert


class Statement:
    """One fixed SQL statement whose `?` parameters are `params` (columns, for their types)
    and whose result columns are `results`."""

    def __init__(self, sql: str, params: Sequence[Column], results: Sequence[Column] = ()):
        self.sql = " ".join(sql.split())
        self._bind = _converters(params, "bind")
        self._result = _converters(results, "result")

    def _values(self, values: Sequence[Any]) -> tuple:
        return tuple(convert(value) for convert, value in zip(self._bind, values, strict=True))

    def run(self, connection: sqlite3.Connection, *values: Any) -> int:
        """Execute once; the number of rows changed."""
        return connection.execute(self.sql, self._values(values)).rowcount

    def run_many(self, connection: sqlite3.Connection, rows: Iterable[Sequence[Any]]) -> None:
        """Execute once per row of parameters."""
        connection.executemany(self.sql, [self._values(row) for row in rows])

    def first(self, connection: sqlite3.Connection, *values: Any) -> tuple | None:
        """The first result row, converted (None when there is none)."""
        row = connection.execute(self.sql, self._values(values)).fetchone()
        if row is None:
            return None
        return tuple(convert(value) for convert, value in zip(self._result, row, strict=True))
