"""Browsing: categories, pages of courses, the course card."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.core import Button, Incoming, Reply, Router, esc
from bot.i18n import Translator

router = Router()

CardSection = Callable[..., Awaitable[str | None]]
CardButtons = Callable[..., Awaitable[list[Button]]]
CARD_SECTIONS: list[CardSection] = []
CARD_BUTTONS: list[CardButtons] = []


def card_section(fn: CardSection) -> CardSection:
    """Register a block of text for the course card: fn(course, learner, uow, t, clock)."""
    CARD_SECTIONS.append(fn)
    return fn


def card_buttons(fn: CardButtons) -> CardButtons:
    """Register extra card buttons: fn(course, learner, owned, uow, t)."""
    CARD_BUTTONS.append(fn)
    return fn


def price_text(course, channel: str, t: Translator) -> str:
    """The course price in the currency of the channel."""
    return t.cny(course.price_fen) if channel == "wechat" else t.stars(course.price_stars)


def category_name(category, t: Translator) -> str:
    """A category's name in the learner's language."""
    return t.pick(category.name_zh, category.name_en)


def course_title(course, t: Translator) -> str:
    """A course title in the learner's language (unescaped)."""
    return t.pick(course.title_zh, course.title_en)


@router.command("catalog", "课程", "目录", "catalogue")
async def catalog(uow, t) -> Reply:
    """List the categories that have courses on sale."""
    categories = await uow.courses.categories()
    if not categories:
        return Reply(t("catalog.empty"))
    rows = [
        [Button(f"{category_name(c, t)} ({count})", f"cat:{c.id}:0")] for c, count in categories
    ]
    return Reply(t("catalog.categories"), rows)


@router.button("cats")
async def categories_button(uow, t) -> Reply:
    """Back to the category list."""
    return await catalog(uow, t)


@router.button("cat")
async def category_page(msg: Incoming, uow, t, settings) -> Reply:
    """One page of one category's courses."""
    parts = msg.payload.split(":")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return Reply(t("error.stale_button"))
    category = await uow.courses.category(int(parts[1]))
    if category is None:
        return Reply(t("error.stale_button"))
    size = settings.catalog_page_size
    courses, total = await uow.courses.page(category.id, int(parts[2]) * size, size)
    if not courses:
        return Reply(t("catalog.empty"), [[Button(t("catalog.back"), "cats")]])
    page, pages = int(parts[2]), -(-total // size)
    rows = [
        [Button(f"{course_title(c, t)} · {price_text(c, msg.channel, t)}", f"course:{c.id}")]
        for c in courses
    ]
    nav = []
    if page > 0:
        nav.append(Button(t("catalog.prev"), f"cat:{category.id}:{page - 1}"))
    if page + 1 < pages:
        nav.append(Button(t("catalog.next"), f"cat:{category.id}:{page + 1}"))
    rows += [nav] if nav else []
    rows.append([Button(t("catalog.back"), "cats")])
    text = t.plural(
        "catalog.page",
        total,
        category=esc(category_name(category, t)),
        page=page + 1,
        pages=pages,
        total=total,
    )
    return Reply(text, rows)


@router.button("course")
async def course_button(msg: Incoming, uow, learner, t, clock) -> Reply:
    """Open a course card from a button."""
    course_id = msg.payload.partition(":")[2]
    if not course_id.isdigit():
        return Reply(t("card.not_found"))
    return await course_card(int(course_id), msg, uow, learner, t, clock)


async def course_card(course_id: int, msg: Incoming, uow, learner, t, clock) -> Reply:
    """The card of one course: title, #id, category, instructor, price, sections, buttons."""
    course = await uow.courses.get(course_id)
    if course is None or not course.active:
        return Reply(t("card.not_found"))
    await uow.interactions.add(learner.id, course.id, "view")
    price = price_text(course, msg.channel, t)
    text = t(
        "card.body",
        title=esc(course_title(course, t)),
        id=course.id,
        category=esc(category_name(course.category, t)),
        instructor=esc(course.instructor_name),
        price=price,
        description=esc(t.pick(course.description_zh, course.description_en)),
    )
    for section in CARD_SECTIONS:
        extra = await section(course=course, learner=learner, uow=uow, t=t, clock=clock)
        if extra:
            text += "\n\n" + extra
    owned = await uow.enrolments.owns(learner.id, course.id)
    first = (
        Button(t("card.owned"), "mine")
        if owned
        else Button(t("card.buy", price=price), f"buy:{course.id}")
    )
    rows = [[first]]
    for extra_buttons in CARD_BUTTONS:
        more = await extra_buttons(course=course, learner=learner, owned=owned, uow=uow, t=t)
        rows += [[b] for b in more]
    rows.append([Button(t("catalog.back"), f"cat:{course.category_id}:0")])
    return Reply(text, rows)
