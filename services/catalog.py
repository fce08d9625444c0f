"""The catalog: categories, pages of courses, one course's card facts, search, prices.

Money is channel-neutral: a course has one price per currency (`price_in`), and the channel a
learner writes from says which currency it takes (`currency_of`). Every function returns plain
data (rows and small dataclasses); the chat side words it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from bot.i18n import CNY, STARS
from bot.textindex import TextIndex
from recommender.signals import Signal
from services.catalog_index import course_text, current_index
from storage.models import Course, LiveSession

MAX_RESULTS = 8
MAX_QUERY_CHARS = 200

#: Which course column holds the price in each currency (amounts in the smallest unit).
PRICE_FIELDS = {STARS: "price_stars", CNY: "price_fen"}


def price_in(course, currency: str) -> int | None:
    """The course's price in `currency` (smallest unit: Stars, fen), None when not sold in it."""
    field = PRICE_FIELDS.get(currency)
    price = getattr(course, field, None) if field else None
    return price if isinstance(price, int) and price > 0 else None


def currency_of(channels, channel: str) -> str:
    """The currency the channel `channel` takes; Stars when it is not registered (unit tests)."""
    if channels is not None and channel in channels:
        return getattr(channels.get(channel), "currency", STARS) or STARS
    return STARS


@dataclass(frozen=True)
class CoursePage:
    """One page of one category's active courses (`page` counts from 0)."""

    category: Any
    courses: list
    page: int
    pages: int
    total: int

    @property
    def has_prev(self) -> bool:
        """True when there is a page before this one."""
        return self.page > 0

    @property
    def has_next(self) -> bool:
        """True when there is a page after this one."""
        return self.page + 1 < self.pages


@dataclass(frozen=True)
class CategoryView:
    """A category as the category list shows it (a plain copy, shared across messages)."""

    id: int
    slug: str
    name_zh: str
    name_en: str
    position: int


#: `uow.caches` key of the category list: (catalogue fingerprint, [(CategoryView, count)]).
CATEGORIES_CACHE = "catalog.categories"


async def categories(uow) -> list[tuple[Any, int]]:
    """Categories that have active courses, with how many, in display order; kept per process
    until the catalogue's fingerprint (`CourseRepo.catalog_version`) changes."""
    version = await uow.courses.catalog_version()
    cached = uow.caches.get(CATEGORIES_CACHE)
    if cached is not None and cached[0] == version:
        return list(cached[1])
    rows = [(_view(c), n) for c, n in await uow.courses.categories()]
    uow.caches[CATEGORIES_CACHE] = (version, rows)
    return list(rows)


def _view(category) -> CategoryView:
    """A plain copy of a category row."""
    return CategoryView(
        category.id, category.slug, category.name_zh, category.name_en, category.position
    )


async def category_page(uow, category_id: int, page: int, size: int) -> CoursePage | None:
    """Page `page` of a category's active courses; None when the category does not exist."""
    category = await uow.courses.category(category_id)
    if category is None or page < 0:
        return None
    courses, total = await uow.courses.page(category.id, page * size, size)
    return CoursePage(category, list(courses), page, -(-total // size), total)


@dataclass(frozen=True)
class CourseCard:
    """The facts of one course card for one learner, priced in the channel's currency."""

    course: Any
    currency: str
    price: int | None
    owned: bool

    @property
    def buyable(self) -> bool:
        """True when the learner may buy it here: not owned and priced in this currency."""
        return not self.owned and self.price is not None


async def open_course(
    uow, learner_id: int, course_id: int, currency: str, now: datetime, *, recommended=False
) -> CourseCard | None:
    """A learner opens a course card: records the view (and the recommendation click).

    None when the course does not exist or is withdrawn (nothing is recorded then).
    """
    course = await uow.courses.get(course_id)
    if course is None or not course.active:
        return None
    await uow.interactions.add(learner_id, course.id, Signal.VIEW.value, when=now)
    if recommended:
        await uow.interactions.add(learner_id, course.id, Signal.REC_CLICK.value, when=now)
    owned = await uow.enrolments.owns(learner_id, course.id)
    return CourseCard(course, currency, price_in(course, currency), owned)


def course_document(course) -> str:
    """The searchable text of a course: titles weigh more than descriptions."""
    return course_text(_Row(course))


class _Row:
    """A course object seen as a `documents` row (one text recipe for both)."""

    def __init__(self, course) -> None:
        self.__dict__.update(
            title_zh=course.title_zh,
            title_en=course.title_en,
            description_zh=course.description_zh,
            description_en=course.description_en,
            instructor_name=course.instructor_name,
            category_zh=course.category.name_zh,
            category_en=course.category.name_en,
        )


def course_index(courses) -> TextIndex:
    """A BM25 index of exactly these courses (tests and tools; chat uses `current_index`)."""
    return TextIndex({c.id: course_document(c) for c in courses})


def clean_query(text: str) -> str:
    """A search query as searched: trimmed, at most MAX_QUERY_CHARS characters."""
    return text.strip()[:MAX_QUERY_CHARS]


async def search(uow, query: str, limit: int = MAX_RESULTS) -> list:
    """Active courses matching `query`, best first (a plain word match until this process's
    catalogue index is built; it is never built on the caller's time)."""
    index = await current_index(uow)
    if index is None:
        return await uow.courses.matching(query.split()[:8], limit)
    # ask for a few more: a course withdrawn since the last look is dropped here
    ids = [cid for cid, _ in index.search(query, limit + 4)]
    found = await uow.courses.many(ids)
    return [found[cid] for cid in ids if cid in found][:limit]


async def owned_courses(uow, learner_id: int) -> list:
    """The courses a learner owns, newest enrolment first."""
    return list(await uow.enrolments.courses_of(learner_id))


async def next_sessions(uow, course_ids, now: datetime) -> dict[int, datetime]:
    """When the next scheduled session of each of these courses starts (courses with none
    are left out)."""
    if not course_ids:
        return {}
    stmt = (
        select(LiveSession.course_id, func.min(LiveSession.starts_at))
        .where(
            LiveSession.course_id.in_(list(course_ids)),
            LiveSession.status == "scheduled",
            LiveSession.starts_at > now,
        )
        .group_by(LiveSession.course_id)
    )
    rows = (await uow.session.execute(stmt)).all()
    return {course_id: _utc(starts) for course_id, starts in rows}


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


async def cover_of(uow, course_id: int) -> bytes | None:
    """The cover picture of a course, None when it has none (loaded only for its card)."""
    return await uow.session.scalar(select(Course.cover_image).where(Course.id == course_id))
