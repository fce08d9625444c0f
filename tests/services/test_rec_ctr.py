"""Recommendation click-through: the suggestions shown are recorded as impressions (one per
learner, course and day), and /stats divides the clicked ones by them; values by hand."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from services import stats
from storage.models import RecImpression
from tests.handlers.support import Chat, payloads
from tests.handlers.test_analytics import outputs
from tests.services.test_stats import build_dataset


async def show(app, learner_id: int, course_id: int, when) -> int:
    async with app.uow() as uow:
        new = await stats.suggestions_shown(uow, learner_id, [course_id], when)
        await uow.commit()
    return new


async def test_click_through_over_distinct_shown_pairs(app, clock):
    now = clock.now()
    data = await build_dataset(app, now)
    L, a, b = data["L"], data["a"], data["b"]
    ago = lambda days, hours=0: now - timedelta(days=days, hours=hours)  # noqa: E731
    # The dataset's clicks: L5→A 8 days ago, L3→A 3 days ago, L2→B 2 days ago.
    assert await show(app, L[5], a, ago(9)) == 1  # shown, clicked a day later
    assert await show(app, L[3], a, ago(3, 1)) == 1  # shown, clicked an hour later
    assert await show(app, L[1], b, ago(5)) == 1  # shown, never clicked
    assert await show(app, L[4], a, ago(1)) == 1  # shown on two days, never clicked
    assert await show(app, L[4], a, ago(1, 1)) == 0, "once per learner, course and day"
    assert await show(app, L[4], a, ago(2)) == 1
    assert await show(app, L[6], b, ago(40)) == 1  # outside 30 days
    # L2→B was clicked without an impression (before impressions were kept, or a tampered
    # button): it counts as a click, not in the click-through.
    zone = app.settings.zone
    async with app.uow() as uow:
        month = await stats.report(uow, None, "30d", now, zone)
        only_a = await stats.report(uow, [a], "30d", now, zone)
        quarter = await stats.report(uow, None, "90d", now, zone)
        week = await stats.report(uow, None, "7d", now, zone)
    # 30 days: shown {L5A, L3A, L1B, L4A} = 4, of which L5A and L3A clicked: 2/4.
    assert (month.rec_impressions, month.rec_clicked) == (4, 2)
    assert month.rec_ctr == pytest.approx(0.5)
    assert (month.rec_clicks, month.rec_bought) == (3, 1)  # unchanged: L3 bought A after
    # Course A: {L5A, L3A, L4A}, two clicked.
    assert (only_a.rec_impressions, only_a.rec_clicked) == (3, 2)
    assert only_a.rec_ctr == pytest.approx(2 / 3)
    # 90 days adds L6B (shown, not clicked): 2/5.
    assert (quarter.rec_impressions, quarter.rec_clicked) == (5, 2)
    # 7 days: shown L3A (3 d), L1B (5 d), L4A (1-2 d); clicked in the week: L3A only (L5's
    # click is 8 days old).
    assert (week.rec_impressions, week.rec_clicked) == (3, 1)
    assert week.rec_ctr == pytest.approx(1 / 3)


async def test_recommend_records_impressions_and_stats_shows_the_click_through(app):
    learner = Chat(app, "ctr-learner")
    shown = [p for p in payloads(await learner.send("/recommend")) if p.endswith(":rec")]
    assert len(shown) >= 2
    await learner.send("/recommend")  # the same suggestions the same day: no new impressions
    async with app.uow() as uow:
        rows = await uow.session.scalar(select(func.count()).select_from(RecImpression))
    assert rows == len(shown)
    await learner.press(shown[0])
    text, _chart = await outputs(app, "me", "stats", "7d")
    ctr = f"{100 / len(shown):.1f}%"
    assert f"shown {len(shown)}, click-through {ctr} (1/{len(shown)}), clicked 1" in text.text
