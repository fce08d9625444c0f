"""Ratings in three steps, reviews, card averages and review paging."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from handlers.feedback import weighted_score
from storage.models import Interaction, Rating
from tests.conftest import make_settings
from tests.fakes.telegram_api import has
from tests.handlers.support import Chat, enrol, payloads, rate_with_buttons, shown


async def ratings(app) -> list[Rating]:
    """Every rating row."""
    async with app.uow() as uow:
        return list((await uow.session.execute(select(Rating).order_by(Rating.id))).scalars())


async def interactions(app, kind: str) -> list[Interaction]:
    """Interactions of one kind, oldest first."""
    async with app.uow() as uow:
        stmt = select(Interaction).where(Interaction.kind == kind).order_by(Interaction.id)
        return list((await uow.session.execute(stmt)).scalars())


async def test_rating_flow_through_aiogram(telegram_app, tg):
    """Three button steps, Skip, a changed rating with a review, and a refusal when not owned."""
    app = telegram_app
    user = tg.user(3001, first_name="<i>Li", language_code="en")
    await user.send("/start")
    await user.wait_for_message(has("Hi"))
    await enrol(app, "telegram", "3001", 1)

    await user.send("/rate 2")
    await user.wait_for_message(has("Only learners who bought this course can rate it"))
    await user.send("/rate")
    saved = await rate_with_buttons(user, (4, 5, 3), "Rating saved")
    assert "overall 4.0" in saved["text"]
    await user.press("Skip")
    await user.wait_for_message(has("Thank you for rating"))
    [first] = await ratings(app)
    assert (first.content, first.instructor, first.interaction) == (4, 5, 3)
    assert first.score == pytest.approx(0.4 * 4 + 0.3 * 5 + 0.3 * 3)
    assert first.review is None

    await user.send("/rate 1")
    changed = await rate_with_buttons(user, (2, 2, 1), "Rating changed")
    assert "overall 1.7" in changed["text"]
    await user.send("<b>Too fast</b> & no Q&A")
    await user.wait_for_message(has("Thank you for your review"))
    [second] = await ratings(app)
    assert second.id == first.id and second.score == pytest.approx(1.7)
    assert second.review == "<b>Too fast</b> & no Q&A"

    await user.send("/start course_1")
    card = await user.wait_for_message(has("#1"))
    assert "Rated 1.7 / 5 · ratings: 1" in card["text"]
    assert "“<b>Too fast</b> & no Q&A” — <i>Li" in card["text"]
    assert not tg.errors, tg.errors
    assert [i.value for i in await interactions(app, "rating")] == pytest.approx([4.0, 1.7])
    assert len(await interactions(app, "review")) == 1


async def test_weighted_scores_and_card_average(app):
    """S = Σ wᵢ·Cᵢ per rating; the card shows the mean, the count and the two newest reviews."""
    parts = {"a": (5, 5, 5), "b": (3, 4, 2), "c": (1, 2, 5)}
    for ref, (c, i, x) in parts.items():
        await enrol(app, "console", ref, 1, name=f"N{ref}")
        chat = Chat(app, ref, f"N{ref}")
        await chat.press(f"rt:1:{c}:{i}:{x}")
        app.clock.advance(minutes=1)
        await chat.send(f"review by {ref}")
    scores = [0.4 * c + 0.3 * i + 0.3 * x for c, i, x in parts.values()]
    assert [r.score for r in await ratings(app)] == pytest.approx(scores)
    card = await Chat(app, "viewer").press("course:1")
    mean = sum(scores) / 3
    assert f"Rated <b>{mean:.1f}</b> / 5 · ratings: 3" in card.text
    assert "review by c" in card.text and "review by b" in card.text
    assert "review by a" not in card.text
    assert "/reviews 1 for all 3 reviews" in card.text
    assert "askc:1" in payloads(card) and "rate:1" not in payloads(card)

    await Chat(app, "c", "Nc").press("rt:1:5:5:5")
    card = await Chat(app, "viewer").press("course:1")
    mean = (scores[0] + scores[1] + 5) / 3
    assert f"Rated <b>{mean:.1f}</b> / 5 · ratings: 3" in card.text


def test_weights_are_settings():
    """The weights come from settings; the defaults are 0.4 / 0.3 / 0.3."""
    settings = make_settings("sqlite+aiosqlite://")
    assert weighted_score((5, 1, 1), settings) == pytest.approx(2.6)
    custom = make_settings(
        "sqlite+aiosqlite://",
        rating_weight_content=0.5,
        rating_weight_instructor=0.25,
        rating_weight_interaction=0.25,
    )
    assert weighted_score((5, 1, 1), custom) == pytest.approx(3.0)


async def test_rating_refused_and_tampered_buttons(app):
    """Not owned, forged scores and a forged course id are refused; nothing is stored."""
    await enrol(app, "console", "own", 1)
    chat = Chat(app, "own")
    assert "Only learners who bought" in (await chat.press("rt:2:5:5:5")).text
    assert "no longer valid" in (await chat.press("rt:1:9:5:5")).text
    assert "no longer valid" in (await chat.press("rt:1:x")).text
    assert "Only learners who bought" in (await chat.press("rate:999")).text
    stranger = Chat(app, "stranger")
    assert "don't own any course" in (await stranger.send("/rate")).text
    assert await ratings(app) == []


async def test_review_limit_and_skip_keeps_old_review(app):
    """A review over 1,000 chars is refused whole; a second rating with Skip keeps the review."""
    await enrol(app, "console", "r", 1)
    chat = Chat(app, "r")
    await chat.press("rt:1:4:4:4")
    reply = await chat.send("x" * 1001)
    assert "too long (1001 characters, the limit is 1000)" in reply.text
    assert (await ratings(app))[0].review is None
    await chat.send("y" * 1000)
    assert (await ratings(app))[0].review == "y" * 1000
    await chat.press("rt:1:2:2:2")
    await chat.press("rvskip:1")
    [rating] = await ratings(app)
    assert rating.review == "y" * 1000 and rating.score == pytest.approx(2.0)
    reply = await chat.send("python")  # no pending step: plain text is a search again
    assert "Python" in shown(reply)


async def test_reviews_paging(app):
    """/reviews pages newest first, escaped, with working navigation buttons."""
    for n in range(7):
        await enrol(app, "console", f"p{n}", 3, name=f"P{n}")
        chat = Chat(app, f"p{n}", f"P{n}")
        await chat.press("rt:3:5:4:3")
        app.clock.advance(minutes=1)
        await chat.send(f"<review {n}>")
    first = await Chat(app, "reader").send("/reviews 3")
    assert "page 1/2, 7 reviews" in first.text
    assert "&lt;review 6&gt;" in first.text and "review 1&gt;" not in first.text
    assert payloads(first) == ["rvw:3:1"]
    second = await Chat(app, "reader").press("rvw:3:1")
    assert "&lt;review 1&gt;" in second.text and "&lt;review 0&gt;" in second.text
    assert payloads(second) == ["rvw:3:0"]
    assert "Usage" in (await Chat(app, "reader").send("/reviews")).text
    assert "no reviews yet" in (await Chat(app, "reader").send("/reviews 4")).text
