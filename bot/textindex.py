"""The one text index of the bot: jieba tokens, one stop-word list, BM25 term weights.

Course search, the FAQ matcher and the recommender's content similarity all read text through
the same analyser (:func:`terms`) and weigh it the same way (:class:`TextIndex`):

- every document is a vector of BM25 term weights, ``idf · tf·(k1+1) / (tf + k1·(1-b+b·dl/avgdl))``
  with a smoothed idf (:func:`idf`) so that a one-entry FAQ still works;
- **search** ranks documents by their BM25 score, the dot product of the query's term counts with
  those vectors (:meth:`TextIndex.search`);
- **similarity** is the cosine of two such vectors, 0..1: query to document for the FAQ
  (:meth:`TextIndex.best`), document to document for the recommender
  (:meth:`TextIndex.similarity`).

One cache policy (:class:`IndexCache`): an index is rebuilt only when the text of a document
changes, keyed by a digest of every ``(id, text)``.

Start-up: importing this module imports neither jieba nor numpy/scipy. jieba's dictionary, kept
in a trie by :mod:`bot.jieba_compact` (~3 MB instead of stock jieba's ~62 MB dict; read from a
cache file in milliseconds, built once in ~1 s), loads on first use, or earlier in a daemon
thread started by :func:`warm_up_in_background`; async callers ``await ready()`` so that
waiting for it never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

log = logging.getLogger(__name__)

K1 = 1.5
B = 0.75

_WORD = re.compile(r"[\w\u4e00-\u9fff]", re.UNICODE)
_ASCII_WORD = re.compile(r"^[a-z]+$")
#: The one stop-word list: function words, and words that frame a question or name the product
#: ("course", "老师") but say nothing about a subject.
_STOPWORDS = """
    的 了 和 与 是 在 我 你 吗 呢 啊 吧 呀 么 请问 请 问 一下 怎么 什么 如何 为什么 怎么办 可以 能
    能不能 可不可以 是否 有没有 没有 有 哪里 哪儿 哪 多少 几 怎样 怎么样 要 想 会 该 应该 这个 那个
    这门 这 那 课 课程 老师 我们 你的 一个 学会 学习
    a an the of to and or in on for is are how what do does i you my with from into your our
    can could would will should please there be it this that any get when where which who why if
    me we course courses class lesson teacher about have has did was learn
"""
STOPWORDS = frozenset(_STOPWORDS.split())

_load_lock = threading.Lock()
_start_lock = threading.Lock()
_jieba: Any = None
_idf: Any = None
_thread: threading.Thread | None = None


def _segmenter():
    """jieba's tokenizer on the compact dictionary, loaded once (thread-safe); blocks till then."""
    global _jieba
    if _jieba is None:
        with _load_lock:
            if _jieba is None:
                from bot import jieba_compact

                jieba_compact.import_jieba().setLogLevel(logging.WARNING)
                _jieba = jieba_compact.tokenizer()
    return _jieba


def is_ready() -> bool:
    """True once jieba's dictionary is loaded."""
    return _jieba is not None


def warm_up() -> None:
    """Load jieba's dictionary now, in this thread (for scripts and benchmarks)."""
    _segmenter()


def warm_up_in_background() -> threading.Thread:
    """Start loading jieba in a daemon thread; idempotent (returns the same thread)."""
    global _thread
    with _start_lock:
        if _thread is None:
            _thread = threading.Thread(target=_warm, name="jieba-warm-up", daemon=True)
            _thread.start()
        return _thread


def _warm() -> None:
    try:
        _segmenter()
    except Exception:  # pragma: no cover - the first real use raises it again
        log.exception("loading jieba failed")


async def ready() -> None:
    """Wait for jieba without blocking the event loop (loads it if nobody has started to)."""
    if not is_ready():
        await asyncio.to_thread(_segmenter)


