import logging

import numpy as np
import pytest

from recommender.model import (
    FactorModel,
    ModelParams,
    RankingSVD,
    load,
    prev_path,
    sample_negatives,
)
from recommender.signals import pseudo_ratings


@pytest.fixture(scope="module")
def fitted(events):
    params = ModelParams(n_epochs=10)
    return RankingSVD(params).fit(pseudo_ratings(events), items=range(1, 160))


def test_fit_returns_self_and_exports_factors(fitted):
    assert isinstance(fitted, RankingSVD)
    assert fitted.factors.pu.shape == (fitted.algo.trainset.n_users, 32)
    assert fitted.stats["negatives"] > 0


def test_vectorised_scores_equal_surprise_predictions(fitted):
    rng = np.random.default_rng(0)
    fm = fitted.factors
    for user in rng.choice(fm.user_ids, 25, replace=False):
        scores = fm.scores(int(user))
        for inner in rng.choice(len(fm.item_ids), 8, replace=False):
            item = int(fm.item_ids[inner])
            expected = fitted.algo.predict(int(user), item, clip=False).est
            assert scores[inner] == pytest.approx(expected, abs=1e-9)


def test_unknown_learner_has_no_scores(fitted):
    assert fitted.factors.scores(10**9) is None
    assert "svd" not in fitted.factors.components(10**9, np.zeros(0, dtype=int), np.zeros(0))


def test_negatives_avoid_touched_items_and_follow_ratio():
    ratings = [(u, i, 4.0) for u in range(5) for i in range(u, u + 4)]
    negs = sample_negatives(ratings, list(range(50)), ModelParams(neg_ratio=2), 1.0)
    touched = {(u, i) for u, i, _ in ratings}
    assert len(negs) == 5 * 8
    assert not touched & {(u, i) for u, i, _ in negs}
    assert {r for _, _, r in negs} == {1.0}


def test_save_is_atomic_and_keeps_previous(fitted, tmp_path):
    path = tmp_path / "m.npz"
    fitted.factors.save(path)
    assert not prev_path(path).exists()
    fitted.factors.save(path)
    assert prev_path(path).exists()
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
    loaded = load(path)
    user = int(fitted.factors.user_ids[3])
    np.testing.assert_allclose(loaded.scores(user), fitted.factors.scores(user))


@pytest.mark.parametrize("damage", [b"", b"not a zip at all", None])
def test_corrupted_file_falls_back_to_previous_then_none(fitted, tmp_path, caplog, damage):
    path = tmp_path / "m.npz"
    fitted.factors.save(path)
    fitted.factors.save(path)
    data = path.read_bytes()
    path.write_bytes(damage if damage is not None else data[: len(data) // 2])
    with caplog.at_level(logging.WARNING):
        assert isinstance(load(path), FactorModel)
    assert "unusable" in caplog.text
    prev_path(path).write_bytes(b"garbage")
    assert load(path) is None


def test_inconsistent_arrays_are_rejected(fitted, tmp_path):
    fm = fitted.factors
    bad = FactorModel(fm.pu, fm.qi[:-1], fm.bu, fm.bi, fm.global_mean, fm.user_ids,
                      fm.item_ids, fm.item_pop)
    path = tmp_path / "bad.npz"
    with pytest.raises(ValueError):
        bad.save(path)
    assert not path.exists()
    assert load(path) is None


def test_inner_items_lookup_is_vectorised_and_marks_unknown(fitted):
    fm = fitted.factors
    raw = np.array([int(fm.item_ids[5]), -3, int(fm.item_ids[0]), 10**9])
    assert fm.inner_items(raw).tolist() == [5, -1, 0, -1]


def test_vectorised_negatives_are_unseen_distinct_and_counted():
    from recommender.model import ModelParams, sample_negatives

    ratings = [(u, i, 4.0) for u in range(1, 40) for i in range(u % 7, u % 7 + 5)]
    items = list(range(0, 60))
    neg = sample_negatives(ratings, items, ModelParams(neg_ratio=3.0), 1.0)
    seen = {(u, i) for u, i, _ in ratings}
    pairs = [(u, i) for u, i, _ in neg]
    assert not set(pairs) & seen and len(set(pairs)) == len(pairs)
    per_user = {}
    for u, _ in pairs:
        per_user[u] = per_user.get(u, 0) + 1
    assert per_user == {u: 15 for u in range(1, 40)}
    assert all(r == 1.0 for *_, r in neg)


def test_fast_trainset_fits_the_same_factors_as_surprise():
    import numpy as np
    from surprise import SVD, Trainset

    from recommender.model import build_trainset

    rows = [(u, i, float(1 + (u * i) % 5)) for u in range(30) for i in range(0, 40, 1 + u % 3)]
    fast = build_trainset(rows)
    plain = build_trainset(rows)
    plain.__class__ = Trainset
    a = SVD(n_factors=4, n_epochs=5, random_state=1).fit(fast)
    b = SVD(n_factors=4, n_epochs=5, random_state=1).fit(plain)
    assert np.array_equal(a.pu, b.pu) and np.array_equal(a.qi, b.qi)
    assert np.array_equal(a.bu, b.bu)
