"""10,000 generated courses: search finds a course added a moment ago, and no learner-facing
update reads every course (rows the database hands back are counted, not wall time)."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import timedelta

import pytest
import pytest_asyncio
from sqlalchemy import event, insert, select

from bot.bootstrap import build_app
from bot.core import Incoming
from services import catalog_index
from storage.models import Category, Course, Enrolment, Interaction
from tests.conftest import FixedClock, make_settings

COURSES = 10_000
#: The most course rows one update may read (a page, a few candidates: far from every course).
MAX_COURSE_ROWS = 300
TOPICS = ["Python", "数据分析", "摄影", "钢琴", "英语", "理财", "烘焙", "瑜伽", "设计", "写作"]


async def fill(app) -> None:
    """Ten categories, 10,000 short generated courses (changed a day ago), one learner."""
    old = app.clock.now() - timedelta(days=1)
    async with app.uow() as uow:
        s = uow.session
        await s.execute(
            insert(Category),
            [dict(slug=f"c{n}", name_zh=f"类{n}", name_en=f"Cat {n}", position=n)
             for n in range(len(TOPICS))],
        )
        cats = list((await s.execute(select(Category.id).order_by(Category.id))).scalars())
        rows = [
            dict(category_id=cats[i % len(cats)], title_zh=f"{TOPICS[i % len(TOPICS)]}{i}期",
                 title_en=f"{TOPICS[i % len(TOPICS)]} {i}", price_stars=50, price_fen=990,
                 created_at=old - timedelta(minutes=i), updated_at=old)
            for i in range(COURSES)
        ]
        for start in range(0, COURSES, 2000):
            await s.execute(insert(Course), rows[start:start + 2000])
        await uow.commit()


#: One app (and one event loop) for the module: generating and indexing the catalogue once.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def big(tmp_path_factory):
    """An app over 10,000 courses whose catalogue index is built."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('big') / 'coursebot.db'}"
    app = await build_app(make_settings(url), clock=FixedClock())
    await fill(app)
    async with app.uow() as uow:
        while not await catalog_index.index_ready(uow):
            await asyncio.sleep(0.05)
    yield app
    await app.close()


class RowCount:
    """Statements and rows the database handed back, per table named after FROM/JOIN."""

    def __init__(self, engine) -> None:
        self.engine = engine.sync_engine
        self.rows: Counter[str] = Counter()
        self.statements = 0
        self.loaded = 0

    def _after(self, conn, cursor, statement, params, context, executemany) -> None:
        self.statements += 1
        fetched = len(getattr(cursor, "_rows", ()) or ())  # the async adapter's fetched rows
        for table in set(re.findall(r"(?:FROM|JOIN)\s+(\w+)", statement)):
            self.rows[table] += fetched

    def _load(self, target, context) -> None:
        self.loaded += 1

    def __enter__(self) -> RowCount:
        event.listen(self.engine, "after_cursor_execute", self._after)
        event.listen(Course, "load", self._load)
        return self

    def __exit__(self, *exc) -> None:
        event.remove(self.engine, "after_cursor_execute", self._after)
        event.remove(Course, "load", self._load)


def update(kind: str, what: str, n: int, args: str = "") -> Incoming:
    """A Telegram update from learner 5001."""
    if kind == "button":
        return Incoming("telegram", "5001", f"big:{n}", "button", payload=what, locale="en")
    return Incoming("telegram", "5001", f"big:{n}", "command", command=what, args=args,
                    text=f"/{what} {args}".strip(), locale="en")


def texts(outputs) -> str:
    """Every text and button label of some replies, joined."""
    parts = []
    for reply in outputs:
        parts.append(getattr(reply, "text", "") or "")
        parts += [b.label for row in getattr(reply, "buttons", None) or [] for b in row]
    return "\n".join(parts)


async def give_history(app) -> None:
    """Learner 5001 exists, owns two courses and viewed a third."""
    await app.dispatcher.dispatch(update("command", "start", 0))
    async with app.uow() as uow:
        learner = await uow.learners.identity("telegram", "5001")
        now = app.clock.now()
        for course in (1, 2):
            uow.session.add(Enrolment(learner_id=learner.learner_id, course_id=course,
                                      created_at=now))
        for course, kind in ((1, "purchase"), (2, "purchase"), (3, "view")):
            uow.session.add(Interaction(learner_id=learner.learner_id, course_id=course,
                                        kind=kind, created_at=now))
        await uow.commit()


async def test_search_finds_a_course_added_a_moment_ago(big):
    async with big.uow() as uow:
        category = await uow.courses.category_by_slug("c3")
        added = await uow.courses.add(
            category_id=category.id, title_zh="区块链与智能合约入门",
            title_en="Blockchain and Smart Contracts", price_stars=200, price_fen=29900,
        )
        await uow.commit()
    outputs = await big.dispatcher.dispatch(update("command", "search", 1, "区块链 智能合约"))
    assert f"#{added.id} " in texts(outputs)
    index = big.uow.caches[catalog_index.KEY]
    assert index.builds == 1, "the new course came in incrementally, without a rebuild"


async def test_no_learner_facing_update_reads_every_course(big):
    await give_history(big)
    async with big.uow() as uow:
        last = await uow.session.scalar(select(Course).order_by(Course.id.desc()).limit(1))
    updates = {
        "/start": ("command", "start", ""),
        "/catalog": ("command", "catalog", ""),
        "category page": ("button", f"cat:{last.category_id}:0", ""),
        "card": ("button", f"course:{last.id}", ""),
        "/search": ("command", "search", "Python 入门"),
        "/recommend": ("command", "recommend", ""),
        "/mycourses": ("command", "mycourses", ""),
        "buy": ("button", f"buy:{last.id}", ""),
    }
    for n, (name, (kind, what, args)) in enumerate(updates.items(), start=10):
        with RowCount(big.engine) as count:
            outputs = await big.dispatcher.dispatch(update(kind, what, n, args))
        assert outputs, name
        assert count.rows["courses"] <= MAX_COURSE_ROWS, (name, count.rows)
        assert count.loaded <= MAX_COURSE_ROWS, (name, count.loaded)
        assert count.statements <= 30, (name, count.statements)
    assert "#" in texts(await big.dispatcher.dispatch(update("command", "recommend", 99)))
