"""Browsing: categories, pages of courses, the course card."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from babel.dates import format_datetime

from bot.core import Button, Incoming, Reply, Router, esc
from bot.i18n import Translator
from bot.parsing import parse_id, parse_page, payload_numbers
from services import catalog as service
from services.catalog import PRICE_FIELDS, currency_of, price_in

router = Router()

CardSection = Callable[..., Awaitable[str | None]]
CardButtons = Callable[..., Awaitable[list[Button]]]
CARD_SECTIONS: list[CardSection] = []
CARD_BUTTONS: list[CardButtons] = []
#: The suffix of a course button that a recommendation showed (`course:<id>:rec`).
FROM_RECOMMENDATION = "rec"


def card_section(fn: CardSection) -> CardSection:
    """Register a block of text for the course card: fn(course, learner, uow, t, clock)."""
    CARD_SECTIONS.append(fn)
    return fn


def card_buttons(fn: CardButtons) -> CardButtons:
    """Register extra card buttons: fn(course, learner, owned, uow, t)."""
    CARD_BUTTONS.append(fn)
    return fn


def price_text(course, currency: str, t: Translator) -> str | None:
    """The course price in `currency`, formatted; None when it is not sold in that currency."""
    price = price_in(course, currency)
    return None if price is None else t.money(price, currency)


def category_name(category, t: Translator) -> str:
    """A category's name in the learner's language."""
    return t.pick(category.name_zh, category.name_en)


def course_title(course, t: Translator) -> str:
    """A course title in the learner's language (unescaped)."""
    return t.pick(course.title_zh, course.title_en)


def course_button(course, currency: str, t: Translator, payload: str | None = None) -> Button:
    """A button opening a course card, labelled with its title and price here."""
    price = price_text(course, currency, t)
    label = course_title(course, t) + (f" · {price}" if price else "")
    return Button(label, payload or f"course:{course.id}")


#: Telegram shows at most 64 characters of a button; a list entry fits, title shortened first.
MAX_LABEL = 64
MIN_TITLE = 12


def short_when(moment, t: Translator) -> str:
    """A moment in the learner's zone, short enough for a list entry (`11-25 20:00`)."""
    pattern = "MM-dd HH:mm" if t.locale == "en" else "M月d日 HH:mm"
    locale = "en_US" if t.locale == "en" else "zh_CN"
    return format_datetime(moment.astimezone(t.zone), pattern, locale=locale)


def listing_label(course, currency: str, t: Translator, next_start=None, note: str = "") -> str:
    """One course in a list, said once: `#id title · price · 📅 next session — note`, at
    most MAX_LABEL characters (the title gives way first, then the note)."""
    price = price_text(course, currency, t) or t("card.no_price")
    when = " · " + t("list.next", time=short_when(next_start, t)) if next_start else ""
    title = course_title(course, t)

    def label(title: str, note: str) -> str:
        line = t("list.course", id=course.id, title=title, price=price) + when
        return line + (f" — {note}" if note else "")

    excess = len(label(title, note)) - MAX_LABEL
    if excess > 0 and len(title) > MIN_TITLE:
        keep = max(MIN_TITLE, len(title) - excess - 1)
        title = title[:keep].rstrip() + "…"
    excess = len(label(title, note)) - MAX_LABEL
    if excess > 0 and note:
        note = note[: max(0, len(note) - excess - 1)].rstrip() + "…"
    return label(title, note)[:MAX_LABEL]


async def listing_rows(
    courses, currency: str, t: Translator, uow, clock, notes=None, suffix: str = ""
) -> list[list[Button]]:
    """One button per course, each the course's only line in the list (id, price, next
    session, and a note such as the reason of a suggestion); `suffix` ends the payloads."""
    starts = await service.next_sessions(uow, [c.id for c in courses], clock.now())
    notes = notes or {}
    return [
        [
            Button(
                listing_label(c, currency, t, starts.get(c.id), notes.get(c.id, "")),
                f"course:{c.id}" + (f":{suffix}" if suffix else ""),
            )
        ]
        for c in courses
    ]


