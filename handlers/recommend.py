"""“You may also like”: /recommend, and suggestions after a purchase and on /mycourses."""

from __future__ import annotations

import html

from bot.core import Reply, Router, esc
from bot.i18n import Translator
from handlers.catalog import FROM_RECOMMENDATION, category_name, course_title, listing_rows
from handlers.mycourses import after_my_courses
from handlers.purchase import after_purchase
from services.catalog import currency_of
from services.stats import suggestions_shown
from services.suggestions import Suggested, suggestions

router = Router()

#: Reasons that name the category the learner was looking at.
CATEGORY_REASONS = ("new_in_category", "popular_in_category", "in_category")


def reason_text(pick: Suggested, t: Translator) -> str:
    """The one-line reason of a suggestion, naming a real course or category."""
    if pick.reason == "because_you_took" and pick.because is not None:
        return t("rec.because_you_took", course=esc(course_title(pick.because, t)))
    if pick.reason in CATEGORY_REASONS and pick.category is not None:
        return t(f"rec.{pick.reason}", category=esc(category_name(pick.category, t)))
    if pick.reason == "similar_learners":
        return t("rec.similar_learners")
    return t("rec.popular")


async def suggestions_reply(
    learner, uow, t, recommender, clock, msg, channels, currency: str | None = None
) -> Reply | None:
    """Up to five courses the learner does not own, each once: id, price, next session and
    its reason on its button; None when none.

    Their buttons are `course:<id>:rec`, so opening one records a recommendation click; the
    courses shown are recorded as impressions (click-through in /stats).
    """
    picks = await suggestions(uow, recommender, learner.id)
    if not picks:
        return None
    await suggestions_shown(uow, learner.id, [pick.course.id for pick in picks], clock.now())
    notes = {pick.course.id: plain_reason(pick, t) for pick in picks}
    currency = currency or currency_of(channels, msg.channel)
    courses = [pick.course for pick in picks]
    rows = await listing_rows(courses, currency, t, uow, clock, notes, FROM_RECOMMENDATION)
    return Reply(t("rec.title"), rows)


def plain_reason(pick: Suggested, t: Translator) -> str:
    """The reason as a button label shows it (labels are plain text, not HTML)."""
    return html.unescape(reason_text(pick, t))


@router.command("recommend", "推荐")
async def recommend(learner, uow, t, recommender, clock, msg, channels) -> Reply:
    """Suggest the next courses to buy."""
    found = await suggestions_reply(learner, uow, t, recommender, clock, msg, channels)
    return found or Reply(t("rec.none"))


@after_purchase
async def after_buying(learner, uow, t, recommender, clock, msg) -> list[Reply]:
    """Suggestions right after a purchase, priced in the currency just paid in."""
    currency = msg.payment.currency if msg.payment else None
    reply = await suggestions_reply(learner, uow, t, recommender, clock, msg, None, currency)
    return [reply] if reply else []


@after_my_courses
async def after_listing(learner, uow, t, recommender, clock, msg, channels) -> list[Reply]:
    """Suggestions under /mycourses."""
    reply = await suggestions_reply(learner, uow, t, recommender, clock, msg, channels)
    return [reply] if reply else []
