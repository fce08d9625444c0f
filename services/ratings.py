"""Ratings (three 1–5 parts, one weighted score), reviews, and what cards show of them.

Plain async functions over the unit of work returning plain data; `handlers/feedback.py` renders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bot import textindex
from recommender.signals import Signal

ASPECTS = ("content", "instructor", "interaction")
KEYWORDS = 8


@dataclass(frozen=True)
class CourseRef:
    """A course as the chat side names it (id and titles)."""

    id: int
    title_zh: str
    title_en: str

    @classmethod
    def of(cls, course) -> CourseRef:
        """The reference of a stored course."""
        return cls(course.id, course.title_zh, course.title_en)


@dataclass(frozen=True)
class SavedRating:
    """A stored rating: its weighted score, and whether it is the learner's first one."""

    course_id: int
    parts: tuple[int, int, int]
    score: float
    created: bool


@dataclass(frozen=True)
class Review:
    """One review with its reviewer's name and score."""

    text: str
    name: str
    score: float


@dataclass(frozen=True)
class ReviewsPage:
    """One page of a course's reviews, newest first."""

    course: CourseRef
    page: int
    pages: int
    total: int
    reviews: list[Review] = field(default_factory=list)


@dataclass(frozen=True)
class CardRatings:
    """What a course card shows: average score, number of ratings, the newest reviews."""

    average: float | None
    count: int
    newest: list[Review]
    reviews_total: int


def weighted_score(parts: tuple[int, int, int], settings) -> float:
    """The seed formula S = Σ wᵢ·Cᵢ with the weights from settings."""
    weights = (
        settings.rating_weight_content,
        settings.rating_weight_instructor,
        settings.rating_weight_interaction,
    )
    return round(sum(w * c for w, c in zip(weights, parts, strict=True)), 4)


async def owned_course(uow, learner_id: int, course_id: int):
    """The course when the learner owns it (only owners rate), else None."""
    course = await uow.courses.get(course_id)
    if course is None or not await uow.enrolments.owns(learner_id, course.id):
        return None
    return course


async def rateable_courses(uow, learner_id: int) -> list:
    """The courses a learner may rate (the ones they own)."""
    return await uow.enrolments.courses_of(learner_id)


async def save_rating(
    uow, learner_id: int, course_id: int, parts: tuple[int, int, int], settings, now: datetime
) -> SavedRating | None:
    """Store (or change) a rating of an owned course; None when the course is not owned."""
    course = await owned_course(uow, learner_id, course_id)
    if course is None:
        return None
    score = weighted_score(parts, settings)
    created = await uow.ratings.upsert(learner_id, course.id, parts, score, now)
    await uow.interactions.add(learner_id, course.id, Signal.RATING, score, when=now)
    return SavedRating(course.id, parts, score, created)


async def save_review(
    uow, learner_id: int, course_id: int, text: str, settings, now: datetime
) -> str:
    """Attach a review to the learner's rating: `too_long`, `empty`, `not_owned` or `saved`.

    Over the limit nothing is saved.
    """
    text = text.strip()
    if len(text) > settings.review_max_chars:
        return "too_long"
    if not text:
        return "empty"
    if await owned_course(uow, learner_id, course_id) is None:
        return "not_owned"
    rating = await uow.ratings.get(learner_id, course_id)
    if rating is None or not await uow.ratings.set_review(learner_id, course_id, text, now):
        return "not_owned"
    await uow.interactions.add(learner_id, course_id, Signal.REVIEW, rating.score, when=now)
    return "saved"


def _review(rating, name: str) -> Review:
    return Review(rating.review or "", name or "", float(rating.score or 0))


async def reviews_page(uow, course_id: int, page: int, size: int) -> ReviewsPage | None:
    """One page of a course's reviews, newest first; None when there is no such course."""
    course = await uow.courses.get(course_id)
    if course is None:
        return None
    rows, total = await uow.ratings.reviews(course.id, page * size, size)
    pages = -(-total // size)
    return ReviewsPage(CourseRef.of(course), page, pages, total, [_review(r, n) for r, n in rows])


async def card_ratings(uow, course_id: int, newest: int) -> CardRatings:
    """The average, the count and the `newest` latest reviews of a course."""
    average, count = await uow.ratings.summary(course_id)
    rows, total = await uow.ratings.reviews(course_id, 0, newest)
    return CardRatings(average, count, [_review(r, n) for r, n in rows], total)


async def review_keywords(uow, course_id: int, top: int = KEYWORDS) -> list[str]:
    """The top keywords of a course's reviews (none without reviews)."""
    texts = await uow.ratings.review_texts([course_id])
    if not texts:
        return []
    await textindex.ready()
    return textindex.keywords(texts, top)
