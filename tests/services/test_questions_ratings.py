"""The questions and ratings services return plain data and record known signals."""

from __future__ import annotations

from sqlalchemy import select

from recommender.signals import Signal
from services import questions, ratings
from storage.models import Interaction
from tests.handlers.support import enrol, learner_for, set_instructor


async def kinds(app) -> list[str]:
    async with app.uow() as uow:
        stmt = select(Interaction.kind).where(Interaction.kind != "view").order_by(Interaction.id)
        return list((await uow.session.execute(stmt)).scalars())


async def test_ask_answer_faq_hit_and_helpful(app):
    teacher_id = await learner_for(app, "console", "t", "Wang")
    await set_instructor(app, 1, teacher_id)
    asker_id = await enrol(app, "console", "a", 1, name="A")
    other_id = await enrol(app, "console", "b", 1, name="B")
    now = app.clock.now()
    async with app.uow() as uow:
        asker, teacher = await uow.learners.get(asker_id), await uow.learners.get(teacher_id)
        assert (await questions.ask(uow, asker, "  ", 1, app.settings, now)).refusal.reason == (
            "empty"
        )
        sent = await questions.ask(uow, asker, "直播结束后有回放吗？", 1, app.settings, now)
        assert sent.status == "sent" and sent.forwarded >= 1
        done = await questions.answer(
            uow, sent.question_id, "有，两小时内。", teacher, False, app.settings, now
        )
        assert done.outcome == "done"
        assert await questions.set_faq(uow, sent.question_id, True, teacher_id, False) == "added"
        other = await uow.learners.get(other_id)
        hit = await questions.ask(uow, other, "错过了直播还能看录播回放吗？", 1, app.settings, now)
        assert hit.status == "faq" and hit.faq.answer == "有，两小时内。" and hit.score >= 0.25
        assert await questions.resolve_by_faq(uow, other_id, hit.question_id, now)
        assert not await questions.resolve_by_faq(uow, other_id, hit.question_id, now)
        listing = await questions.open_questions(uow, teacher_id, False)
        assert listing is not None and listing.questions == []
        assert await questions.open_questions(uow, other_id, False) is None
        await uow.commit()
    assert await kinds(app) == [Signal.QUESTION, Signal.FAQ_HIT, Signal.FAQ_HELPFUL]


async def test_rating_and_review_are_plain_data(app):
    owner = await enrol(app, "console", "r", 1, name="R")
    now = app.clock.now()
    async with app.uow() as uow:
        assert await ratings.save_rating(uow, owner, 2, (5, 5, 5), app.settings, now) is None
        saved = await ratings.save_rating(uow, owner, 1, (5, 1, 1), app.settings, now)
        assert saved.created and saved.score == ratings.weighted_score((5, 1, 1), app.settings)
        too_long = "x" * (app.settings.review_max_chars + 1)
        assert await ratings.save_review(uow, owner, 1, too_long, app.settings, now) == "too_long"
        assert await ratings.save_review(uow, owner, 1, "清楚实用", app.settings, now) == "saved"
        page = await ratings.reviews_page(uow, 1, 0, 5)
        assert page.total == 1 and page.reviews[0].text == "清楚实用" and page.course.id == 1
        card = await ratings.card_ratings(uow, 1, 2)
        assert card.count == 1 and card.newest[0].name == "R"
        await uow.commit()
    assert await kinds(app) == [Signal.RATING, Signal.REVIEW]
