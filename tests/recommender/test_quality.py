"""Ranking quality on planted-taste synthetic data: the blend beats popularity and its parts."""

import pytest

from recommender import blend
from recommender.evaluate import evaluate_rows, holdout
from tests.recommender.synthetic import generate, implicit


@pytest.fixture(scope="module")
def data():
    return generate(seed=7)


@pytest.fixture(scope="module")
def stars(data):
    return evaluate_rows(data.rows, k=10, explicit=True)


def test_blend_beats_popularity_ease_and_svd_with_margins(stars):
    ndcg = {name: m["ndcg@10"] for name, m in stars.items()}
    # Popularity is a meaningful baseline on this data, far above random ...
    assert stars["popularity"]["precision@10"] >= 3 * stars["random"]["precision@10"]
    # ... the blend beats it clearly, and beats EASE^R alone and the SVD alone.
    assert ndcg["model"] >= 1.5 * ndcg["popularity"]
    assert ndcg["model"] >= ndcg["ease"] + 0.01
    assert ndcg["model"] >= ndcg["svd"] + 0.01
    assert ndcg["model"] >= max(ndcg["item"], ndcg["svd+pop"], ndcg["item+pop"])


def test_implicit_purchases_beat_popularity():
    res = evaluate_rows(implicit(generate(n_users=300, n_items=150, seed=11).rows), k=10,
                        explicit=False)
    assert res["model"]["ndcg@10"] >= 1.5 * res["popularity"]["ndcg@10"]
    assert res["model"]["ndcg@10"] >= res["svd"]["ndcg@10"]


def test_validation_split_never_sees_the_test_interactions(data, monkeypatch):
    """evaluate → Hybrid.fit → split_latest: the rows tuned on exclude every test pair."""
    seen_by_fit = []
    real_split = blend.split_latest

    def spy(rows, frac=0.2, seed=42):
        fit_rows, held = real_split(rows, frac, seed)
        seen_by_fit.append(({(r[0], r[1]) for r in rows}, fit_rows, held))
        return fit_rows, held

    monkeypatch.setattr(blend, "split_latest", spy)
    rows = generate(n_users=120, n_items=60, seed=5).rows
    evaluate_rows(rows, k=10, explicit=True)
    _, test = holdout(rows)
    test_pairs = {(u, i) for u, items in test.items() for i in items}
    assert len(seen_by_fit) == 1 and test_pairs
    given, fit_rows, held = seen_by_fit[0]
    val_pairs = {(u, i) for u, items in held.items() for i in items}
    assert val_pairs and not val_pairs & test_pairs
    assert not given & test_pairs
    assert val_pairs <= given and not val_pairs & {(r[0], r[1]) for r in fit_rows}
    # time-ordered: every validation course of a learner is later than their fit courses
    when = {(r[0], r[1]): r[3] for r in rows}
    for u, items in held.items():
        fit_times = [when[(r[0], r[1])] for r in fit_rows if r[0] == u]
        assert min(when[(u, i)] for i in items) >= max(fit_times, default=float("-inf"))


def test_recent_repeats_are_each_learners_latest_rows():
    from recommender.model import ModelParams

    rows = [(u, i, 4.0, float(10 * u + i)) for u in (1, 2) for i in range(8)]
    rep = blend.recent_repeats(rows, ModelParams(svd_recent_frac=0.25, svd_recent_repeat=2))
    assert sorted(rep) == sorted([(u, i, 4.0) for u in (1, 2) for i in (6, 7)] * 2)
    assert blend.recent_repeats(rows, ModelParams(svd_recent_repeat=0)) == []
