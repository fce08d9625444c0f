"""Cold start: popularity in the browsed categories blended with jieba TF-IDF content similarity.

TF-IDF is written here with numpy/scipy.sparse rather than taken from a library: scikit-learn's
``TfidfVectorizer`` is not a dependency (and would be a large one for ~30 lines), and
``jieba.analyse`` ships a fixed, general-purpose IDF table for keyword extraction, not document
vectors weighted by our own catalogue. jieba does the hard part, the Chinese word segmentation.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import jieba
import numpy as np
from scipy import sparse

from recommender.entities import CourseInfo, Suggestion

jieba.setLogLevel(logging.WARNING)

_WORD = re.compile(r"[0-9a-z\u4e00-\u9fff]")
STOPWORDS = frozenset({
    "the", "and", "for", "with", "from", "into", "your", "you", "our", "are", "how", "what",
    "this", "that", "course", "courses", "learn", "课程", "一个", "我们", "你的", "如何", "学会",
    "学习",
})


def tokenize(text: str) -> list[str]:
    """Split zh+en text into lower-case jieba search tokens, minus stop words and 1-char noise."""
    tokens = jieba.lcut_for_search(text.lower())
    return [t for t in tokens if len(t) > 1 and _WORD.search(t) and t not in STOPWORDS]


@dataclass(frozen=True, slots=True)
class FallbackParams:
    """Weights of the cold-start score and the thresholds that choose a reason."""

    w_popularity: float = 1.0
    w_category: float = 1.0
    w_similarity: float = 1.5
    w_new: float = 0.3
    new_days: int = 30
    similar_threshold: float = 0.15


class ContentIndex:
    """L2-normalised TF-IDF vectors (sublinear tf, smoothed idf) of every catalogue course."""

    def __init__(self, catalog: Sequence[CourseInfo]):
        self.row = {course.id: pos for pos, course in enumerate(catalog)}
        docs = [tokenize(course.text()) for course in catalog]
        vocab: dict[str, int] = {}
        rows, cols, vals = [], [], []
        for r, doc in enumerate(docs):
            counts: dict[int, int] = {}
            for tok in doc:
                col = vocab.setdefault(tok, len(vocab))
                counts[col] = counts.get(col, 0) + 1
            rows += [r] * len(counts)
            cols += list(counts)
            vals += [1.0 + np.log(c) for c in counts.values()]
        shape = (len(docs), max(len(vocab), 1))
        tf = sparse.csr_matrix((vals, (rows, cols)), shape=shape)
        df = np.bincount(cols, minlength=shape[1])
        idf = np.log((1.0 + len(docs)) / (1.0 + df)) + 1.0
        tfidf = tf @ sparse.diags(idf)
        norms = np.sqrt(np.asarray(tfidf.multiply(tfidf).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        self.matrix = sparse.csr_matrix(sparse.diags(1.0 / norms) @ tfidf)

    def similarity(self, ids: Sequence[int], anchors: Sequence[int]) -> np.ndarray:
        """Cosine similarity matrix (len(ids) x len(anchors)); unknown ids score 0."""
        out = np.zeros((len(ids), len(anchors)))
        a_pos = [(j, self.row[a]) for j, a in enumerate(anchors) if a in self.row]
        i_pos = [(j, self.row[i]) for j, i in enumerate(ids) if i in self.row]
        if not a_pos or not i_pos:
            return out
        block = self.matrix[[p for _, p in i_pos]] @ self.matrix[[p for _, p in a_pos]].T
        out[np.ix_([j for j, _ in i_pos], [j for j, _ in a_pos])] = block.toarray()
        return out


class IndexCache:
    """Rebuilds the content index only when the catalogue text changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: str | None = None
        self._index: ContentIndex | None = None

    def get(self, catalog: Sequence[CourseInfo]) -> ContentIndex:
        """Return the index for this catalogue, building it if the text changed."""
        digest = hashlib.sha1(usedforsecurity=False)
        for course in catalog:
            digest.update(f"{course.id}\x1f{course.text()}\x1e".encode())
        key = digest.hexdigest()
        with self._lock:
            if key != self._key or self._index is None:
                self._index, self._key = ContentIndex(catalog), key
            return self._index


def popularity_prior(ids: Iterable[int], popularity: Mapping[int, float]) -> np.ndarray:
    """Log-scaled popularity in 0..1 for ``ids``."""
    counts = np.array([float(popularity.get(i, 0.0)) for i in ids])
    top = np.log1p(counts.max(initial=0.0))
    return np.log1p(counts) / top if top > 0 else np.zeros_like(counts)


def _reason(course, best_sim, anchor, browsed, is_new, params) -> tuple:
    if anchor is not None and best_sim >= params.similar_threshold:
        return "because_you_took", anchor, None
    if course.category in browsed:
        return ("new_in_category" if is_new else "popular_in_category"), None, course.category
    return "popular", None, None


def cold_start(
    candidates: Sequence[CourseInfo],
    anchors: Sequence[int],
    browsed: set[str],
    popularity: Mapping[int, float],
    index: ContentIndex,
    now: datetime,
    n: int,
    params: FallbackParams | None = None,
) -> list[Suggestion]:
    """Rank candidates by category popularity, content similarity to ``anchors`` and newness."""
    params = params or FallbackParams()
    if not candidates or n <= 0:
        return []
    ids = [c.id for c in candidates]
    sims = index.similarity(ids, list(anchors))
    best = sims.max(axis=1) if len(anchors) else np.zeros(len(ids))
    which = sims.argmax(axis=1) if len(anchors) else np.zeros(len(ids), dtype=int)
    in_cat = np.array([c.category in browsed for c in candidates], dtype=float)
    fresh = now - timedelta(days=params.new_days)
    is_new = np.array([c.created_at >= fresh for c in candidates], dtype=float)
    score = (params.w_popularity * popularity_prior(ids, popularity)
             + params.w_category * in_cat + params.w_similarity * best
             + params.w_new * is_new * in_cat)
    created = np.array([c.created_at.timestamp() for c in candidates])
    order = np.lexsort((-created, -score))[:n]
    out = []
    for j in order:
        anchor = anchors[which[j]] if len(anchors) else None
        reason, rid, rcat = _reason(candidates[j], best[j], anchor, browsed, is_new[j], params)
        out.append(Suggestion(ids[j], reason, rid, rcat, float(score[j])))
    return out
