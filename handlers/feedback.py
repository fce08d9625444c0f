"""Ratings in three 1–5 steps, an optional review, and reviews on course cards.

The chat side only: parse the command or button, call `services.ratings`, render the result.
"""

from __future__ import annotations

from bot.core import Button, Incoming, Reply, Router, esc, expect_text
from bot.parsing import parse_id, payload_id, payload_numbers
from handlers.catalog import card_buttons, card_section, course_title
from services import ratings
from services.ratings import ASPECTS, weighted_score

__all__ = ["ASPECTS", "router", "weighted_score"]

router = Router()
CARD_REVIEWS = 2
CARD_REVIEW_CHARS = 140


def _score_text(score: float) -> str:
    return f"{score:.1f}"


def _step_buttons(prefix: str) -> list[list[Button]]:
    return [[Button(f"{n} ⭐", f"{prefix}:{n}") for n in range(1, 6)]]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@router.command("rate", "评分")
async def rate(msg: Incoming, uow, learner, t) -> Reply:
    """Start rating a course the learner owns: `/rate` or `/rate <course_id>`."""
    if msg.args.strip():
        course_id = parse_id(msg.args)
        if course_id is None:
            return Reply(t("rate.usage"))
        return await start_rating(course_id, uow, learner, t)
    owned = await ratings.rateable_courses(uow, learner.id)
    if not owned:
        return Reply(t("rate.none_owned"))
    if len(owned) == 1:
        return await start_rating(owned[0].id, uow, learner, t)
    rows = [[Button(course_title(c, t), f"rate:{c.id}")] for c in owned]
    return Reply(t("rate.pick"), rows)


@router.button("rate")
async def rate_button(msg: Incoming, uow, learner, t) -> Reply:
    """`rate:<course_id>` from a card, a list or a post-session prompt."""
    course_id = payload_id(msg.payload)
    if course_id is None:
        return Reply(t("error.stale_button"))
    return await start_rating(course_id, uow, learner, t)


async def start_rating(course_id: int, uow, learner, t) -> Reply:
    """Step 1 of 3, for owners only."""
    course = await ratings.owned_course(uow, learner.id, course_id)
    if course is None:
        return Reply(t("rate.not_owned"))
    title = esc(course_title(course, t))
    return Reply(t("rate.step.content", title=title), _step_buttons(f"rt:{course.id}"))


@router.button("rt")
async def rating_step(msg: Incoming, uow, learner, t, settings, clock) -> Reply:
    """`rt:<course>:<c>[:<i>[:<x>]]`: the next step, or the saved rating when all three are in."""
    numbers = payload_numbers(msg.payload)
    if not numbers or len(numbers) < 2 or len(numbers) > 4:
        return Reply(t("error.stale_button"))
    course_id, parts = numbers[0], numbers[1:]
    if not all(1 <= p <= 5 for p in parts):
        return Reply(t("error.stale_button"))
    if len(parts) < 3:
        course = await ratings.owned_course(uow, learner.id, course_id)
        if course is None:
            return Reply(t("rate.not_owned"))
        title = esc(course_title(course, t))
        prefix = "rt:" + ":".join(str(n) for n in numbers)
        return Reply(t(f"rate.step.{ASPECTS[len(parts)]}", title=title), _step_buttons(prefix))
    saved = await ratings.save_rating(
        uow, learner.id, course_id, (parts[0], parts[1], parts[2]), settings, clock.now()
    )
    if saved is None:
        return Reply(t("rate.not_owned"))
    await expect_text(uow, learner.id, "review", course_id=saved.course_id)
    text = (t("rate.saved") if saved.created else t("rate.changed")).format(
        content=parts[0],
        instructor=parts[1],
        interaction=parts[2],
        score=_score_text(saved.score),
        limit=settings.review_max_chars,
    )
    return Reply(text, [[Button(t("rate.skip"), f"rvskip:{saved.course_id}")]])


