"""Interactions to pseudo-ratings: the table that turns what learners do into 1-5 scores.

Every kind of interaction the product records is one member of :class:`Signal`; an unknown kind
string is refused when an :class:`Interaction` is built (``ValueError``), so a typo in a recorder
fails loudly instead of silently training on nothing.

Rules, for one learner and one course:

1. An explicit rating wins over every implicit signal (the latest rating, if several), mapped
   linearly from the 1-5 star scale onto ``rating_low..rating_high``.
2. Otherwise a refund overrides everything else down to ``refund``.
3. Otherwise the strongest implicit signal counts (the maximum, not the sum, so that a learner who
   views a card ten times does not outweigh one who bought it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum


class Signal(StrEnum):
    """Every interaction kind that is recorded (the ``kind`` column of ``interactions``)."""

    VIEW = "view"  # opened the course card
    PURCHASE = "purchase"  # paid and enrolled
    REFUND = "refund"  # money returned: "not for me"
    RATING = "rating"  # 1-5 stars after a session (value = stars)
    QUESTION = "question"  # asked a question about the course
    FAQ_HIT = "faq_hit"  # an FAQ answer about the course was shown (value = match score)
    FAQ_HELPFUL = "faq_helpful"  # pressed "this helped" under an FAQ answer
    REVIEW = "review"  # wrote a review (value = the stars given with it)
    ATTENDANCE = "attendance"  # opened the live link of a session
    REC_CLICK = "rec_click"  # opened a course from a recommendation


KINDS = tuple(s.value for s in Signal)
EXPLICIT_KINDS = (Signal.RATING,)
IMPLICIT_KINDS = tuple(s for s in Signal if s not in (Signal.RATING, Signal.REFUND))


def as_signal(kind: str | Signal) -> Signal:
    """Convert a stored kind string to a :class:`Signal`; ``ValueError`` if it is unknown."""
    try:
        return Signal(kind)
    except ValueError:
        raise ValueError(f"unknown interaction kind {kind!r}; known: {', '.join(KINDS)}") from None


@dataclass(frozen=True, slots=True)
class Interaction:
    """One thing a learner did with a course; ``at`` is UTC-aware; ``kind`` is a Signal."""

    learner_id: int
    course_id: int
    kind: Signal
    value: float | None
    at: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", as_signal(self.kind))


@dataclass(frozen=True, slots=True)
class SignalWeights:
    """Pseudo-rating per signal kind (1-5 scale); ``negative`` is for sampled untouched items.

    Chosen on a validation split (see recommender/README.md, "Signal weights").
    """

    purchase: float = 4.0
    attendance: float = 4.5
    review: float = 4.5
    faq_helpful: float = 3.5
    question: float = 3.5
    rec_click: float = 3.0
    view: float = 2.5
    faq_hit: float = 2.5
    refund: float = 1.0
    negative: float = 1.0
    rating_low: float = 2.0
    rating_high: float = 5.0

    def implicit(self, kind: str | Signal) -> float | None:
        """Return the pseudo-rating of an implicit kind, None for rating/refund."""
        signal = as_signal(kind)
        return getattr(self, signal.value) if signal in IMPLICIT_KINDS else None

    def from_stars(self, stars: float) -> float:
        """Map an explicit 1-5 star score onto ``rating_low..rating_high``."""
        clipped = min(5.0, max(1.0, float(stars)))
        return self.rating_low + (clipped - 1.0) / 4.0 * (self.rating_high - self.rating_low)

    def confidence(self, pseudo: float) -> float:
        """How much a pair counts in the item-item component: 0 at ``negative``, 1 at 5.0."""
        return min(1.0, max(0.0, (pseudo - self.negative) / (5.0 - self.negative)))


def weighted_kinds() -> set[str]:
    """Kinds that carry their own pseudo-rating field (for the completeness test)."""
    names = {f.name for f in fields(SignalWeights)}
    return {k for k in KINDS if k in names} | {Signal.RATING.value}


@dataclass(slots=True)
class _Cell:
    rating: float | None = None
    rating_at: datetime | None = None
    refunded: bool = False
    implicit: float | None = None
    first_at: datetime | None = None


def _absorb(cell: _Cell, event: Interaction, weights: SignalWeights) -> None:
    kind = as_signal(event.kind)
    if cell.first_at is None or event.at < cell.first_at:
        cell.first_at = event.at
    if kind is Signal.RATING:
        if event.value is not None and (cell.rating_at is None or event.at >= cell.rating_at):
            cell.rating, cell.rating_at = weights.from_stars(event.value), event.at
    elif kind is Signal.REFUND:
        cell.refunded = True
    else:
        score = weights.implicit(kind)
        cell.implicit = score if cell.implicit is None else max(cell.implicit, score)


def _resolve(cell: _Cell, weights: SignalWeights) -> float | None:
    if cell.rating is not None:
        return cell.rating
    if cell.refunded:
        return weights.refund
    return cell.implicit


def _cells(interactions: Iterable[Interaction], weights: SignalWeights):
    cells: dict[tuple[int, int], _Cell] = {}
    for event in interactions:
        key = (event.learner_id, event.course_id)
        _absorb(cells.setdefault(key, _Cell()), event, weights)
    return cells


def pseudo_ratings(
    interactions: Iterable[Interaction], weights: SignalWeights | None = None
) -> list[tuple[int, int, float]]:
    """Collapse interactions into one ``(learner, course, pseudo_rating)`` per pair."""
    return [(u, i, r) for u, i, r, _ in timed_pseudo_ratings(interactions, weights)]


def timed_pseudo_ratings(
    interactions: Iterable[Interaction], weights: SignalWeights | None = None
) -> list[tuple[int, int, float, float]]:
    """Like :func:`pseudo_ratings` plus the first-touch time of the pair (POSIX seconds)."""
    weights = weights or SignalWeights()
    out = []
    for (learner, course), cell in _cells(interactions, weights).items():
        value = _resolve(cell, weights)
        if value is not None:
            out.append((learner, course, value, cell.first_at.timestamp()))
    return out


def positive_pairs(
    ratings: Iterable[tuple[int, int, float]], threshold: float = 2.5
) -> list[tuple[int, int]]:
    """Return the (learner, course) pairs whose pseudo-rating shows real interest."""
    return [(u, i) for u, i, r in ratings if r >= threshold]


def positive_rule(weights: SignalWeights, threshold: float) -> tuple[list[str], float, bool]:
    """The pseudo-rating ≥ `threshold` test as data, for counting in the database:
    (implicit kinds that pass, the fewest stars that pass, whether a refund passes)."""
    liked = [s.value for s in IMPLICIT_KINDS if weights.implicit(s) >= threshold]
    span = weights.rating_high - weights.rating_low
    if span > 0:
        min_stars = 1.0 + 4.0 * (threshold - weights.rating_low) / span
    else:
        min_stars = 1.0 if weights.rating_low >= threshold else 6.0
    return liked, min_stars, weights.refund >= threshold