@router.command("catalog", "课程", "目录", "catalogue")
async def catalog(uow, t) -> Reply:
    """List the categories that have courses on sale."""
    categories = await service.categories(uow)
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
async def category_page(msg: Incoming, uow, t, settings, channels, clock) -> Reply:
    """One page of one category's courses."""
    numbers = payload_numbers(msg.payload)
    if numbers is None or len(numbers) != 2 or parse_page(str(numbers[1])) is None:
        return Reply(t("error.stale_button"))
    page = await service.category_page(uow, numbers[0], numbers[1], settings.catalog_page_size)
    if page is None:
        return Reply(t("error.stale_button"))
    if not page.courses:
        return Reply(t("catalog.empty"), [[Button(t("catalog.back"), "cats")]])
    currency = currency_of(channels, msg.channel)
    rows = await listing_rows(page.courses, currency, t, uow, clock)
    category_id = page.category.id
    nav = []
    if page.has_prev:
        nav.append(Button(t("catalog.prev"), f"cat:{category_id}:{page.page - 1}"))
    if page.has_next:
        nav.append(Button(t("catalog.next"), f"cat:{category_id}:{page.page + 1}"))
    rows += [nav] if nav else []
    rows.append([Button(t("catalog.back"), "cats")])
    text = t.plural(
        "catalog.page",
        page.total,
        category=esc(category_name(page.category, t)),
        page=page.page + 1,
        pages=page.pages,
        total=page.total,
    )
    return Reply(text, rows)


@router.button("course")
async def open_course_button(msg: Incoming, uow, learner, t, clock, channels) -> Reply:
    """Open a course card from a button: `course:<id>`, or `course:<id>:rec` from a suggestion."""
    parts = msg.payload.split(":")
    course_id = parse_id(parts[1]) if len(parts) in (2, 3) else None
    if course_id is None or (len(parts) == 3 and parts[2] != FROM_RECOMMENDATION):
        return Reply(t("card.not_found"))
    return await course_card(
        course_id, msg, uow, learner, t, clock, channels, recommended=len(parts) == 3
    )


async def course_card(
    course_id: int, msg: Incoming, uow, learner, t, clock, channels, recommended: bool = False
) -> Reply:
    """The card of one course: title, #id, category, instructor, price, sections, buttons."""
    card = await service.open_course(
        uow,
        learner.id,
        course_id,
        currency_of(channels, msg.channel),
        clock.now(),
        recommended=recommended,
    )
    if card is None:
        return Reply(t("card.not_found"))
    course = card.course
    price = t.money(card.price, card.currency) if card.price is not None else None
    text = t(
        "card.body",
        title=esc(course_title(course, t)),
        id=course.id,
        category=esc(category_name(course.category, t)),
        instructor=esc(instructor_line(course, t)),
        price=prices_line(course, card.currency, t),
        description=esc(t.pick(course.description_zh, course.description_en)),
    )
    for section in CARD_SECTIONS:
        extra = await section(course=course, learner=learner, uow=uow, t=t, clock=clock)
        if extra:
            text += "\n\n" + extra
    rows = []
    if card.owned:
        rows.append([Button(t("card.owned"), "mine")])
    elif card.buyable:
        rows.append([Button(t("card.buy", price=price), f"buy:{course.id}")])
    for extra_buttons in CARD_BUTTONS:
        more = await extra_buttons(course=course, learner=learner, owned=card.owned, uow=uow, t=t)
        rows += [[b] for b in more]
    rows.append([Button(t("catalog.back"), f"cat:{course.category_id}:0")])
    return Reply(text, rows, image=await service.cover_of(uow, course.id))


def prices_line(course, currency: str, t: Translator) -> str:
    """Every price of a course, the one this channel takes first."""
    here = price_text(course, currency, t)
    others = [price_text(course, c, t) for c in PRICE_FIELDS if c != currency]
    others = [p for p in others if p]
    if here and others:
        return t("card.price.both", here=here, other=" · ".join(others))
    if here:
        return here
    if others:
        return t("card.price.elsewhere", other=" · ".join(others))
    return t("card.no_price")


def instructor_line(course, t: Translator) -> str:
    """The instructor's name and, when known, their short bio (unescaped)."""
    bio = (getattr(course, "instructor_bio", "") or "").strip()
    return f"{course.instructor_name} — {bio}" if bio else course.instructor_name
