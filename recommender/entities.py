"""Plain data the recommender takes and returns (re-exported by ``recommender.service``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Reason = Literal[
    "because_you_took", "similar_learners", "new_in_category", "popular_in_category", "popular"
]


@dataclass(frozen=True, slots=True)
class CourseInfo:
    """What the recommender needs to know about one course."""

    id: int
    category: str
    category_name_zh: str
    category_name_en: str
    title_zh: str
    title_en: str
    description_zh: str
    description_en: str
    active: bool
    created_at: datetime

    def text(self) -> str:
        """Return all searchable text of the course, zh and en."""
        return " ".join((
            self.title_zh, self.title_en, self.title_zh, self.title_en,
            self.description_zh, self.description_en,
            self.category_name_zh, self.category_name_en,
        ))


@dataclass(frozen=True, slots=True)
class Suggestion:
    """One suggested course and why: ``reason_course_id`` / ``reason_category`` name the cause.

    ``because_you_took`` names a course in ``reason_course_id``; ``new_in_category`` and
    ``popular_in_category`` name a category key in ``reason_category``; ``similar_learners`` and
    ``popular`` name neither. ``score`` is comparable only within one request.
    """

    course_id: int
    reason: Reason
    reason_course_id: int | None
    reason_category: str | None
    score: float
