"""The shipped model: ranking SVD + sparse item neighbours + popularity, blend tuned on validation.

``Hybrid.fit(rows)`` takes ``(learner, course, pseudo_rating, time)`` rows. When there is enough
data it carves a validation split out of *these* rows (each learner's latest ``val_frac`` by
time, the same rule as the evaluation holdout), fits every component on the rest, picks the blend
weights that maximise NDCG@10 on the held-out courses, then refits the components on all rows.
The test interactions of an evaluation never reach ``fit``, so tuning never sees them.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from recommender import items as item_models
from recommender.model import FactorModel, ModelParams, Progress, RankingSVD, zscore
from recommender.signals import SignalWeights

TimedRating = tuple[int, int, float, float | None]
TUNE_K = 10
TUNE_MAX_LEARNERS = 1000  # a seeded sample of validation learners bounds tuning time and memory
TUNE_MAX_CELLS = 3_000_000  # learners x courses scored per grid point
TUNE_CAND = 100  # per part: the grid scores the union of the parts' top-100 per learner
# Weights relative to the stronger of the two personal parts (the blend is scale-free): item = 1
# with svd in W_SVD_GRID, or svd = 1 with item in W_SVD_GRID; popularity on top. The grid holds
# blends only (each personal part at least 0.1 of the other): a part alone is not a blend, and
# `evaluate` reports each part alone next to it.
W_SVD_GRID = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)
W_POP_GRID = (0.0, 0.05, 0.1, 0.2)
RECENCY_GRID = (0.25, 0.5, 0.0)


def split_latest(
    rows: Sequence[TimedRating], frac: float = 0.2, seed: int = 42
) -> tuple[list[TimedRating], dict[int, set[int]]]:
    """Per-learner split: the latest ``frac`` of each learner's rows (by time, then course id).

    Without timestamps a seeded random share is held out. Learners with one row stay in train.
    """
    rng = np.random.default_rng(seed)
    by_user: dict[int, list[TimedRating]] = defaultdict(list)
    for row in rows:
        by_user[row[0]].append(row)
    train: list[TimedRating] = []
    held: dict[int, set[int]] = {}
    for user in sorted(by_user):
        items = by_user[user]
        if all(r[3] is not None for r in items):
            items = sorted(items, key=lambda r: (r[3], r[1]))
        else:
            items = [items[j] for j in rng.permutation(len(items))]
        n_out = int(math.ceil(frac * len(items))) if len(items) >= 2 else 0
        train.extend(items[: len(items) - n_out])
        if n_out:
            held[user] = {r[1] for r in items[len(items) - n_out:]}
    return train, held


def recent_repeats(rows: Sequence[TimedRating], params: ModelParams) -> list[tuple]:
    """Each learner's latest ``svd_recent_frac`` rows (by time), ``svd_recent_repeat`` times.

    What a learner took last says most about what they take next; repeating those rows in the
    SGD gives the SVD part the recency that the item part gets from its history weights.
    """
    if params.svd_recent_repeat <= 0 or params.svd_recent_frac <= 0:
        return []
    by_user: dict[int, list[TimedRating]] = defaultdict(list)
    for row in rows:
        if row[3] is not None:
            by_user[row[0]].append(row)
    out = []
    for mine in by_user.values():
        mine.sort(key=lambda r: (r[3], r[1]))
        n = int(math.ceil(params.svd_recent_frac * len(mine)))
        out.extend(r[:3] for r in mine[len(mine) - n:])
    return out * params.svd_recent_repeat


def ndcg_at(top: np.ndarray, relevant: list[set[int]], k: int) -> float:
    """Mean NDCG@k of ranked inner-id rows ``top`` against sets of relevant inner ids."""
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    total = 0.0
    for row, rel in zip(top, relevant, strict=True):
        gains = np.fromiter((j in rel for j in row[:k]), dtype=np.float64, count=min(k, len(row)))
        total += float(gains @ disc[: len(gains)]) / disc[: min(len(rel), k)].sum()
    return total / max(len(relevant), 1)


def top_rows(scores: np.ndarray, seen: np.ndarray, k: int) -> np.ndarray:
    """Row-wise top-k column indices of ``scores`` (a 2-d array) with ``seen`` masked out."""
    s = np.where(seen, -np.inf, scores)
    k = min(k, s.shape[1] - 1)
    top = np.argpartition(-s, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


class Hybrid:
    """Fits the components and the blend; ``factors`` is the served :class:`FactorModel`."""

    def __init__(self, params: ModelParams | None = None, weights: SignalWeights | None = None):
        self.params = params or ModelParams()
        self.weights = weights or SignalWeights()
        self.svd: RankingSVD | None = None
        self.factors: FactorModel | None = None
        self.stats: dict[str, object] = {}
        self.tuning: dict[str, float] = {}

    @property
    def algo(self):
        """The fitted ``surprise.SVD`` at the centre of the model."""
        return self.svd.algo if self.svd else None

    def fit(
        self,
        rows: Sequence[TimedRating],
        items: Iterable[int] = (),
        progress: Progress | None = None,
    ) -> Hybrid:
        """Fit on timed pseudo-ratings; ``items`` adds catalogue courses (eligible negatives)."""
        tick = progress or (lambda stage, done, total: None)
        items = list(items)
        p = self.params
        started = time.perf_counter()
        blend = (p.w_svd, p.w_item, p.w_pop)
        steps = 6 if p.tune_blend else 3
        if p.tune_blend:
            fit_rows, held = split_latest(rows, p.val_frac, p.random_state)
            if len(held) >= p.tune_min_learners:
                tick("validation: SVD", 0, steps)
                model = self._components(fit_rows, items)
                tick("validation: blend", 2, steps)
                blend, recency = self._tune(model, fit_rows, held)
                p = self.params = replace(p, recency=recency)
        done = steps - 3
        tick("SVD", done, steps)
        model = self._components(rows, items)
        tick("neighbours", done + 2, steps)
        self.factors = replace(model, weights=blend)
        self.stats = {
            **self.svd.stats,
            "neighbours": int(model.neighbours.nnz),
            "blend": "svd={:.2f} item={:.2f} pop={:.2f} recency={}".format(*blend, p.recency),
            "fit_seconds": round(time.perf_counter() - started, 3),
        }
        tick("done", steps, steps)
        return self

    def _components(self, rows: Sequence[TimedRating], items: list[int]) -> FactorModel:
        """Ranking SVD and the neighbour matrix, in the SVD's inner order."""
        self.svd = RankingSVD(self.params, self.weights).fit(
            [r[:3] for r in rows], items, repeats=recent_repeats(rows, self.params)
        )
        fm = self.svd.factors
        x = self.matrix(fm, rows)
        p = self.params
        w = item_models.neighbours(x, p.item_method, p.item_k, p.ease_lambda, p.knn_shrink)
        return replace(
            fm, nbr_indptr=w.indptr.astype(np.int64), nbr_indices=w.indices.astype(np.int32),
            nbr_data=w.data.astype(np.float64), recency=p.recency,
        )

    def matrix(self, fm: FactorModel, rows: Iterable[TimedRating]):
        """Learner x course confidence matrix in ``fm``'s inner order (unknown ids dropped)."""
        rows = [r for r in rows if r[0] in fm.user_index]
        users = np.array([fm.user_index[r[0]] for r in rows], dtype=np.int64)
        inner = fm.inner_items(np.array([r[1] for r in rows], dtype=np.int64))
        conf = np.array([self.weights.confidence(r[2]) for r in rows])
        keep = (inner >= 0) & (conf > 0)
        return item_models.matrix(
            users[keep], inner[keep], conf[keep], len(fm.user_ids), len(fm.item_ids)
        )

    def history_matrix(self, fm: FactorModel, rows: Iterable[TimedRating], users: list[int]):
        """Rows of ``users``: the recency-weighted history vectors that serving uses."""
        by_user: dict[int, list[TimedRating]] = defaultdict(list)
        for r in rows:
            by_user[r[0]].append(r)
        out = np.zeros((len(users), len(fm.item_ids)))
        for j, u in enumerate(users):
            mine = by_user.get(u, [])
            inner, conf = fm.history(
                [r[1] for r in mine], [self.weights.confidence(r[2]) for r in mine],
                [r[3] or 0.0 for r in mine],
            )
            out[j, inner] = conf
        return out

    def _tune(self, fm: FactorModel, fit_rows, held: dict[int, set[int]]):
        """Grid-search the blend weights on NDCG@10 of the held-out courses."""
        users = [u for u in sorted(held) if u in fm.user_index]
        cap = max(100, min(TUNE_MAX_LEARNERS, TUNE_MAX_CELLS // max(len(fm.item_ids), 1)))
        if len(users) > cap:
            rng = np.random.default_rng(self.params.random_state)
            users = sorted(rng.choice(users, cap, replace=False).tolist())
        uin = np.array([fm.user_index[u] for u in users], dtype=np.int64)
        relevant = []
        for u in users:
            inner = fm.inner_items(np.array(sorted(held[u]), dtype=np.int64))
            relevant.append(set(inner[inner >= 0].tolist()))
        keep = [j for j, rel in enumerate(relevant) if rel]
        uin, relevant = uin[keep], [relevant[j] for j in keep]
        p = self.params
        if not len(uin):
            return (p.w_svd, p.w_item, p.w_pop), p.recency
        svd = fm.global_mean + fm.bu[uin][:, None] + fm.bi[None, :] + fm.pu[uin] @ fm.qi.T
        z_svd = _row_z(svd)
        best, best_w = -1.0, None
        for recency in RECENCY_GRID:
            hist = self.history_matrix(replace(fm, recency=recency), fit_rows,
                                       [users[j] for j in keep])
            found, score = self._grid(fm, z_svd, hist, relevant, recency)
            if score > best + 1e-9:
                best, best_w = score, (found, recency)
        return best_w

    def _grid(self, fm, z_svd, hist, relevant, recency):
        seen = hist > 0
        z_item = _row_z(np.asarray(fm.neighbours.T @ hist.T).T)
        n_hist = seen.sum(axis=1)
        boost = fm.blend_k / (fm.blend_k + n_hist) if fm.blend_k > 0 else np.zeros(len(hist))
        z_pop = (1.0 + boost)[:, None] * zscore(np.log1p(fm.item_pop))[None, :]
        # Score only the union of each part's top candidates: the blend's top-10 lies there in
        # practice, and the grid then costs O(learners x candidates), not x catalogue.
        cand, off = candidates((z_svd, z_item, z_pop[:1].repeat(len(hist), 0)), seen, TUNE_CAND)
        c_svd, c_item, c_pop = (
            np.take_along_axis(a, cand, axis=1) for a in (z_svd, z_item, z_pop)
        )
        # One axis from "item only" through equal weights to "svd only", popularity on the other.
        ratios = [(w, 1.0) for w in W_SVD_GRID] + [(1.0, w) for w in reversed(W_SVD_GRID[:-1])]
        surface = np.zeros((len(ratios), len(W_POP_GRID)))
        for a, (w_svd, w_item) in enumerate(ratios):
            for b, w_pop in enumerate(W_POP_GRID):
                total = w_svd * c_svd + w_item * c_item + w_pop * c_pop
                top = np.take_along_axis(cand, top_rows(total, off, TUNE_K), axis=1)
                surface[a, b] = ndcg_at(top, relevant, TUNE_K)
                self.tuning[f"{w_svd}/{w_item}/{w_pop}/r{recency}"] = surface[a, b]
        # Choose on the surface smoothed over neighbouring svd/item ratios: on a few hundred
        # validation learners a lone spike is noise, a broad ridge is signal.
        smooth = smoothed(surface)
        a, b = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
        return (*ratios[a], W_POP_GRID[b]), float(smooth[a, b])


def smoothed(surface: np.ndarray) -> np.ndarray:
    """Mean of each cell and its neighbours along the svd/item ratio axis (rows)."""
    padded = np.pad(surface, ((1, 1), (0, 0)))
    ones = np.pad(np.ones_like(surface), ((1, 1), (0, 0)))
    n = len(surface)
    return sum(padded[d:d + n] for d in range(3)) / sum(ones[d:d + n] for d in range(3))


def candidates(parts, seen: np.ndarray, per_part: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the union of each part's top ``per_part`` unseen columns; mask = seen or repeat."""
    idx = []
    for a in parts:
        c = min(per_part, a.shape[1] - 1)
        idx.append(np.argpartition(-np.where(seen, -np.inf, a), c, axis=1)[:, :c])
    cand = np.sort(np.concatenate(idx, axis=1), axis=1)
    off = np.take_along_axis(seen, cand, axis=1)
    off[:, 1:] |= cand[:, 1:] == cand[:, :-1]
    return cand, off


def _row_z(a: np.ndarray) -> np.ndarray:
    mean = a.mean(axis=1, keepdims=True)
    std = a.std(axis=1, keepdims=True)
    return np.where(std > 1e-12, (a - mean) / np.where(std > 1e-12, std, 1.0), 0.0)
