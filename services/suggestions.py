"""What a learner is offered next: the recommender's picks as courses, each with its cause.

Built on `services.recommendations` (how the recommender reads storage). A broken model never
reaches the learner: it is logged and there are no suggestions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from services.recommendations import course_info, interaction

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


async def suggestions(uow, recommender, learner_id: int, n: int = SUGGESTIONS) -> list[Suggested]:
    """Up to `n` courses the learner does not own, best first; [] when there is nothing."""
    if recommender is None:
        return []
    courses = await uow.courses.all()
    catalog = {c.id: course_info(c) for c in courses}
    history = [
        interaction(r)
        for r in await uow.interactions.of_learner(learner_id)
        if r.course_id is not None
    ]
    owned = await uow.enrolments.course_ids_of(learner_id)
    browsed = {catalog[h.course_id].category for h in history if h.course_id in catalog}
    try:
        recommender.refresh()
        picks = recommender.suggest(
            learner_id, owned, list(catalog.values()), history, browsed, n=n
        )
    except Exception:  # a broken model must never reach the learner
        log.exception("recommender failed for learner %s", learner_id)
        return []
    by_id = {c.id: c for c in courses}
    categories = {c.category.slug: c.category for c in courses}
    return [
        Suggested(
            course=by_id[pick.course_id],
            reason=pick.reason,
            because=by_id.get(pick.reason_course_id) if pick.reason_course_id else None,
            category=categories.get(pick.reason_category) if pick.reason_category else None,
        )
        for pick in picks
        if pick.course_id in by_id
    ]
