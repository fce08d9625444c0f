"""What a learner is offered next: the recommender's picks as courses, each with its cause.

Built on `services.recommendations` (how the recommender reads storage). A broken model never
reaches the learner: it is logged and there are no suggestions.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from functools import cache
from typing import Any

from bot.textindex import TextIndex
from services.catalog_index import built_index
from services.recommendations import info_from_row, interaction

log = logging.getLogger(__name__)

SUGGESTIONS = 5


@dataclass(frozen=True)
class Suggested:
    """One course to suggest; `reason` is the recommender's, `because` the course it names
    (because_you_took) and `category` the category it names (…_in_category), when known."""

    course: Any
    reason: str
    because: Any = None
    category: Any = None


#: How many courses each source (the model, popularity, content neighbours, the browsed
#: categories' newest) contributes to the candidates ranked for one learner.
CANDIDATES = 30


async def suggestions(uow, recommender, learner_id: int, n: int = SUGGESTIONS) -> list[Suggested]:
    """Up to `n` courses the learner does not own, best first; [] when there is nothing.

    Reads the learner's own rows and a bounded set of candidate courses (from the model's
    factors, popularity, the catalogue index and the browsed categories), never the catalogue.
    """
    if recommender is None:
        return []
    history = [
        interaction(r)
        for r in await uow.interactions.of_learner(learner_id)
        if r.course_id is not None
    ]
    owned = await uow.enrolments.course_ids_of(learner_id)
    index = await built_index(uow)  # content neighbours need not see the last minute's changes
    try:
        recommender.refresh()
        catalog, browsed = await _candidates(uow, recommender, learner_id, owned, history, index)
        picks = recommender.suggest(
            learner_id,
            owned,
            list(catalog.values()),
            history,
            browsed,
            n=n,
            index=index.base if index is not None else _empty_index(),
        )
    except Exception:  # a broken model must never reach the learner
        log.exception("recommender failed for learner %s", learner_id)
        return []
    return await _as_suggested(uow, picks)


async def _candidates(uow, recommender, learner_id, owned, history, index):
    """The learner's touched courses and the candidates, as CourseInfo by id; browsed slugs."""
    touched = {h.course_id for h in history} | set(owned)
    pool = set(recommender.candidates(learner_id, set(owned), history, CANDIDATES))
    if index is not None:
        pool |= set(_nearest(index.base, tuple(sorted(touched)), CANDIDATES))
    rows = {r.id: r for r in await uow.courses.infos(touched | pool)}
    browsed = {rows[c].category for c in touched if c in rows}
    newest = await _newest_by_category(uow)
    rows.update((r.id, r) for r in await newest(sorted(browsed)[:8]))
    if len(rows) - len(touched) < CANDIDATES:  # little known yet: the newest of the catalogue
        rows.update((r.id, r) for r in await newest([None]))
    return {cid: info_from_row(r) for cid, r in rows.items()}, browsed


#: `uow.caches` key of the newest courses per category (None: of the whole catalogue):
#: (catalogue fingerprint, {slug: rows}). The per-category read sorts the category's courses
#: on PostgreSQL (no index on created_at, id within a category), 3 ms at 10,000 courses.
NEWEST_CACHE = "suggestions.newest"


async def _newest_by_category(uow):
    """A reader of the `CANDIDATES` newest active courses of some categories together, kept
    per process until the catalogue's fingerprint (`CourseRepo.catalog_version`) changes."""
    version = await uow.courses.catalog_version()
    kept = uow.caches.get(NEWEST_CACHE)
    if kept is None or kept[0] != version:
        kept = uow.caches[NEWEST_CACHE] = (version, {})
    by_slug = kept[1]

    async def newest(slugs: list) -> list:
        rows = []
        for slug in slugs:
            if slug not in by_slug:
                wanted = None if slug is None else [slug]
                by_slug[slug] = await uow.courses.newest_in(wanted, CANDIDATES)
            rows.extend(by_slug[slug])
        rows.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return rows[:CANDIDATES]

    return newest


#: Content neighbours of a set of courses, per built index: a built `TextIndex` never changes
#: (a new one replaces it), and a learner's courses rarely do, so /recommend and the "you may
#: also like" of /mycourses and a purchase skip the product with the whole catalogue.
_NEIGHBOURS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
NEIGHBOURS_KEPT = 10_000


def _nearest(base: TextIndex, touched: tuple[int, ...], limit: int) -> list:
    kept = _NEIGHBOURS.setdefault(base, {})
    found = kept.get((touched, limit))
    if found is None:
        if len(kept) >= NEIGHBOURS_KEPT:
            kept.clear()
        found = kept[(touched, limit)] = base.nearest(list(touched), limit)
    return found


@cache
def _empty_index() -> TextIndex:
    """No content similarity (while the catalogue index is being built)."""
    return TextIndex({})


async def _as_suggested(uow, picks) -> list[Suggested]:
    """The picks as courses (active ones only) with the course or category they name."""
    named = {p.reason_course_id for p in picks if p.reason_course_id}
    ids = [p.course_id for p in picks] + sorted(named)
    courses = await uow.courses.many(ids, active_only=False)
    categories = {c.category.slug: c.category for c in courses.values()}
    out = []
    for pick in picks:
        if pick.course_id not in courses or not courses[pick.course_id].active:
            continue
        category = categories.get(pick.reason_category) if pick.reason_category else None
        if pick.reason_category and category is None:
            category = await uow.courses.category_by_slug(pick.reason_category)
        because = courses.get(pick.reason_course_id) if pick.reason_course_id else None
        out.append(Suggested(courses[pick.course_id], pick.reason, because, category))
    return out
