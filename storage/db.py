"""Engine creation: the SQLite recipe (WAL, busy timeout, BEGIN IMMEDIATE) and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from pathlib import Path

import aiosqlite
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_only

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 15
#: How long one SQLite call may wait for another process's lock before it gives the event loop
#: back (milliseconds): write transactions run on the loop's thread (`InlineConnection`).
SQLITE_BUSY_SLICE_MS = 20
#: Execution option of a transaction that only reads (a plain deferred BEGIN on SQLite).
READ_ONLY = "coursebot_read_only"


def is_sqlite(url: str) -> bool:
    """True for an SQLite database URL."""
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path_problem(url: str) -> str | None:
    """Why an SQLite database file cannot be opened for writing (None when it can)."""
    if not is_sqlite(url):
        return None
    database = make_url(url).database or ""
    if database in ("", ":memory:"):
        return None
    path = Path(database).expanduser().resolve()
    folder = path.parent
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return f"{path} is not readable and writable by this user"
    if not path.exists() and not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        return f"cannot create {path}: folder {folder} is missing or not writable"
    return None


def make_engine(url: str, **kwargs) -> AsyncEngine:
    """An async engine; on SQLite every transaction is `BEGIN IMMEDIATE` on a WAL database."""
    if not is_sqlite(url):
        return create_async_engine(url, pool_pre_ping=True, **kwargs)
    connect_args = {"timeout": SQLITE_BUSY_SLICE_MS / 1000, "async_creator_fn": _connect_inline}
    engine = create_async_engine(url, connect_args=connect_args, **kwargs)
    _apply_sqlite_recipe(engine)
    return engine


class InlineConnection(aiosqlite.Connection):
    """aiosqlite's connection, with the statements of write transactions run on the event
    loop's thread instead of handed to the connection's worker thread.

    A hand-off costs ~0.15 ms and SQLAlchemy makes three or four per statement (cursor,
    execute, fetch, close), while the statements of a chat update take microseconds each:
    inline, an update's transaction costs a third of the CPU. Writers take turns
    (`WriteTurns`) and hold SQLite's write lock from BEGIN, so an inline statement never waits
    on this process; another process's lock is waited for in slices of `SQLITE_BUSY_SLICE_MS`
    with the loop running in between (`_begin_immediate`). Read-only transactions (reports,
    the catalogue index, pre-checkout answers) may scan many rows: they stay on the worker
    thread (`offload`).
    """

    #: Run the statements of the transaction at hand on the worker thread.
    offload = False

    def inline_sqlite(self) -> sqlite3.Connection | None:
        """The sqlite3 connection, when the transaction at hand runs on the loop's thread."""
        return None if self.offload else self._conn

    async def _execute(self, fn, *args, **kwargs):
        if self.offload:
            return await super()._execute(fn, *args, **kwargs)
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


def _connect_inline(database, **kwargs) -> InlineConnection:
    """What SQLAlchemy's aiosqlite dialect awaits to connect (its `async_creator_fn`)."""
    kwargs["check_same_thread"] = False  # used on the loop's thread and on the worker thread
    connection = InlineConnection(lambda: sqlite3.connect(database, **kwargs), 64)
    connection._thread.daemon = True  # as SQLAlchemy does for aiosqlite's own connections
    return connection


class WriteTurns:
    """Writers of one process take turns for SQLite's single write lock in a FIFO queue.

    Without it, concurrent write transactions each wait in SQLite's busy handler, which polls
    with growing sleeps in the driver's thread: under load a writer waits far longer than the
    transaction ahead of it takes. The turn is taken when a write transaction begins and given
    back when its connection returns to the pool (after COMMIT or ROLLBACK). A turn not given
    back in `SQLITE_BUSY_TIMEOUT_S` (a holder that never returned its connection) is given up
    on: the next writers get a fresh queue, and SQLite's own busy timeout still guards.
    """

    KEY = "coursebot_write_turn"

    def __init__(self) -> None:
        self._lock: asyncio.Lock | None = None

    def take(self, record_info: dict) -> None:
        """Wait for the turn (inside SQLAlchemy's async bridge, so the event loop runs on)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        lock = self._lock
        if await_only(_acquire(lock, SQLITE_BUSY_TIMEOUT_S)):
            record_info[self.KEY] = (lock, asyncio.get_running_loop())
            return
        log.warning("an SQLite writer kept its turn over %s s; not waiting", SQLITE_BUSY_TIMEOUT_S)
        if self._lock is lock:
            self._lock = asyncio.Lock()

    def give_back(self, record_info: dict) -> None:
        """Let the next writer in, if this connection held the turn."""
        held = record_info.pop(self.KEY, None)
        if held is None:
            return
        lock, loop = held
        if loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            _release(lock)
        else:  # a connection finalised off the loop's thread (garbage collection)
            loop.call_soon_threadsafe(_release, lock)


async def _acquire(lock: asyncio.Lock, timeout: float) -> bool:
    """Take `lock` within `timeout` (False when not). A caller cancelled while waiting never
    ends up holding it, even when the lock was granted at that very moment."""
    waiting = asyncio.ensure_future(lock.acquire())
    try:
        done, _ = await asyncio.wait({waiting}, timeout=timeout)
    except BaseException:
        waiting.add_done_callback(lambda task: _release_if_granted(lock, task))
        waiting.cancel()
        raise
    if not done:
        waiting.add_done_callback(lambda task: _release_if_granted(lock, task))
        waiting.cancel()
        return False
    return True


def _release_if_granted(lock: asyncio.Lock, task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is None:
        _release(lock)


def _release(lock: asyncio.Lock) -> None:
    if lock.locked():
        lock.release()


def _apply_sqlite_recipe(engine: AsyncEngine) -> None:
    turns = WriteTurns()

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SLICE_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection):
        # A deferred read-then-write transaction fails at once with "database is locked";
        # taking the write lock up front makes SQLite wait on busy_timeout instead. A unit of
        # work that only reads (`UnitOfWork.read_only`) takes no lock: WAL readers never wait.
        driver = connection.connection.driver_connection
        reader = bool(connection.get_execution_options().get(READ_ONLY))
        if isinstance(driver, InlineConnection):
            driver.offload = reader
        if reader:
            connection.exec_driver_sql("BEGIN")
        else:
            turns.take(connection.connection.info)
            _begin_immediate(connection)

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection, record):
        turns.give_back(record.info)


def _begin_immediate(connection) -> None:
    """BEGIN IMMEDIATE, waiting for another process's write lock up to SQLITE_BUSY_TIMEOUT_S
    in slices, the event loop running between them (so it never stands still for long)."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except OperationalError as error:
            if "locked" not in str(error.orig) or time.monotonic() > deadline:
                raise
        await_only(asyncio.sleep(pause))
        pause = min(pause * 2, 0.1)


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


def sync_url(url: str) -> str:
    """The synchronous twin of an async URL (for Alembic and the APScheduler job store)."""
    parsed = make_url(url)
    driver = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}[parsed.get_backend_name()]
    return parsed.set(drivername=driver).render_as_string(hide_password=False)