async def in_daemon_thread(fn, *args):
    """``fn(*args)`` in a daemon thread, awaited without blocking the loop. Unlike
    ``asyncio.to_thread`` a process that stops does not wait for it (index builds, jieba)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as error:  # noqa: BLE001 - handed to the awaiting task
            loop.call_soon_threadsafe(_settle, done, None, error)
        else:
            loop.call_soon_threadsafe(_settle, done, result, None)

    threading.Thread(target=run, name="textindex-build", daemon=True).start()
    return await done


def _settle(future, result, error) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def tokens(text: str) -> list[str]:
    """Lower-cased jieba search tokens of mixed Chinese/English text, stop words dropped."""
    words = _segmenter().lcut_for_search(text.lower())
    return [w for w in (w.strip() for w in words) if w and _WORD.search(w) and w not in STOPWORDS]


tokenize = tokens


def _stem(word: str) -> str:
    if not _ASCII_WORD.match(word) or len(word) <= 4:
        return word
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def terms(text: str) -> list[str]:
    """The indexed terms of a text: its tokens, English ones lightly stemmed."""
    return [_stem(w) for w in tokens(text)]


features = terms


def keywords(texts: Iterable[str], top: int = 8) -> list[str]:
    """The top keywords of some texts (jieba's TF-IDF ``extract_tags``), digits dropped."""
    from bot import jieba_compact

    words = jieba_compact.extract_tags(_segmenter(), _idf_table(), "\n".join(texts), top * 2)
    return [w for w in words if len(w.strip()) > 1 and not w.isdigit()][:top]


def _idf_table():
    """jieba.analyse's IDF table in a trie (importing jieba.analyse itself costs ~97 MB)."""
    global _idf
    if _idf is None:
        with _load_lock:
            if _idf is None:
                from bot import jieba_compact

                _idf = jieba_compact.idf_table()
    return _idf


def idf(n: int, df):
    """Smoothed idf, ``ln((n+1)/(df+1)) + 1``: never negative and never zero, so a word in most
    documents still counts a little and a one-entry FAQ still matches (Robertson's BM25 idf
    goes negative there)."""
    import numpy as np

    return np.log((n + 1.0) / (np.asarray(df, dtype=float) + 1.0)) + 1.0


class TextIndex:
    """BM25-weighted term vectors of documents keyed by id (see the module docstring)."""

    def __init__(self, documents: Mapping[Hashable, str], background: Iterable[str] = ()) -> None:
        """Index ``documents``; ``background`` texts only sharpen the word weights (idf)."""
        import numpy as np
        from scipy import sparse

        self.ids = list(documents)
        self.row = {doc: pos for pos, doc in enumerate(self.ids)}
        bags = [terms(documents[doc]) for doc in self.ids]
        extra = [set(terms(text)) for text in background]
        self.vocab: dict[str, int] = {}
        rows, cols, counts = [], [], []
        for r, bag in enumerate(bags):
            tally: dict[int, int] = {}
            for term in bag:
                col = self.vocab.setdefault(term, len(self.vocab))
                tally[col] = tally.get(col, 0) + 1
            rows += [r] * len(tally)
            cols += list(tally)
            counts += list(tally.values())
        for bag in extra:
            for term in bag:
                self.vocab.setdefault(term, len(self.vocab))
        width = max(len(self.vocab), 1)
        df = np.bincount(np.asarray(cols, dtype=np.int64), minlength=width).astype(float)
        for bag in extra:
            df[[self.vocab[term] for term in bag]] += 1
        n = len(bags) + len(extra)
        self.n = n
        self.idf = idf(n, df)
        lengths = np.array([len(bag) for bag in bags], dtype=float)
        avg = lengths.mean() if len(bags) and lengths.mean() > 0 else 1.0
        self.avgdl = float(avg)
        tf = np.asarray(counts, dtype=float)
        norm = K1 * (1.0 - B + B * lengths[np.asarray(rows, dtype=np.int64)] / avg)
        weights = self.idf[np.asarray(cols, dtype=np.int64)] * tf * (K1 + 1.0) / (tf + norm)
        shape = (len(bags), width)
        #: BM25 weights, one row per document (a query's BM25 score is counts @ weights.T)
        self.weights = sparse.csr_matrix((weights, (rows, cols)), shape=shape)
        lengths2 = np.sqrt(np.asarray(self.weights.multiply(self.weights).sum(axis=1)).ravel())
        lengths2[lengths2 == 0] = 1.0
        #: the same rows scaled to unit length, for cosine similarity
        self.unit = sparse.csr_matrix(sparse.diags(1.0 / lengths2) @ self.weights)
        #: the weights by column: a query reads only the columns of its terms
        self.by_term = self.weights.tocsc()

    def __len__(self) -> int:
        return len(self.ids)

    def _query(self, text: str) -> dict[int, int]:
        tally: dict[int, int] = {}
        for term in terms(text):
            col = self.vocab.get(term)
            if col is not None:
                tally[col] = tally.get(col, 0) + 1
        return tally

    def _rank(self, scores, limit: int, min_score: float) -> list[tuple[Any, float]]:
        import numpy as np

        order = np.lexsort((np.arange(len(scores)), -scores))[:limit]
        return [(self.ids[i], float(scores[i])) for i in order if scores[i] > min_score]

    def search(
        self, query: str, limit: int = 10, min_score: float = 1e-9
    ) -> list[tuple[Any, float]]:
        """Ids of the documents with the best BM25 score for ``query``, with scores, best first."""
        tally = self._query(query)
        if not tally or not self.ids:
            return []
        cols = list(tally)
        scores = self.by_term[:, cols] @ [float(tally[c]) for c in cols]
        return self._rank(scores, limit, min_score)

    def score_bags(self, query: str, bags: Mapping[Hashable, Sequence[str]]) -> dict:
        """BM25 scores of documents outside the index (their terms given), weighed with this
        index's idf and average length, so they rank among its own documents."""
        tally: dict[str, int] = {}
        for term in terms(query):
            tally[term] = tally.get(term, 0) + 1
        unseen = float(idf(self.n, 0.0))
        out = {}
        for doc, bag in bags.items():
            norm = K1 * (1.0 - B + B * len(bag) / self.avgdl)
            score = 0.0
            for term, count in tally.items():
                tf = bag.count(term)
                if tf:
                    weight = float(self.idf[self.vocab[term]]) if term in self.vocab else unseen
                    score += count * weight * tf * (K1 + 1.0) / (tf + norm)
            out[doc] = score
        return out

    def nearest(self, anchors: Sequence[Hashable], limit: int) -> list[Hashable]:
        """Ids of the documents most similar to any of ``anchors`` (anchors left out)."""
        import numpy as np

        rows = [self.row[a] for a in anchors if a in self.row]
        if not rows or limit <= 0:
            return []
        best = np.asarray((self.unit @ self.unit[rows].T).max(axis=1).todense()).ravel()
        best[rows] = 0.0
        k = min(limit, len(best))
        top = np.argpartition(-best, k - 1)[:k]  # O(n): no sort of the whole catalogue
        top = top[np.lexsort((top, -best[top]))]
        return [self.ids[i] for i in top if best[i] > 0]

    def similar(self, query: str, limit: int = 3) -> list[tuple[Any, float]]:
        """The documents most similar to ``query``: cosine in 0..1, best first.

        Query words the index has never seen still lengthen the query (weighted as the rarest
        word), so a question about something else scores low.
        """
        import numpy as np

        words = terms(query)
        if not words or not self.ids:
            return []
        known = self._query(query)
        unseen_idf = float(idf(self.n, 0.0))
        unseen = len(words) - sum(known.values())
        cols = list(known)
        qtf = np.array([float(known[c]) for c in cols])
        qw = self.idf[cols] * qtf * (K1 + 1.0) / (qtf + K1) if cols else np.zeros(0)
        extra = unseen_idf * (K1 + 1.0) / (1.0 + K1)
        length = float(np.sqrt(qw @ qw + unseen * extra * extra)) or 1.0
        if not cols:
            return []
        scores = self.unit[:, cols] @ (qw / length)
        return [(doc, min(1.0, s)) for doc, s in self._rank(scores, limit, 0.0)]

    def best(self, query: str, threshold: float) -> tuple[Any, float] | None:
        """The most similar document when its cosine reaches ``threshold``, else None."""
        found = self.similar(query, limit=1)
        return found[0] if found and found[0][1] >= threshold else None

    def similarity(self, ids: Sequence[Hashable], anchors: Sequence[Hashable]) -> np.ndarray:
        """Cosine similarity matrix (len(ids) x len(anchors)) of documents; unknown ids score 0."""
        import numpy as np

        out = np.zeros((len(ids), len(anchors)))
        a_pos = [(j, self.row[a]) for j, a in enumerate(anchors) if a in self.row]
        i_pos = [(j, self.row[i]) for j, i in enumerate(ids) if i in self.row]
        if not a_pos or not i_pos:
            return out
        block = self.unit[[p for _, p in i_pos]] @ self.unit[[p for _, p in a_pos]].T
        out[np.ix_([j for j, _ in i_pos], [j for j, _ in a_pos])] = block.toarray()
        return out


class LiveIndex:
    """A built :class:`TextIndex` plus the documents changed since it was built.

    Changes are applied one by one (:meth:`update`, a removed document is ``None``) and searched
    next to the built index with its word weights; :attr:`stale` says when enough changed that
    a rebuild (in the background, by the owner) is worth it.
    """

    def __init__(self, base: TextIndex, texts: Mapping[Hashable, str], rebuild_after: int = 0):
        self.base = base
        self.texts = dict(texts)
        self.changed: dict[Hashable, list[str] | None] = {}
        self.rebuild_after = rebuild_after or max(50, len(self.texts) // 20)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def stale(self) -> bool:
        """True when so many documents changed that the built index should be rebuilt."""
        return len(self.changed) > self.rebuild_after

    def update(self, doc: Hashable, text: str | None) -> bool:
        """Apply one document's new text (None: removed); False when nothing changed."""
        if self.texts.get(doc) == text:
            return False
        if text is None:
            self.texts.pop(doc, None)
        else:
            self.texts[doc] = text
        self.changed[doc] = terms(text) if text is not None else None
        return True

    def search(self, query: str, limit: int = 10, min_score: float = 1e-9) -> list[tuple]:
        """The built index's best matches and the changed documents', merged, best first."""
        found = [
            (doc, score)
            for doc, score in self.base.search(query, limit + len(self.changed), min_score)
            if doc not in self.changed
        ]
        bags = {doc: bag for doc, bag in self.changed.items() if bag is not None}
        found += [(d, s) for d, s in self.base.score_bags(query, bags).items() if s > min_score]
        found.sort(key=lambda hit: -hit[1])
        return found[:limit]


#: The FAQ matcher's name for the same index (kept for existing callers).
SimilarityIndex = TextIndex


def digest(documents: Mapping[Hashable, str]) -> str:
    """A key that changes when any document's id or text changes."""
    h = hashlib.sha1(usedforsecurity=False)
    for doc, text in documents.items():
        h.update(f"{doc}\x1f{text}\x1e".encode())
    return h.hexdigest()


class IndexCache:
    """The one cache policy: keep the last few indexes, rebuild only when a text changed."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._indexes: dict[str, TextIndex] = {}

    def get(self, documents: Mapping[Hashable, str]) -> TextIndex:
        """The index of exactly these documents, built now if they are new or changed."""
        key = digest(documents)
        with self._lock:
            index = self._indexes.pop(key, None)
            if index is None:
                index = TextIndex(documents)
            self._indexes[key] = index  # most recently used last
            while len(self._indexes) > self.size:
                del self._indexes[next(iter(self._indexes))]
            return index


_shared = IndexCache()


def cached_index(documents: Mapping[Hashable, str]) -> TextIndex:
    """The shared cache's index of ``documents`` (course search, FAQ entries …)."""
    return _shared.get(documents)
