"""Popularity counted by the database equals the recommender's own count from interactions."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import select

from recommender.params import POSITIVE_THRESHOLD
from recommender.service import Recommender
from recommender.signals import Signal, SignalWeights, positive_rule
from services.recommendations import training_data
from storage.models import Course, Interaction, Learner
from storage.popularity import positive_learners_per_course


def random_interactions(learners, courses, start, n=600, seed=3):
    """Mixed kinds, null and out-of-range ratings, refunds and equal timestamps (ties)."""
    rnd = random.Random(seed)
    kinds = [*Signal, Signal.RATING, Signal.RATING, Signal.REFUND]
    rows = []
    for _ in range(n):
        kind = rnd.choice(kinds)
        value = rnd.choice([None, 0.0, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0]) if kind == "rating" else None
        at = start + timedelta(minutes=rnd.randint(0, 40))  # many equal times
        rows.append(
            Interaction(
                learner_id=rnd.choice(learners),
                course_id=rnd.choice(courses),
                kind=str(kind),
                value=value,
                created_at=at,
            )
        )
    return rows


async def test_the_database_count_is_the_recommenders_count(app, clock):
    async with app.uow() as uow:
        learners = [Learner(display_name=f"l{i}", created_at=clock.now()) for i in range(12)]
        uow.session.add_all(learners)
        await uow.session.flush()
        courses = list((await uow.session.scalars(select(Course.id))).all())
        uow.session.add_all(random_interactions([x.id for x in learners], courses, clock.now()))
        await uow.commit()
    async with app.uow() as uow:
        interactions, _ = await training_data(uow)
        for weights in (SignalWeights(), SignalWeights(view=2.0, refund=3.0, rating_low=1.0)):
            rule = positive_rule(weights, POSITIVE_THRESHOLD)
            counted = await positive_learners_per_course(uow.session, *rule)
            expected = Recommender(weights=weights)
            expected.update_popularity(interactions)
            assert counted == expected.popularity() and counted


async def test_with_many_interactions_popularity_is_counted_after_start_up(
    app, clock, monkeypatch
):
    from bot import bootstrap
    from tests.conftest import make_settings

    async with app.uow() as uow:
        learner = Learner(display_name="l", created_at=clock.now())
        uow.session.add(learner)
        await uow.session.flush()
        course = (await uow.session.scalars(select(Course.id))).first()
        uow.session.add(
            Interaction(
                learner_id=learner.id, course_id=course, kind="purchase", created_at=clock.now()
            )
        )
        await uow.commit()
    monkeypatch.setattr(bootstrap, "POPULARITY_INLINE_MAX", 0)
    url = app.engine.url.render_as_string(hide_password=False)
    second = await bootstrap.build_app(make_settings(url), clock=clock)
    try:
        [task] = second.tasks
        assert not task.done()  # waits until the process has started
        second.ready.set()
        await task
        assert second.deps["recommender"].popularity() == {course: 1.0}
    finally:
        await second.close()
