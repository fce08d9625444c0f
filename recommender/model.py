"""Surprise SVD trained for ranking, and the numpy/scipy model that serves the blend.

The served model holds Surprise's learner and course factors and biases, a sparse top-k
course-neighbour matrix (EASE^R or item-kNN, see ``recommender.items``), course popularity and the
blend weights chosen on a validation split (``recommender.blend``). Scores of one learner over
every course are a few numpy expressions: the SVD estimate, the neighbour sum over the learner's
own courses, and log-popularity, each z-scored per learner and mixed with the blend weights.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import sparse
from surprise import SVD, Trainset

from recommender.items import row_scores
from recommender.params import POSITIVE_THRESHOLD, ModelParams, Progress, prev_path
from recommender.signals import SignalWeights

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
Rating = tuple[int, int, float]


@dataclass(eq=False)
class FactorModel:
    """Trained factors (pu, qi, bu, bi, global mean); scores all items in one numpy expression."""

    pu: np.ndarray
    qi: np.ndarray
    bu: np.ndarray
    bi: np.ndarray
    global_mean: float
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_pop: np.ndarray
    blend_k: float = 2.0
    nbr_indptr: np.ndarray | None = None
    nbr_indices: np.ndarray | None = None
    nbr_data: np.ndarray | None = None
    weights: tuple[float, float, float] = (1.0, 1.0, 0.1)
    recency: float = 0.0
    user_index: dict[int, int] = field(init=False, repr=False)
    item_index: dict[int, int] = field(init=False, repr=False)
    neighbours: sparse.csr_matrix = field(init=False, repr=False)
    _item_order: np.ndarray = field(init=False, repr=False)
    _item_sorted: np.ndarray = field(init=False, repr=False)
    _pop_z: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.user_index = {int(raw): inner for inner, raw in enumerate(self.user_ids)}
        self.item_index = {int(raw): inner for inner, raw in enumerate(self.item_ids)}
        self._item_order = np.argsort(self.item_ids, kind="stable")
        self._item_sorted = self.item_ids[self._item_order]
        n = len(self.item_ids)
        if self.nbr_indptr is None:
            self.nbr_indptr = np.zeros(n + 1, dtype=np.int64)
            self.nbr_indices = np.zeros(0, dtype=np.int32)
            self.nbr_data = np.zeros(0)
        self.neighbours = sparse.csr_matrix(
            (self.nbr_data, self.nbr_indices, self.nbr_indptr), shape=(n, n)
        )
        self.weights = tuple(float(w) for w in self.weights)
        self._pop_z = zscore(np.log1p(self.item_pop))

    def inner_items(self, raw_ids: np.ndarray) -> np.ndarray:
        """Map raw course ids to inner indices in one vectorised lookup; -1 where unknown."""
        raw_ids = np.asarray(raw_ids, dtype=np.int64)
        if not len(self._item_sorted):
            return np.full(len(raw_ids), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._item_sorted, raw_ids), len(self._item_sorted) - 1)
        return np.where(self._item_sorted[pos] == raw_ids, self._item_order[pos], -1)

    @classmethod
    def from_algo(cls, algo: SVD, item_pop: np.ndarray, blend_k: float = 2.0) -> FactorModel:
        """Copy the factors out of a fitted ``surprise.SVD``; ``item_pop`` is by inner id."""
        ts = algo.trainset
        users = np.array([ts.to_raw_uid(u) for u in range(ts.n_users)], dtype=np.int64)
        items = np.array([ts.to_raw_iid(i) for i in range(ts.n_items)], dtype=np.int64)
        return cls(
            pu=np.asarray(algo.pu, dtype=np.float64),
            qi=np.asarray(algo.qi, dtype=np.float64),
            bu=np.asarray(algo.bu, dtype=np.float64),
            bi=np.asarray(algo.bi, dtype=np.float64),
            global_mean=float(ts.global_mean),
            user_ids=users,
            item_ids=items,
            item_pop=np.asarray(item_pop, dtype=np.float64),
            blend_k=blend_k,
        )

    def knows(self, learner_id: int) -> bool:
        """Tell whether the learner was in the training data."""
        return learner_id in self.user_index

    def scores(self, learner_id: int) -> np.ndarray | None:
        """Return the unclipped SVD estimate for every item (inner order), or None if unknown."""
        u = self.user_index.get(learner_id)
        if u is None:
            return None
        return self.global_mean + self.bu[u] + self.bi + self.qi @ self.pu[u]

    def popularity_prior(self) -> np.ndarray:
        """Return item popularity squashed to 0..1 (log scale), inner order."""
        top = np.log1p(self.item_pop.max(initial=0.0))
        return np.log1p(self.item_pop) / top if top > 0 else np.zeros_like(self.item_pop)

    def history(
        self, course_ids: Sequence[int], confidence: Sequence[float], times: Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """A learner's known courses as (inner ids, weights) for the item component.

        weight = confidence x exp(-rank / (recency x n)), rank 0 = the latest of the learner's n
        courses: what someone bought last says most about what they buy next.
        """
        inner = self.inner_items(np.asarray(course_ids, dtype=np.int64))
        conf = np.asarray(confidence, dtype=np.float64)
        if len(inner) and self.recency > 0:
            order = np.argsort(-np.asarray(times, dtype=np.float64), kind="stable")
            rank = np.empty(len(inner))
            rank[order] = np.arange(len(inner))
            conf = conf * np.exp(-rank / (self.recency * len(inner)))
        keep = (inner >= 0) & (conf > 0)
        return inner[keep], conf[keep]

    def item_scores(self, hist_inner: np.ndarray, hist_conf: np.ndarray) -> np.ndarray:
        """Neighbour score of every course: ``sum_a conf_a * W[a]`` over the learner's courses."""
        return row_scores(self.neighbours, np.asarray(hist_inner), np.asarray(hist_conf))

    def components(
        self, learner_id: int, hist_inner: np.ndarray, hist_conf: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Weighted, per-learner z-scored parts of the blend: ``svd``, ``item``, ``pop``.

        A part is missing when it cannot speak: ``svd`` for a learner unknown to the factors,
        ``item`` for a learner without known courses (or a model without neighbours).
        """
        w_svd, w_item, w_pop = self.weights
        out: dict[str, np.ndarray] = {}
        raw = self.scores(learner_id)
        if raw is not None and w_svd:
            out["svd"] = w_svd * zscore(raw)
        if len(hist_inner) and w_item and self.neighbours.nnz:
            item = self.item_scores(hist_inner, hist_conf)
            if item.any():
                out["item"] = w_item * zscore(item)
        if w_pop or not out:
            boost = self.blend_k / (self.blend_k + len(hist_inner)) if self.blend_k > 0 else 0.0
            out["pop"] = (w_pop * (1.0 + boost) if out else 1.0) * self._pop_z
        return out

    def blend(self, learner_id: int, hist_inner: np.ndarray, hist_conf: np.ndarray) -> np.ndarray:
        """Blended score of every course (inner order) for one learner."""
        parts = self.components(learner_id, hist_inner, hist_conf)
        return sum(parts.values())

    def item_similarity(self, ids: Sequence[int], anchors: Sequence[int]) -> np.ndarray:
        """Cosine similarity of item factors, len(ids) x len(anchors); unknown items score 0."""
        out = np.zeros((len(ids), len(anchors)))
        rows = [(j, self.item_index[i]) for j, i in enumerate(ids) if i in self.item_index]
        cols = [(j, self.item_index[a]) for j, a in enumerate(anchors) if a in self.item_index]
        if not rows or not cols:
            return out
        a, b = self.qi[[p for _, p in rows]], self.qi[[p for _, p in cols]]
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        block = a @ b.T
        out[np.ix_([j for j, _ in rows], [j for j, _ in cols])] = block
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (temp file + rename) and keep the replaced file as ``<name>.prev``."""
        save_atomic(self, Path(path))


def zscore(values: np.ndarray) -> np.ndarray:
    """``(v - mean) / std`` over one learner's courses (all zeros when constant)."""
    std = values.std()
    return (values - values.mean()) / std if std > 1e-12 else np.zeros_like(values)


def _arrays(model: FactorModel) -> dict[str, np.ndarray]:
    return {
        "format_version": np.array(FORMAT_VERSION),
        "pu": model.pu,
        "qi": model.qi,
        "bu": model.bu,
        "bi": model.bi,
        "global_mean": np.array(model.global_mean),
        "user_ids": model.user_ids,
        "item_ids": model.item_ids,
        "item_pop": model.item_pop,
        "blend_k": np.array(model.blend_k),
        "nbr_indptr": model.nbr_indptr,
        "nbr_indices": model.nbr_indices,
        "nbr_data": model.nbr_data,
        "weights": np.array(model.weights),
        "recency": np.array(model.recency),
    }


def save_atomic(model: FactorModel, path: Path) -> None:
    """Save ``model`` to ``path`` so that readers see the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **_arrays(model))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        if _read(tmp) is None:
            raise ValueError(f"freshly written model {tmp} does not load")
        if path.exists():
            _keep_previous(path)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _keep_previous(path: Path) -> None:
    """Copy ``path`` to ``.prev`` via a hard link so ``path`` itself never disappears."""
    staging = path.with_name(path.name + ".prev.tmp")
    staging.unlink(missing_ok=True)
    try:
        os.link(path, staging)
    except OSError:
        staging.write_bytes(path.read_bytes())
    os.replace(staging, prev_path(path))


def _validate(data: dict[str, np.ndarray]) -> FactorModel:
    if int(data["format_version"]) != FORMAT_VERSION:
        raise ValueError(f"format version {int(data['format_version'])} != {FORMAT_VERSION}")
    pu, qi, bu, bi = data["pu"], data["qi"], data["bu"], data["bi"]
    users, items, pop = data["user_ids"], data["item_ids"], data["item_pop"]
    if pu.ndim != 2 or qi.ndim != 2 or pu.shape[1] != qi.shape[1]:
        raise ValueError("factor matrices have inconsistent shapes")
    if not (len(pu) == len(bu) == len(users) and len(qi) == len(bi) == len(items) == len(pop)):
        raise ValueError("factor, bias and id arrays have inconsistent lengths")
    for name in ("pu", "qi", "bu", "bi", "item_pop", "global_mean"):
        if not np.all(np.isfinite(data[name])):
            raise ValueError(f"{name} has non-finite values")
    if len(set(users.tolist())) != len(users) or len(set(items.tolist())) != len(items):
        raise ValueError("duplicate raw ids")
    indptr, indices, nbr = data["nbr_indptr"], data["nbr_indices"], data["nbr_data"]
    if len(indptr) != len(items) + 1 or len(indices) != len(nbr) or indptr[-1] != len(nbr):
        raise ValueError("neighbour arrays have inconsistent lengths")
    if len(indices) and (indices.min() < 0 or indices.max() >= len(items)):
        raise ValueError("neighbour index out of range")
    if not np.all(np.isfinite(nbr)) or not np.all(np.isfinite(data["weights"])):
        raise ValueError("neighbour or blend weights have non-finite values")
    return FactorModel(
        pu=pu, qi=qi, bu=bu, bi=bi, global_mean=float(data["global_mean"]),
        user_ids=users.astype(np.int64), item_ids=items.astype(np.int64),
        item_pop=pop.astype(np.float64), blend_k=float(data["blend_k"]),
        nbr_indptr=indptr.astype(np.int64), nbr_indices=indices.astype(np.int32),
        nbr_data=nbr.astype(np.float64), weights=tuple(data["weights"].tolist()),
        recency=float(data["recency"]),
    )


def _read(path: Path) -> FactorModel | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return _validate({name: npz[name] for name in npz.files})
    except FileNotFoundError:
        log.info("model file %s does not exist", path)
    except Exception as exc:  # noqa: BLE001 - any corruption means "do not use this file"
        log.warning("model file %s is unusable: %s: %s", path, type(exc).__name__, exc)
    return None


def load(path: str | os.PathLike) -> FactorModel | None:
    """Load a model, falling back to ``<name>.prev``, then None; logs why, never raises."""
    path = Path(path)
    model = _read(path)
    if model is None:
        model = _read(prev_path(path))
        if model is not None:
            log.warning("serving the previous model %s", prev_path(path))
    if model is None:
        log.warning("no usable model at %s; popularity fallback will serve", path)
    return model


def _popularity(ratings: Sequence[Rating]) -> dict[int, float]:
    counts: dict[int, float] = defaultdict(float)
    for _, item, r in ratings:
        if r >= POSITIVE_THRESHOLD:
            counts[item] += 1.0
    return counts


def sample_negatives(
    ratings: Sequence[Rating],
    items: Sequence[int],
    params: ModelParams,
    negative: float,
) -> list[Rating]:
    """Draw untouched items per learner, ``neg_ratio`` per touched item, at ``negative``.

    Vectorised over all learners: one popularity-weighted draw, seen and repeated (learner,
    course) pairs dropped with ``np.unique``, a few refill rounds for the shortfall.
    """
    if params.neg_ratio <= 0 or not items or not ratings:
        return []
    rng = np.random.default_rng(params.random_state)
    item_arr = np.asarray(items, dtype=np.int64)
    n_items = len(item_arr)
    cdf = np.cumsum(_sampling_weights(ratings, item_arr, params))
    cdf /= cdf[-1]
    raw_users = np.fromiter((r[0] for r in ratings), dtype=np.int64, count=len(ratings))
    raw_items = np.fromiter((r[1] for r in ratings), dtype=np.int64, count=len(ratings))
    users, u_inner = np.unique(raw_users, return_inverse=True)
    pos = np.searchsorted(item_arr, raw_items)
    known = (pos < n_items) & (item_arr[np.minimum(pos, n_items - 1)] == raw_items)
    seen = np.unique(u_inner[known] * n_items + pos[known])
    n_seen = np.bincount(seen // n_items, minlength=len(users))
    want = np.minimum(np.rint(params.neg_ratio * n_seen).astype(np.int64), n_items - n_seen)
    chosen = np.zeros(0, dtype=np.int64)
    for _ in range(8):
        have = np.bincount(chosen // n_items, minlength=len(users))
        short = np.maximum(want - have, 0)
        if not short.any():
            break
        who = np.repeat(np.arange(len(users)), 2 * short + (short > 0) * 2)
        draws = np.searchsorted(cdf, rng.random(len(who)), side="right")
        codes = who * n_items + np.minimum(draws, n_items - 1)
        codes = codes[~np.isin(codes, seen)]
        merged, first = np.unique(np.concatenate([chosen, codes]), return_index=True)
        # keep earlier picks first, then new draws in draw order, capped at ``want`` per learner
        merged = merged[np.argsort(first, kind="stable")]
        owner = merged // n_items
        order = np.argsort(owner, kind="stable")
        merged, owner = merged[order], owner[order]
        counts = np.bincount(owner, minlength=len(users))
        rank = np.arange(len(merged)) - np.repeat(np.cumsum(counts) - counts, counts)
        chosen = merged[rank < want[owner]]
    out_u = users[chosen // n_items].tolist()
    out_i = item_arr[chosen % n_items].tolist()
    return [(u, i, negative) for u, i in zip(out_u, out_i, strict=True)]


def _sampling_weights(ratings: Sequence[Rating], items: np.ndarray, params: ModelParams):
    if params.neg_sampling == "uniform":
        return np.ones(len(items))
    if params.neg_sampling != "popularity":
        raise ValueError(f"unknown neg_sampling {params.neg_sampling!r}")
    pop = _popularity(ratings)
    return np.array([pop.get(int(i), 0.0) + 1.0 for i in items]) ** params.neg_pop_power


class FastTrainset(Trainset):
    """A ``surprise.Trainset`` whose ``all_ratings`` iterates a prebuilt list.

    Surprise's SGD walks ``all_ratings()`` once per epoch; the stock generator costs more than the
    Cython update itself. Same ratings, same order, so the fitted factors are identical.
    """

    def all_ratings(self):
        """Iterate ``(inner uid, inner iid, rating)`` in Surprise's order (users, then rows)."""
        cached = getattr(self, "_all", None)
        if cached is None:
            cached = self._all = [(u, i, r) for u, rs in self.ur.items() for i, r in rs]
        return iter(cached)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_all", None)
        return state


def build_trainset(rows: Iterable[Rating], rating_scale=(1.0, 5.0)) -> Trainset:
    """Build a ``surprise.Trainset`` straight from (user, item, rating) rows."""
    uid: dict[int, int] = {}
    iid: dict[int, int] = {}
    ur: dict[int, list] = defaultdict(list)
    ir: dict[int, list] = defaultdict(list)
    n = 0
    for user, item, r in rows:
        u = uid.setdefault(user, len(uid))
        i = iid.setdefault(item, len(iid))
        ur[u].append((i, float(r)))
        ir[i].append((u, float(r)))
        n += 1
    return FastTrainset(ur, ir, len(uid), len(iid), n, rating_scale, uid, iid)


class RankingSVD:
    """Surprise SVD fitted on pseudo-ratings plus sampled negatives, exported as factors."""

    def __init__(self, params: ModelParams | None = None, weights: SignalWeights | None = None):
        self.params = params or ModelParams()
        self.weights = weights or SignalWeights()
        self.algo: SVD | None = None
        self.factors: FactorModel | None = None
        self.stats: dict[str, float] = {}

    def fit(
        self,
        ratings: Sequence[Rating],
        items: Iterable[int] = (),
        progress: Progress | None = None,
        repeats: Sequence[Rating] = (),
    ) -> RankingSVD:
        """Train on pseudo-ratings; ``items`` adds catalog courses eligible as negatives.

        ``repeats`` are extra SGD visits of some of ``ratings`` (a learner's latest courses): they
        weight those rows more in the fit, but count once for popularity and negatives.
        """
        tick = progress or (lambda stage, done, total: None)
        p = self.params
        all_items = sorted({i for _, i, _ in ratings} | set(items))
        tick("negatives", 0, 3)
        negatives = sample_negatives(ratings, all_items, p, self.weights.negative)
        tick("fit", 1, 3)
        trainset = build_trainset([*ratings, *repeats, *negatives])
        self.algo = SVD(
            n_factors=p.n_factors, n_epochs=p.n_epochs, lr_all=p.lr_all, reg_all=p.reg_all,
            random_state=p.random_state,
        ).fit(trainset)
        trainset.__dict__.pop("_all", None)  # the epoch list is only needed while fitting
        tick("export", 2, 3)
        pop = _popularity(ratings)
        raw_items = (trainset.to_raw_iid(i) for i in range(trainset.n_items))
        inner_pop = np.array([pop.get(item, 0.0) for item in raw_items])
        self.factors = replace(
            FactorModel.from_algo(self.algo, inner_pop, p.blend_k), weights=(1.0, 0.0, 0.0)
        )
        self.stats = {"pseudo_ratings": len(ratings), "negatives": len(negatives),
                      "learners": trainset.n_users, "courses": trainset.n_items}
        tick("done", 3, 3)
        return self
