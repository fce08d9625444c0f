from datetime import UTC, datetime, timedelta

import pytest

from recommender.signals import (
    KINDS,
    Interaction,
    Signal,
    SignalWeights,
    as_signal,
    pseudo_ratings,
    weighted_kinds,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def ev(kind, value=None, course=1, minutes=0):
    return Interaction(7, course, kind, value, T0 + timedelta(minutes=minutes))


def table(*events, weights=None):
    return {(u, i): r for u, i, r in pseudo_ratings(events, weights)}


def test_implicit_signals_take_the_strongest():
    w = SignalWeights()
    assert table(ev("view"), ev("purchase"), ev("view"))[(7, 1)] == w.purchase
    assert table(ev("purchase"), ev("attendance"))[(7, 1)] == w.attendance
    assert table(ev("faq_hit"))[(7, 1)] == w.faq_hit
    assert table(ev("faq_hit"), ev("faq_helpful"))[(7, 1)] == w.faq_helpful


def test_explicit_rating_wins_latest_first():
    w = SignalWeights()
    got = table(ev("attendance"), ev("rating", 1.0, minutes=1), ev("rating", 5.0, minutes=2))
    assert got[(7, 1)] == w.from_stars(5.0) == 5.0
    assert table(ev("attendance"), ev("rating", 1.0))[(7, 1)] == w.rating_low


def test_refund_overrides_implicit_down():
    assert table(ev("purchase"), ev("attendance"), ev("refund"))[(7, 1)] == 1.0


def test_valueless_ratings_are_ignored():
    assert table(ev("rating", None)) == {}


def test_an_unknown_kind_is_refused_when_recorded():
    with pytest.raises(ValueError, match="unknown interaction kind 'teleport'"):
        ev("teleport")
    with pytest.raises(ValueError):
        as_signal("Purchase")
    assert ev("purchase").kind is Signal.PURCHASE and ev("purchase").kind == "purchase"


def test_every_kind_is_one_enum_member_and_weighted():
    assert tuple(s.value for s in Signal) == KINDS
    assert weighted_kinds() == set(KINDS)
    recorded = {"view", "purchase", "refund", "rating", "question", "faq_hit", "faq_helpful",
                "review", "attendance", "rec_click"}
    assert recorded == set(KINDS)
    w = SignalWeights()
    for kind in Signal:
        if kind not in (Signal.RATING, Signal.REFUND):
            assert w.refund < w.implicit(kind) <= 5.0, kind


def test_star_mapping_is_linear_and_clipped():
    w = SignalWeights(rating_low=2.0, rating_high=5.0)
    assert [w.from_stars(s) for s in (0, 1, 3, 5, 9)] == [2.0, 2.0, 3.5, 5.0, 5.0]
