"""Cold start: popularity in the browsed categories blended with content similarity.

Content similarity is the cosine of the courses' BM25 term vectors from the bot's one text index
(:mod:`bot.textindex`: jieba tokens, one stop-word list, one cache policy), the same index that
serves course search and the FAQ matcher.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from bot import textindex
from bot.textindex import STOPWORDS, TextIndex, tokenize
from recommender.entities import CourseInfo, Suggestion

__all__ = [
    "STOPWORDS",
    "ContentIndex",
    "FallbackParams",
    "IndexCache",
    "cold_start",
    "course_documents",
    "popularity_prior",
    "tokenize",
]


@dataclass(frozen=True, slots=True)
class FallbackParams:
    """Weights of the cold-start score and the thresholds that choose a reason."""

    w_popularity: float = 1.0
    w_category: float = 1.0
    w_similarity: float = 1.5
    w_new: float = 0.3
    new_days: int = 30
    similar_threshold: float = 0.15


def course_documents(catalog: Sequence[CourseInfo]) -> dict[int, str]:
    """The text the recommender compares courses by (titles, descriptions, category names)."""
    return {course.id: course.text() for course in catalog}


class ContentIndex(TextIndex):
    """The text index of catalogue courses; ``similarity`` is the cosine of two courses."""

    def __init__(self, catalog: Sequence[CourseInfo]):
        super().__init__(course_documents(catalog))


class IndexCache:
    """The text index of the catalogue, rebuilt only when a course text changes."""

    def __init__(self) -> None:
        self._cache = textindex.IndexCache(size=2)

    def get(self, catalog: Sequence[CourseInfo]) -> TextIndex:
        """Return the index for this catalogue, building it if the text changed."""
        return self._cache.get(course_documents(catalog))


def popularity_prior(ids: Iterable[int], popularity: Mapping[int, float]) -> np.ndarray:
    """Log-scaled popularity in 0..1 for ``ids``."""
    counts = np.array([float(popularity.get(i, 0.0)) for i in ids])
    top = np.log1p(counts.max(initial=0.0))
    return np.log1p(counts) / top if top > 0 else np.zeros_like(counts)


def _reason(course, best_sim, anchor, browsed, is_new, taken, params) -> tuple:
    """What a learner cares about: a course like one they took, a course others took in the
    category they browse, a course that is new there (only when the catalogue is not all new),
    or simply more of what they were looking at."""
    if anchor is not None and best_sim >= params.similar_threshold:
        return "because_you_took", anchor, None
    if course.category in browsed:
        if taken:
            return "popular_in_category", None, course.category
        return ("new_in_category" if is_new else "in_category"), None, course.category
    return "popular", None, None


def cold_start(
    candidates: Sequence[CourseInfo],
    anchors: Sequence[int],
    browsed: set[str],
    popularity: Mapping[int, float],
    index: TextIndex,
    now: datetime,
    n: int,
    params: FallbackParams | None = None,
) -> list[Suggestion]:
    """Rank candidates by category popularity, content similarity to ``anchors`` and newness."""
    params = params or FallbackParams()
    if not candidates or n <= 0:
        return []
    ids = [c.id for c in candidates]
    sims = index.similarity(ids, list(anchors))
    best = sims.max(axis=1) if len(anchors) else np.zeros(len(ids))
    which = sims.argmax(axis=1) if len(anchors) else np.zeros(len(ids), dtype=int)
    in_cat = np.array([c.category in browsed for c in candidates], dtype=float)
    fresh = now - timedelta(days=params.new_days)
    is_new = np.array([c.created_at >= fresh for c in candidates], dtype=float)
    score = (params.w_popularity * popularity_prior(ids, popularity)
             + params.w_category * in_cat + params.w_similarity * best
             + params.w_new * is_new * in_cat)
    created = np.array([c.created_at.timestamp() for c in candidates])
    order = np.lexsort((-created, -score))[:n]
    # "new" only says something when some courses are not new (a fresh catalogue is all new)
    telling_new = not bool(is_new.all())
    out = []
    for j in order:
        anchor = anchors[which[j]] if len(anchors) else None
        taken = popularity.get(ids[j], 0.0) > 0
        new = bool(is_new[j]) and telling_new
        reason, rid, rcat = _reason(candidates[j], best[j], anchor, browsed, new, taken, params)
        out.append(Suggestion(ids[j], reason, rid, rcat, float(score[j])))
    return out