@router.button("rvskip")
async def skip_review(t) -> Reply:
    """ "Skip": no review this time (the pending step was already cleared by the press)."""
    return Reply(t("rate.skipped"))


@router.step("review")
async def review_text(msg: Incoming, uow, learner, t, settings, clock, step) -> Reply:
    """The learner's review after a rating; over the limit nothing is saved."""
    course_id = int(step["course_id"])
    outcome = await ratings.save_review(
        uow, learner.id, course_id, msg.text, settings, clock.now()
    )
    if outcome == "too_long":
        await expect_text(uow, learner.id, "review", course_id=course_id)
        count, limit = len(msg.text.strip()), settings.review_max_chars
        skip = [[Button(t("rate.skip"), f"rvskip:{course_id}")]]
        return Reply(t("review.too_long", count=count, limit=limit), skip)
    if outcome == "empty":
        await expect_text(uow, learner.id, "review", course_id=course_id)
        return Reply(t("rate.skipped"))
    if outcome == "not_owned":
        return Reply(t("rate.not_owned"))
    return Reply(t("review.saved"))


@router.command("reviews", "评价列表")
async def reviews(msg: Incoming, uow, t, settings) -> Reply:
    """Page through a course's reviews: `/reviews <course_id>`."""
    course_id = parse_id(msg.args)
    if course_id is None:
        return Reply(t("reviews.usage"))
    return await reviews_page(course_id, 0, uow, t, settings)


@router.button("rvw")
async def reviews_button(msg: Incoming, uow, t, settings) -> Reply:
    """`rvw:<course_id>:<page>`."""
    numbers = payload_numbers(msg.payload)
    if not numbers or len(numbers) != 2:
        return Reply(t("error.stale_button"))
    return await reviews_page(numbers[0], numbers[1], uow, t, settings)


async def reviews_page(course_id: int, page: int, uow, t, settings) -> Reply:
    """One page of reviews, newest first, every text escaped."""
    found = await ratings.reviews_page(uow, course_id, page, settings.reviews_page_size)
    if found is None:
        return Reply(t("card.not_found"))
    course_id = found.course.id
    title = esc(course_title(found.course, t))
    if not found.reviews:
        return Reply(t("reviews.none", title=title))
    lines = [
        t.plural(
            "reviews.page",
            found.total,
            title=title,
            page=page + 1,
            pages=found.pages,
            total=found.total,
        )
    ]
    for review in found.reviews:
        lines.append(f"\n⭐ {_score_text(review.score)} — {esc(review.name or '?')}")
        lines.append(esc(review.text))
    nav = []
    if page > 0:
        nav.append(Button(t("reviews.prev"), f"rvw:{course_id}:{page - 1}"))
    if page + 1 < found.pages:
        nav.append(Button(t("reviews.next"), f"rvw:{course_id}:{page + 1}"))
    return Reply("\n".join(lines), [nav] if nav else [])


@card_section
async def rating_section(course, learner, uow, t, clock) -> str:
    """The card's average score, number of ratings and the two newest reviews."""
    found = await ratings.card_ratings(uow, course.id, CARD_REVIEWS)
    lines = [
        t("card.rating", avg=_score_text(found.average), count=found.count)
        if found.count
        else t("card.no_rating")
    ]
    if found.newest:
        lines.append(t("card.reviews"))
        lines += [
            f"· “{esc(_clip(review.text, CARD_REVIEW_CHARS))}” — {esc(review.name or '?')}"
            for review in found.newest
        ]
    if found.reviews_total > CARD_REVIEWS:
        total = found.reviews_total
        lines.append(t.plural("card.more_reviews", total, id=course.id, count=total))
    return "\n".join(lines)


@card_buttons
async def rate_card_button(course, learner, owned, uow, t) -> list[Button]:
    """Owners get a "Rate this course" button on the card."""
    return [Button(t("rate.button"), f"rate:{course.id}")] if owned else []
