"""The catalogue's text index in this process: built in the background, then kept up to date.

No learner's message builds it. The first use (or `start`) builds it in a background task: the
courses are read a page at a time (short transactions, Core rows, no ORM objects) and tokenised
in a thread. Each later use reads only the courses changed since the last look (`updated_at`,
with an overlap for transactions that committed late or clocks a little apart) and applies them
to a `LiveIndex`; when many changed, or a category was renamed, a rebuild starts in the
background and the current index serves until it is ready. Until the first build is ready,
callers get None and fall back (search: a plain LIKE query).

One per database and process: kept in `uow.caches` (see `storage.uow`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

from bot import textindex
from bot.textindex import LiveIndex, TextIndex
from storage.models import utcnow

log = logging.getLogger(__name__)

KEY = "catalog_index"
PAGE = 2000
#: How far back each look re-reads change stamps (late commits, clocks of other hosts); only
#: the courses whose stamp is new to this process are then read.
OVERLAP = timedelta(seconds=10)
#: How long a use waits for a build under way before it falls back (tests raise it, so that
#: their answers do not depend on how fast jieba loaded).
FIRST_WAIT_SECONDS = 0.25


def course_text(row) -> str:
    """The searchable text of a course row: titles weigh more than descriptions."""
    titles = f"{row.title_zh} {row.title_en} "
    return " ".join(
        [
            titles * 3,
            row.description_zh or "",
            row.description_en or "",
            row.instructor_name or "",
            row.category_zh,
            row.category_en,
        ]
    )


class CatalogIndex:
    """The live text index of one database's active courses (see the module docstring)."""

    def __init__(self, factory) -> None:
        self.factory = factory
        self.live: LiveIndex | None = None
        self.seen: datetime | None = None
        self.categories: list | None = None
        #: updated_at of each course as last read here
        self.stamps: dict[int, datetime | None] = {}
        self.builds = 0
        self._task: asyncio.Task | None = None

    @property
    def building(self) -> bool:
        """True while a build runs in the background."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Build (or rebuild) in the background unless a build is already running."""
        if not self.building:
            self._task = asyncio.get_running_loop().create_task(self._build())

    async def wait(self) -> None:
        """Wait for the build running now, if any (it is not cancelled when this wait is)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _build(self) -> None:
        try:
            warming = textindex.warm_up_in_background()
            while not textindex.is_ready():
                if not warming.is_alive():  # it failed: load here to raise the error
                    await textindex.in_daemon_thread(textindex.warm_up)
                await asyncio.sleep(0.05)
            started = utcnow()
            texts, stamps, categories = await self._read_all()
            base = await textindex.in_daemon_thread(TextIndex, texts)
            self.live, self.seen, self.categories = LiveIndex(base, texts), started, categories
            self.stamps = stamps
            self.builds += 1
            log.info("catalogue index built: %s courses", len(texts))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the next use starts another build
            log.exception("building the catalogue index failed")

    async def _read_all(self) -> tuple[dict[int, str], dict, list]:
        texts: dict[int, str] = {}
        stamps: dict[int, datetime | None] = {}
        after = 0
        while True:
            async with self.factory() as uow:  # one short read per page, no write lock
                await uow.read_only()
                if after == 0:
                    categories = await uow.courses.category_names()
                rows = await uow.courses.documents(after, PAGE)
            texts.update((r.id, course_text(r)) for r in rows if r.active)
            stamps.update((r.id, r.updated_at) for r in rows)
            if len(rows) < PAGE:
                return texts, stamps, categories
            after = rows[-1].id

    async def current(self, uow) -> LiveIndex | None:
        """The index with every change up to now applied; None until the first build is done."""
        if self.live is None:
            self.start()
            await asyncio.wait({self._task}, timeout=FIRST_WAIT_SECONDS)
        live = self.live
        if live is None:
            return None
        if await uow.courses.category_names() != self.categories:
            self.start()  # a renamed category changes many texts: rebuild, serve meanwhile
        looked = utcnow()
        changed = await uow.courses.changed_since(self.seen - OVERLAP)
        fresh = [cid for cid, stamp in changed if self.stamps.get(cid, 0) != stamp]
        for row in await uow.courses.documents(ids=fresh) if fresh else ():
            live.update(row.id, course_text(row) if row.active else None)
            self.stamps[row.id] = row.updated_at
        self.seen = looked
        if live.stale:
            self.start()
        return live

    async def aclose(self) -> None:
        """Stop a running build."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None


def catalog_index(uow) -> CatalogIndex:
    """This process's index of the database `uow` works on."""
    index = uow.caches.get(KEY)
    if index is None:
        index = uow.caches[KEY] = CatalogIndex(uow.factory)
    return index


async def current_index(uow) -> LiveIndex | None:
    """The up-to-date catalogue index, None while the first build runs (it is started)."""
    return await catalog_index(uow).current(uow)


async def built_index(uow) -> LiveIndex | None:
    """The index as last built and updated, without looking for changes (None while the
    first build runs; it is started, and waited for as `current` does)."""
    index = catalog_index(uow)
    if index.live is None:
        index.start()
        await asyncio.wait({index._task}, timeout=FIRST_WAIT_SECONDS)
    return index.live


async def index_ready(uow) -> bool:
    """True once the catalogue index is built (starts the build when nobody has)."""
    index = catalog_index(uow)
    if index.live is None:
        index.start()
    return index.live is not None


def start(uow_factory) -> CatalogIndex:
    """Start building the index of the database of `uow_factory` now (process start-up)."""
    index = uow_factory.caches.get(KEY)
    if index is None:
        index = uow_factory.caches[KEY] = CatalogIndex(uow_factory)
    index.start()
    return index
