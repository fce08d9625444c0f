"""Recommender service: vectorised SVD top-N for known learners, cold-start fill otherwise."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recommender.entities import CourseInfo, Suggestion
from recommender.fallback import FallbackParams, IndexCache, cold_start
from recommender.params import POSITIVE_THRESHOLD, ModelParams, Progress, prev_path
from recommender.signals import Interaction, Signal, SignalWeights, timed_pseudo_ratings

if TYPE_CHECKING:  # pragma: no cover - Surprise and scipy load only to read or train a model
    from recommender.blend import Hybrid
    from recommender.model import FactorModel

__all__ = ["CourseInfo", "Recommender", "Suggestion", "load_or_none"]

log = logging.getLogger(__name__)
ANCHOR_KINDS = frozenset({Signal.PURCHASE, Signal.ATTENDANCE, Signal.RATING, Signal.REVIEW})


#: When the first training runs, unless the process says better (`training_schedule`).
DEFAULT_SCHEDULE = "at the scheduled retraining, or now with `coursebot recommender train`"


def load_or_none(path: str | os.PathLike, schedule: str = DEFAULT_SCHEDULE) -> FactorModel | None:
    """Load the model at ``path`` (or its ``.prev``); None when neither is usable. Never raises.

    No model file at all is the normal state of a new installation: one INFO line says that
    popularity serves until the first training and when that runs (``schedule``).
    """
    path = Path(path)
    if not path.exists() and not prev_path(path).exists():
        log.info(
            "no trained recommender model yet (%s): popularity serves until the first "
            "training, %s",
            path,
            schedule,
        )
        return None
    try:
        from recommender.model import load

        return load(path)
    except Exception:  # noqa: BLE001 - belt and braces: serving must go on with popularity
        log.exception("unexpected error loading model %s", path)
        return None


def file_stamp(path: Path) -> int | None:
    """The modification time of ``path`` in ns, or None when it does not exist."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Recommender:
    """Suggests courses; holds the current factor model and swaps it atomically."""

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        params: ModelParams | None = None,
        weights: SignalWeights | None = None,
        fallback: FallbackParams | None = None,
        clock: Callable[[], datetime] = _utcnow,
        because_threshold: float = 0.5,
        reload_seconds: float = 60.0,
        training_schedule: str = DEFAULT_SCHEDULE,
    ):
        self.model_path = Path(model_path) if model_path else None
        self.params = params or ModelParams()
        self.weights = weights or SignalWeights()
        self.fallback = fallback or FallbackParams()
        self.clock = clock
        self.because_threshold = because_threshold
        self.reload_seconds = reload_seconds
        self._checked_at = float("-inf")
        self._loaded_stamp: int | None = None
        self._lock = threading.Lock()
        self._train_lock = threading.Lock()
        self._index = IndexCache()
        self._model: FactorModel | None = None
        self._popularity: dict[int, float] = {}
        self._ranked: list[int] = []
        self._ranked_of: dict[int, float] | None = None
        if self.model_path is not None:
            self._loaded_stamp = file_stamp(self.model_path)
            self._swap(load_or_none(self.model_path, training_schedule))

    @property
    def model(self) -> FactorModel | None:
        """The factor model currently served (None means popularity/content only)."""
        with self._lock:
            return self._model

    def _swap(self, model: FactorModel | None) -> None:
        if model is None:
            return
        popularity = dict(zip(model.item_ids.tolist(), model.item_pop.tolist(), strict=True))
        with self._lock:
            self._model, self._popularity = model, popularity

    def popularity(self) -> dict[int, float]:
        """Per-course count of learners with a positive signal, from the last model or update."""
        with self._lock:
            return self._popularity

    def update_popularity(self, interactions: Iterable[Interaction]) -> None:
        """Recount popularity from interactions without retraining (cheap, for cold start)."""
        counts: dict[int, float] = {}
        for _, course, r, _ in timed_pseudo_ratings(interactions, self.weights):
            if r >= POSITIVE_THRESHOLD:
                counts[course] = counts.get(course, 0.0) + 1.0
        with self._lock:
            self._popularity = counts

    def set_popularity(self, counts: dict[int, float]) -> None:
        """Serve these per-course counts (counted by the database, see `storage.popularity`)."""
        with self._lock:
            self._popularity = dict(counts)

    def reload(self) -> bool:
        """Reload from ``model_path``; keeps serving the current model if the file is unusable."""
        if self.model_path is None:
            return False
        self._loaded_stamp = file_stamp(self.model_path)
        model = load_or_none(self.model_path)
        if model is None:
            log.warning("reload of %s failed; keeping the model in memory", self.model_path)
            return False
        self._swap(model)
        return True

    def refresh(self) -> bool:
        """Load a newer model file (saved by another process); checks every reload_seconds."""
        now = time.monotonic()
        if self.model_path is None or now - self._checked_at < self.reload_seconds:
            return False
        self._checked_at = now
        stamp = file_stamp(self.model_path)
        if stamp is None or stamp == self._loaded_stamp:
            return False
        log.info("model file %s changed; reloading", self.model_path)
        return self.reload()

    def popular(self, limit: int) -> list[int]:
        """The ``limit`` most popular courses, most popular first (sorted once per update)."""
        with self._lock:
            popularity = self._popularity
            ranked = self._ranked if self._ranked_of is popularity else None
        if ranked is None:
            ranked = sorted(popularity, key=lambda c: (-popularity[c], c))
            with self._lock:
                self._ranked, self._ranked_of = ranked, popularity
        return ranked[:limit]

    def candidates(
        self, learner_id: int, owned: set[int], history: list[Interaction], limit: int = 50
    ) -> list[int]:
        """Courses worth ranking for this learner, from the factors alone (no catalogue): the
        model's top ``limit`` and the ``limit`` most popular, owned ones left out."""
        out = [c for c in self._model_top(learner_id, owned, history, limit) if c not in owned]
        seen = set(out)
        out += [c for c in self.popular(limit + len(owned)) if c not in owned and c not in seen]
        return out

    def _model_top(self, learner_id, owned, history, limit) -> list[int]:
        model = self.model
        if model is None:
            return []
        inner, conf = self._history(model, learner_id, history, owned)
        if not model.knows(learner_id) and not len(inner):
            return []
        scores = sum(model.components(learner_id, inner, conf).values())
        k = min(limit + len(owned), len(scores))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return model.item_ids[top].tolist()

    def suggest(
        self,
        learner_id: int,
        owned: set[int],
        catalog: list[CourseInfo],
        history: list[Interaction],
        browsed_categories: set[str],
        n: int = 5,
        index=None,
    ) -> list[Suggestion]:
        """Up to ``n`` active courses the learner does not own, each with a reason.

        ``catalog`` holds the courses to choose from and those the learner touched (all of
        the catalogue, or candidates); ``index`` is a text index of the catalogue for content
        similarity (by default one of ``catalog`` is built and cached)."""
        refunded = {e.course_id for e in history if e.kind == "refund"}
        excluded = set(owned) | refunded
        candidates = [c for c in catalog if c.active and c.id not in excluded]
        if not candidates or n <= 0:
            return []
        touched = {e.course_id for e in history if e.kind != "refund"} | set(owned)
        by_id = {c.id: c for c in catalog if c.id in touched}
        anchors = sorted(
            ({e.course_id for e in history if e.kind in ANCHOR_KINDS} | set(owned))
            & by_id.keys() - refunded
        )
        out = self._from_model(learner_id, candidates, anchors, history, owned, n)
        if len(out) >= n:
            return out
        chosen = {s.course_id for s in out}
        browsed = set(browsed_categories) | {by_id[i].category for i in touched if i in by_id}
        rest = [c for c in candidates if c.id not in chosen]
        fill = cold_start(
            rest, anchors, browsed, self.popularity(),
            index if index is not None else self._index.get(catalog), self.clock(),
            n - len(out), self.fallback,
        )
        return out + fill

    def _from_model(
        self, learner_id: int, candidates: Sequence[CourseInfo], anchors: list[int],
        history: list[Interaction], owned: set[int], n: int,
    ) -> list[Suggestion]:
        model = self.model
        if model is None:
            return []
        inner, conf = self._history(model, learner_id, history, owned)
        if not model.knows(learner_id) and not len(inner):
            return []
        parts = model.components(learner_id, inner, conf)
        scores = sum(parts.values())
        cand_ids = np.fromiter((c.id for c in candidates), dtype=np.int64, count=len(candidates))
        cand_inner = model.inner_items(cand_ids)
        known = cand_inner >= 0
        if not known.any():
            return []
        cand_ids, cand_inner = cand_ids[known], cand_inner[known]
        cand_scores = scores[cand_inner]
        n_top = min(n, len(cand_scores))
        top = np.argpartition(-cand_scores, n_top - 1)[:n_top]
        top = top[np.argsort(-cand_scores[top], kind="stable")]
        anchor_inner = model.inner_items(np.array(anchors, dtype=np.int64))
        out = []
        for j in top.tolist():
            course_id, target = int(cand_ids[j]), int(cand_inner[j])
            reason, because = self._reason(model, parts, target, anchors, anchor_inner, inner,
                                           conf)
            out.append(Suggestion(course_id, reason, because, None, float(cand_scores[j])))
        return out

    def _history(self, model: FactorModel, learner_id: int, history, owned):
        """The learner's courses as the item component sees them (owned without events count)."""
        rows = timed_pseudo_ratings(
            [e for e in history if e.learner_id == learner_id], self.weights
        )
        seen = {r[1] for r in rows}
        oldest = min((r[3] for r in rows), default=0.0)
        rows += [(learner_id, c, self.weights.purchase, oldest) for c in owned if c not in seen]
        return model.history(
            [r[1] for r in rows], [self.weights.confidence(r[2]) for r in rows],
            [r[3] for r in rows],
        )

    def _reason(self, model, parts, target, anchors, anchor_inner, inner, conf):
        """Name what drove the score: the part contributing most to this course decides.

        Item part: the anchor course whose neighbour weight x history weight is largest;
        SVD part: "learners like you" (similar_learners); popularity part: "popular".
        """
        ranked = sorted(parts, key=lambda name: -float(parts[name][target]))
        for name in ranked:
            if name == "item":
                best = self._best_anchor(model, target, anchors, anchor_inner, inner, conf)
                if best is not None:
                    return "because_you_took", best
            elif name == "svd":
                best = self._svd_anchor(model, target, anchors)
                if best is not None:
                    return "because_you_took", best
                return "similar_learners", None
            elif name == "pop":
                return "popular", None
        return "similar_learners", None

    @staticmethod
    def _best_anchor(model, target, anchors, anchor_inner, inner, conf):
        weight = dict(zip(inner.tolist(), conf.tolist(), strict=True))
        best, best_value = None, 0.0
        for anchor, a in zip(anchors, anchor_inner.tolist(), strict=True):
            if a < 0 or a not in weight:
                continue
            value = weight[a] * float(model.neighbours[a, target])
            if value > best_value:
                best, best_value = anchor, value
        return best

    def _svd_anchor(self, model, target, anchors):
        if not anchors:
            return None
        ids = [int(model.item_ids[target])]
        sims = model.item_similarity(ids, anchors)
        best = int(sims[0].argmax())
        return anchors[best] if sims[0, best] >= self.because_threshold else None

    def train(
        self,
        interactions: Iterable[Interaction],
        catalog: Sequence[CourseInfo],
        progress: Progress | None = None,
    ) -> dict[str, object]:
        """Fit, save atomically, swap in; on failure keep the current model and log why."""
        started = time.perf_counter()
        with self._train_lock:
            try:
                fitted = self._fit(interactions, catalog, progress)
            except Exception as exc:  # noqa: BLE001 - a failed training must not stop serving
                log.exception("training failed; still serving the previous model")
                seconds = round(time.perf_counter() - started, 3)
                return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "seconds": seconds}
            self._swap(fitted.factors)
        return {"ok": True, **fitted.stats, "seconds": round(time.perf_counter() - started, 3)}

    def _fit(self, interactions, catalog, progress) -> Hybrid:
        from recommender.blend import Hybrid

        ratings = timed_pseudo_ratings(interactions, self.weights)
        if not ratings:
            raise ValueError("no usable interactions to train on")
        fitted = Hybrid(self.params, self.weights).fit(
            ratings, [c.id for c in catalog], progress
        )
        if self.model_path is not None:
            fitted.factors.save(self.model_path)
            self._loaded_stamp = file_stamp(self.model_path)
        return fitted

