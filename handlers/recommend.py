"""“You may also like”: /recommend, and suggestions after a purchase and on /mycourses."""

from __future__ import annotations

from bot.core import Button, Reply, Router, esc
from bot.i18n import Translator
from handlers.catalog import FROM_RECOMMENDATION, category_name, course_title
from handlers.mycourses import after_my_courses
from handlers.purchase import after_purchase
from services.suggestions import Suggested, suggestions

router = Router()


def reason_text(pick: Suggested, t: Translator) -> str:
    """The one-line reason of a suggestion, naming a real course or category."""
    if pick.reason == "because_you_took" and pick.because is not None:
        return t("rec.because_you_took", course=esc(course_title(pick.because, t)))
    if pick.reason in ("new_in_category", "popular_in_category") and pick.category is not None:
        return t(f"rec.{pick.reason}", category=esc(category_name(pick.category, t)))
    if pick.reason == "similar_learners":
        return t("rec.similar_learners")
    return t("rec.popular")


async def suggestions_reply(learner, uow, t, recommender) -> Reply | None:
    """Up to five courses the learner does not own, each with its reason; None when none.

    Their buttons are `course:<id>:rec`, so opening one records a recommendation click.
    """
    picks = await suggestions(uow, recommender, learner.id)
    if not picks:
        return None
    lines, rows = [t("rec.title")], []
    for pick in picks:
        course = pick.course
        title = course_title(course, t)
        lines.append(f"#{course.id} {esc(title)} — {reason_text(pick, t)}")
        rows.append([Button(title, f"course:{course.id}:{FROM_RECOMMENDATION}")])
    return Reply("\n".join(lines), rows)


@router.command("recommend", "推荐")
async def recommend(learner, uow, t, recommender) -> Reply:
    """Suggest the next courses to buy."""
    return await suggestions_reply(learner, uow, t, recommender) or Reply(t("rec.none"))


@after_purchase
async def after_buying(learner, uow, t, recommender) -> list[Reply]:
    """Suggestions right after a purchase."""
    reply = await suggestions_reply(learner, uow, t, recommender)
    return [reply] if reply else []


@after_my_courses
async def after_listing(learner, uow, t, recommender) -> list[Reply]:
    """Suggestions under /mycourses."""
    reply = await suggestions_reply(learner, uow, t, recommender)
    return [reply] if reply else []
