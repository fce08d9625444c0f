"""Recommender service: vectorised SVD top-N for known learners, cold-start fill otherwise."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from recommender.entities import CourseInfo, Suggestion
from recommender.fallback import FallbackParams, IndexCache, cold_start
from recommender.model import POSITIVE_THRESHOLD, FactorModel, ModelParams, Progress, RankingSVD
from recommender.model import load as _load
from recommender.signals import Interaction, SignalWeights, pseudo_ratings

__all__ = ["CourseInfo", "Recommender", "Suggestion", "load_or_none"]

log = logging.getLogger(__name__)
ANCHOR_KINDS = frozenset({"purchase", "attendance", "rating"})


def load_or_none(path: str | os.PathLike) -> FactorModel | None:
    """Load the model at ``path`` (or its ``.prev``); None when neither is usable. Never raises."""
    try:
        return _load(path)
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
        if self.model_path is not None:
            self._loaded_stamp = file_stamp(self.model_path)
            self._swap(load_or_none(self.model_path))

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
        for _, course, r in pseudo_ratings(interactions, self.weights):
            if r >= POSITIVE_THRESHOLD:
                counts[course] = counts.get(course, 0.0) + 1.0
        with self._lock:
            self._popularity = counts

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

    def suggest(
        self,
        learner_id: int,
        owned: set[int],
        catalog: list[CourseInfo],
        history: list[Interaction],
        browsed_categories: set[str],
        n: int = 5,
    ) -> list[Suggestion]:
        """Up to ``n`` active courses the learner does not own, each with a reason."""
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
        out = self._from_model(learner_id, candidates, anchors, len(touched), n)
        if len(out) >= n:
            return out
        chosen = {s.course_id for s in out}
        browsed = set(browsed_categories) | {by_id[i].category for i in touched if i in by_id}
        rest = [c for c in candidates if c.id not in chosen]
        fill = cold_start(
            rest, anchors, browsed, self.popularity(), self._index.get(catalog), self.clock(),
            n - len(out), self.fallback,
        )
        return out + fill

    def _from_model(
        self, learner_id: int, candidates: Sequence[CourseInfo], anchors: list[int],
        history_n: int, n: int,
    ) -> list[Suggestion]:
        model = self.model
        scores = model.blended(learner_id, history_n) if model is not None else None
        if scores is None:
            return []
        cand_ids = np.fromiter((c.id for c in candidates), dtype=np.int64, count=len(candidates))
        inner = model.inner_items(cand_ids)
        known = inner >= 0
        if not known.any():
            return []
        cand_ids, cand_scores = cand_ids[known], scores[inner[known]]
        top = np.argsort(-cand_scores, kind="stable")[:n]
        ids = cand_ids[top].tolist()
        sims = model.item_similarity(ids, anchors)
        out = []
        for row, (course_id, j) in enumerate(zip(ids, top, strict=True)):
            score = float(cand_scores[j])
            best = int(sims[row].argmax()) if anchors else -1
            if best >= 0 and sims[row, best] >= self.because_threshold:
                out.append(Suggestion(course_id, "because_you_took", anchors[best], None, score))
            else:
                out.append(Suggestion(course_id, "similar_learners", None, None, score))
        return out

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

    def _fit(self, interactions, catalog, progress) -> RankingSVD:
        ratings = pseudo_ratings(interactions, self.weights)
        if not ratings:
            raise ValueError("no usable interactions to train on")
        fitted = RankingSVD(self.params, self.weights).fit(
            ratings, [c.id for c in catalog], progress
        )
        if self.model_path is not None:
            fitted.factors.save(self.model_path)
            self._loaded_stamp = file_stamp(self.model_path)
        return fitted

