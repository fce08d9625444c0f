"""Chinese-aware text matching: jieba tokens ranked with BM25 (rank-bm25)."""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Iterable, Mapping

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


# --- FAQ matching: normalised similarity (additive; TextIndex above is unchanged) -----------

_ASCII_WORD = re.compile(r"^[a-z]+$")
# Words that make a sentence a question but say nothing about its subject.
QUESTION_WORDS = frozenset(
    [
        "请问", "请", "问", "一下", "怎么", "什么", "如何", "为什么", "怎么办", "可以", "能",
        "能不能", "可不可以", "是否", "有没有", "没有", "有", "吗", "吧", "呀", "么", "哪里",
        "哪儿", "哪", "多少", "几", "怎样", "怎么样", "要", "想", "会", "该", "应该", "这个",
        "那个", "这门", "这", "那", "课", "课程", "老师", "我们",
        "can", "could", "would", "will", "should", "please", "there", "be", "it", "this",
        "that", "any", "get", "when", "where", "which", "who", "why", "if", "me", "we", "our",
        "your", "course", "class", "lesson", "teacher", "about", "have", "has", "did", "was",
    ]
)


def _stem(word: str) -> str:
    if not _ASCII_WORD.match(word) or len(word) <= 4:
        return word
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def features(text: str) -> list[str]:
    """Matching features of a question: its content words, English ones lightly stemmed."""
    return [_stem(w) for w in tokens(text) if w not in QUESTION_WORDS]


class SimilarityIndex:
    """TF-IDF cosine similarity over `features`; scores are normalised to 0..1."""

    def __init__(self, documents: Mapping[int, str], background: Iterable[str] = ()) -> None:
        """Index `documents`; `background` texts only sharpen the word weights (IDF)."""
        self.ids = list(documents)
        bags = [_counts(features(documents[i])) for i in self.ids]
        extra = [set(features(text)) for text in background]
        n = len(bags) + len(extra)
        df: dict[str, int] = {}
        for terms in [*bags, *extra]:
            for term in terms:
                df[term] = df.get(term, 0) + 1
        self._unseen_idf = math.log(n + 1) + 1.0
        self._idf = {term: math.log((n + 1) / (k + 1)) + 1.0 for term, k in df.items()}
        self._postings: dict[str, list[tuple[int, float]]] = {}
        for position, bag in enumerate(bags):
            weights = {term: tf * self._idf[term] for term, tf in bag.items()}
            norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
            for term, weight in weights.items():
                self._postings.setdefault(term, []).append((position, weight / norm))

    def search(self, query: str, limit: int = 3) -> list[tuple[int, float]]:
        """The most similar documents with cosine scores in 0..1, best first."""
        bag = _counts(features(query))
        if not bag or not self.ids:
            return []
        weights = {term: tf * self._idf.get(term, self._unseen_idf) for term, tf in bag.items()}
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        scores: dict[int, float] = {}
        for term, weight in weights.items():
            for position, doc_weight in self._postings.get(term, ()):
                scores[position] = scores.get(position, 0.0) + weight / norm * doc_weight
        ranked = sorted(scores.items(), key=lambda pair: -pair[1])[:limit]
        return [(self.ids[position], min(1.0, score)) for position, score in ranked]

    def best(self, query: str, threshold: float) -> tuple[int, float] | None:
        """The best document when its score reaches `threshold`, else None."""
        found = self.search(query, limit=1)
        return found[0] if found and found[0][1] >= threshold else None


def _counts(items: list[str]) -> dict[str, int]:
    bag: dict[str, int] = {}
    for item in items:
        bag[item] = bag.get(item, 0) + 1
    return bag
