"""Chinese-aware text matching: jieba tokens ranked with BM25 (rank-bm25)."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping

import jieba
from rank_bm25 import BM25Okapi

jieba.setLogLevel(logging.WARNING)
_WORD = re.compile(r"[\w\u4e00-\u9fff]", re.UNICODE)
_STOPWORDS = frozenset(
    [
        "的",
        "了",
        "和",
        "与",
        "是",
        "在",
        "我",
        "你",
        "吗",
        "呢",
        "啊",
        "怎么",
        "如何",
        "什么",
        "a",
        "an",
        "the",
        "of",
        "to",
        "and",
        "or",
        "in",
        "on",
        "for",
        "is",
        "are",
        "how",
        "what",
        "do",
        "does",
        "i",
        "you",
        "my",
        "with",
    ]
)
_init_lock = threading.Lock()


def warm_up() -> None:
    """Load jieba's dictionary once, up front, instead of on the first message."""
    with _init_lock:
        jieba.initialize()


def tokens(text: str) -> list[str]:
    """Lower-cased search tokens of mixed Chinese/English text, stop words dropped."""
    words = jieba.lcut_for_search(text.lower())
    return [w for w in (w.strip() for w in words) if w and _WORD.search(w) and w not in _STOPWORDS]


class TextIndex:
    """A BM25 index over documents keyed by id."""

    def __init__(self, documents: Mapping[int, str]) -> None:
        self.ids = list(documents)
        corpus = [tokens(documents[i]) or ["\0"] for i in self.ids]
        self._bm25 = BM25Okapi(corpus) if corpus else None

    def search(
        self, query: str, limit: int = 10, min_score: float = 1e-9
    ) -> list[tuple[int, float]]:
        """Ids of the best-matching documents with their scores, best first."""
        words = tokens(query)
        if not words or self._bm25 is None:
            return []
        scores = self._bm25.get_scores(words)
        ranked = sorted(zip(self.ids, scores, strict=True), key=lambda pair: -pair[1])
        return [(doc, float(score)) for doc, score in ranked[:limit] if score > min_score]
