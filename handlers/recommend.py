"""“You may also like”: /recommend, and suggestions after a purchase and on /mycourses."""

from __future__ import annotations

import logging

from bot.core import Button, Reply, Router, esc
from bot.i18n import Translator
from handlers.catalog import course_title
from handlers.mycourses import after_my_courses
from handlers.purchase import after_purchase
from recommender.entities import CourseInfo
from services.recommendations import course_info, interaction

log = logging.getLogger(__name__)
router = Router()
SUGGESTIONS = 5


def reason_text(suggestion, catalog: dict[int, CourseInfo], t: Translator) -> str:
    """The one-line reason of a suggestion, naming a real course or category."""
    if suggestion.reason == "because_you_took" and suggestion.reason_course_id in catalog:
        anchor = catalog[suggestion.reason_course_id]
        return t("rec.because_you_took", course=esc(t.pick(anchor.title_zh, anchor.title_en)))
    if suggestion.reason in ("new_in_category", "popular_in_category"):
        named = next(
            (c for c in catalog.values() if c.category == suggestion.reason_category), None
        )
        if named is not None:
            name = t.pick(named.category_name_zh, named.category_name_en)
            return t(f"rec.{suggestion.reason}", category=esc(name))
    if suggestion.reason == "similar_learners":
        return t("rec.similar_learners")
    return t("rec.popular")


async def suggestions_reply(learner, uow, t, recommender) -> Reply | None:
    """Up to five courses the learner does not own, each with its reason; None when none."""
    if recommender is None:
        return None
    courses = await uow.courses.all()
    catalog = {c.id: course_info(c) for c in courses}
    history = [
        interaction(r)
        for r in await uow.interactions.of_learner(learner.id)
        if r.course_id is not None
    ]
    owned = await uow.enrolments.course_ids_of(learner.id)
    browsed = {catalog[h.course_id].category for h in history if h.course_id in catalog}
    try:
        recommender.refresh()
        picks = recommender.suggest(
            learner.id, owned, list(catalog.values()), history, browsed, n=SUGGESTIONS
        )
    except Exception:  # a broken model must never reach the learner
        log.exception("recommender failed for learner %s", learner.id)
        return None
    if not picks:
        return None
    by_id = {c.id: c for c in courses}
    lines, rows = [t("rec.title")], []
    for pick in picks:
        course = by_id[pick.course_id]
        title = course_title(course, t)
        lines.append(f"#{course.id} {esc(title)} — {reason_text(pick, catalog, t)}")
        rows.append([Button(title, f"course:{course.id}")])
    return Reply("\n".join(lines), rows)


@router.command("recommend", "推荐")
async def recommend(learner, uow, t, recommender) -> Reply:
    """Suggest the next courses to buy."""
    return await suggestions_reply(learner, uow, t, recommender) or Reply(t("rec.none"))


@after_purchase
async def after_buying(learner, course, uow, t, clock, msg, recommender) -> list[Reply]:
    """Suggestions right after a purchase."""
    reply = await suggestions_reply(learner, uow, t, recommender)
    return [reply] if reply else []


@after_my_courses
async def after_listing(learner, uow, t, clock, msg, recommender) -> list[Reply]:
    """Suggestions under /mycourses."""
    reply = await suggestions_reply(learner, uow, t, recommender)
    return [reply] if reply else []
