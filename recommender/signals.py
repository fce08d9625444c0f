"""Interactions to pseudo-ratings: the table that turns what learners do into 1-5 scores.

Rules, for one learner and one course:

1. An explicit rating wins over every implicit signal (the latest rating, if several), mapped
   linearly from the 1-5 star scale onto ``rating_low..rating_high``.
2. Otherwise a refund overrides everything else down to ``refund``.
3. Otherwise the strongest implicit signal counts (the maximum, not the sum, so that a learner who
   views a card ten times does not outweigh one who bought it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

KINDS = ("rating", "purchase", "attendance", "question", "view", "refund", "faq_hit")
IMPLICIT_KINDS = ("purchase", "attendance", "question", "view", "faq_hit")


@dataclass(frozen=True, slots=True)
class Interaction:
    """One thing a learner did with a course; ``at`` is UTC-aware."""

    learner_id: int
    course_id: int
    kind: str
    value: float | None
    at: datetime


@dataclass(frozen=True, slots=True)
class SignalWeights:
    """Pseudo-rating per signal kind (1-5 scale); ``negative`` is for sampled untouched items."""

    purchase: float = 4.0
    attendance: float = 4.5
    question: float = 4.0
    view: float = 3.0
    faq_hit: float = 3.0
    refund: float = 1.0
    negative: float = 1.0
    rating_low: float = 2.0
    rating_high: float = 5.0

    def implicit(self, kind: str) -> float | None:
        """Return the pseudo-rating of an implicit kind, or None for unknown kinds."""
        return getattr(self, kind) if kind in IMPLICIT_KINDS else None

    def from_stars(self, stars: float) -> float:
        """Map an explicit 1-5 star score onto ``rating_low..rating_high``."""
        clipped = min(5.0, max(1.0, float(stars)))
        return self.rating_low + (clipped - 1.0) / 4.0 * (self.rating_high - self.rating_low)


@dataclass(slots=True)
class _Cell:
    rating: float | None = None
    rating_at: datetime | None = None
    refunded: bool = False
    implicit: float | None = None


def _absorb(cell: _Cell, event: Interaction, weights: SignalWeights) -> None:
    if event.kind == "rating":
        if event.value is not None and (cell.rating_at is None or event.at >= cell.rating_at):
            cell.rating, cell.rating_at = weights.from_stars(event.value), event.at
    elif event.kind == "refund":
        cell.refunded = True
    else:
        score = weights.implicit(event.kind)
        if score is not None:
            cell.implicit = score if cell.implicit is None else max(cell.implicit, score)


def _resolve(cell: _Cell, weights: SignalWeights) -> float | None:
    if cell.rating is not None:
        return cell.rating
    if cell.refunded:
        return weights.refund
    return cell.implicit


def pseudo_ratings(
    interactions: Iterable[Interaction], weights: SignalWeights | None = None
) -> list[tuple[int, int, float]]:
    """Collapse interactions into one ``(learner, course, pseudo_rating)`` per pair."""
    weights = weights or SignalWeights()
    cells: dict[tuple[int, int], _Cell] = {}
    for event in interactions:
        key = (event.learner_id, event.course_id)
        _absorb(cells.setdefault(key, _Cell()), event, weights)
    out = []
    for (learner, course), cell in cells.items():
        value = _resolve(cell, weights)
        if value is not None:
            out.append((learner, course, value))
    return out


def positive_pairs(
    ratings: Iterable[tuple[int, int, float]], threshold: float = 2.5
) -> list[tuple[int, int]]:
    """Return the (learner, course) pairs whose pseudo-rating shows real interest."""
    return [(u, i) for u, i, r in ratings if r >= threshold]
