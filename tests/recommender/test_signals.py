from datetime import UTC, datetime, timedelta

from recommender.signals import Interaction, SignalWeights, pseudo_ratings

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def ev(kind, value=None, course=1, minutes=0):
    return Interaction(7, course, kind, value, T0 + timedelta(minutes=minutes))


def table(*events, weights=None):
    return {(u, i): r for u, i, r in pseudo_ratings(events, weights)}


def test_implicit_signals_take_the_strongest():
    assert table(ev("view"), ev("purchase"), ev("view"))[(7, 1)] == 4.0
    assert table(ev("purchase"), ev("attendance"))[(7, 1)] == 4.5
    assert table(ev("faq_hit"))[(7, 1)] == 3.0


def test_explicit_rating_wins_latest_first():
    w = SignalWeights()
    got = table(ev("attendance"), ev("rating", 1.0, minutes=1), ev("rating", 5.0, minutes=2))
    assert got[(7, 1)] == w.from_stars(5.0) == 5.0
    assert table(ev("attendance"), ev("rating", 1.0))[(7, 1)] == w.rating_low


def test_refund_overrides_implicit_down():
    assert table(ev("purchase"), ev("attendance"), ev("refund"))[(7, 1)] == 1.0


def test_unknown_kinds_and_valueless_ratings_are_ignored():
    assert table(ev("teleport"), ev("rating", None)) == {}


def test_star_mapping_is_linear_and_clipped():
    w = SignalWeights(rating_low=2.0, rating_high=5.0)
    assert [w.from_stars(s) for s in (0, 1, 3, 5, 9)] == [2.0, 2.0, 3.5, 5.0, 5.0]
