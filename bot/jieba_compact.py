"""jieba with its dictionary in a MARISA trie: the same tokens in ~3 MB instead of ~62 MB.

Stock jieba keeps ``Tokenizer.FREQ``, a dict of every dictionary word *and every prefix of one*
(~500k ``str`` keys). :class:`CompactTokenizer` keeps the 349k words in a
:class:`marisa_trie.Trie` (~1.3 MB) and their frequencies in an ``array`` indexed by the trie's
key ids. :class:`CompactFreq` answers what jieba asks of ``FREQ`` (``frag in FREQ``: is it a
prefix of a word; ``FREQ[w]``/``FREQ.get(w)``: its frequency, 0 for a bare prefix), so every
jieba code path that reads it (cut, cut_for_search, HMM, add_word) behaves as with the dict;
:meth:`CompactTokenizer.get_DAG` asks the trie for all words starting at a position in one call
(skipped where no word of two or more characters begins), and the route reads one-character
words from a small dict: as fast as stock jieba. :func:`extract_tags` is ``jieba.analyse``'s
TF-IDF keywords over the same tokenizer and its IDF table in a trie (:func:`idf_table`), without
importing ``jieba.analyse`` (~97 MB).

The tries are built from jieba's dict.txt / idf.txt (~1 s; the heap the parsed lines took is
handed back to the OS) and cached next to jieba's own cache (the temp dir), keyed on the file's
size and mtime.
"""

from __future__ import annotations

import builtins
import hashlib
import importlib.util
import logging
import marshal
import math
import os
import sys
import tempfile
import threading
import types
from array import array
from collections.abc import Iterator
from typing import Any

import marisa_trie

log = logging.getLogger(__name__)

#: Bumped when the cached form changes.
FORMAT = 2


def import_jieba() -> Any:
    """``import jieba`` without ``pkg_resources`` (6 MB, ~150 ms; it only opens jieba's files)."""
    if "jieba" in sys.modules or "pkg_resources" in sys.modules:
        import jieba

        return jieba
    spec = importlib.util.find_spec("jieba")  # a top-level spec: runs nothing of jieba
    path = os.path.join(os.path.dirname(spec.origin), "_compat.py")
    compat = types.ModuleType("jieba._compat")
    compat.__file__, compat.__package__ = path, "jieba"
    compat.__builtins__ = {**builtins.__dict__, "__import__": _import_but_pkg_resources}
    with open(path, "rb") as source:
        exec(compile(source.read(), path, "exec"), compat.__dict__)
    sys.modules["jieba._compat"] = compat
    try:
        import jieba
    except BaseException:
        sys.modules.pop("jieba._compat", None)
        raise
    return jieba


def _import_but_pkg_resources(name, *args, **kwargs):
    if name == "pkg_resources":
        raise ImportError(name)
    return builtins.__import__(name, *args, **kwargs)


class CompactFreq:
    """jieba's ``FREQ`` (word or prefix → frequency, 0 for a bare prefix) read from a trie."""

    __slots__ = ("trie", "freqs", "longest", "starts", "chars", "exact", "added")

    def __init__(
        self,
        trie: marisa_trie.Trie,
        freqs: array,
        longest: int,
        starts: str,
        chars: str,
        total: int,
    ) -> None:
        self.trie = trie
        self.freqs = freqs
        #: the length of the longest word
        self.longest = longest
        logtotal = math.log(total) if total > 0 else 0.0
        #: ``log(freq) - log(total)`` of each one-character word (~12k; half of what a route
        #: reads), the very float jieba's route computes for it
        self.chars = {c: math.log(freqs[trie[c]] or 1) - logtotal for c in chars}
        one = {c: c for c in self.chars}  # the same str objects in both: ~0.7 MB less
        #: the characters that begin a word of two or more (elsewhere a DAG has one end)
        self.starts = frozenset(one.get(c, c) for c in starts)
        #: True while every word has a frequency and none was added: get_DAG may use the trie
        self.exact = all(freqs)
        #: words added at run time (``add_word``, ``load_userdict``) and their new prefixes
        self.added: dict[str, int] = {}

    def get(self, frag: str, default: Any = None) -> Any:
        """The frequency of a word, 0 for a prefix of one, else ``default`` (as ``dict.get``)."""
        if self.added and frag in self.added:
            return self.added[frag]
        key = self.trie.get(frag)
        if key is not None:
            return self.freqs[key]
        if frag and next(self.trie.iterkeys(frag), None) is not None:
            return 0
        return default

    def __contains__(self, frag: object) -> bool:
        return isinstance(frag, str) and self.get(frag) is not None

    def __getitem__(self, frag: str) -> int:
        freq = self.get(frag)
        if freq is None:
            raise KeyError(frag)
        return freq

    def __setitem__(self, word: str, freq: int) -> None:
        self.added[word] = freq
        self.exact = False

    def __len__(self) -> int:
        return len(self.trie) + len(self.added)


def _lines(path: str) -> Iterator[tuple[str, int]]:
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            try:
                word, freq = line.strip().decode("utf-8").split(" ")[:2]
                yield word, int(freq)
            except ValueError:
                raise ValueError(f"invalid dictionary entry in {path} at line {lineno}") from None


def build(path: str) -> tuple[CompactFreq, int]:
    """The compact ``FREQ`` and the total frequency of a jieba dictionary file."""
    return _freq(_freq_parts(path))


def _freq_parts(path: str) -> tuple:
    words, counts = [], []
    for word, freq in _lines(path):
        words.append(word)
        counts.append(freq)
    trie = marisa_trie.Trie(words)
    freqs = array("Q", bytes(8 * len(trie)))
    for word, freq in zip(words, counts, strict=True):  # a repeated word keeps its last freq
        freqs[trie[word]] = freq
    if max(freqs, default=0) < 2**32:
        freqs = array("I", freqs)  # 4 bytes a word (the bundled dictionary's top is 883,634)
    longest = max(map(len, words), default=1)
    starts = "".join(sorted({word[0] for word in words if len(word) > 1}))
    chars = "".join(sorted({word for word in words if len(word) == 1}))
    total = sum(counts)
    return total, longest, starts, chars, freqs.typecode, freqs.tobytes(), trie.tobytes()


def _freq(parts: tuple) -> tuple[CompactFreq, int]:
    total, longest, starts, chars, typecode, freqs, trie = parts
    table = array(typecode)
    table.frombytes(freqs)
    trie = marisa_trie.Trie().frombytes(trie)
    return CompactFreq(trie, table, longest, starts, chars, total), total


def load(path: str, tmp_dir: str | None = None) -> tuple[CompactFreq, int]:
    """:func:`build`, read from the cache file when it was made from this very dictionary."""
    return _freq(_cached(path, tmp_dir, "trie", _freq_parts))


def _cached(path: str, tmp_dir: str | None, kind: str, make) -> tuple:
    """``make(path)``, or what it made from this very file (same size and mtime) before."""
    stat = os.stat(path)
    key = (FORMAT, kind, path, stat.st_size, stat.st_mtime_ns)
    name = hashlib.md5(path.encode(), usedforsecurity=False).hexdigest()[:16]
    cache = os.path.join(tmp_dir or tempfile.gettempdir(), f"coursebot-jieba.{name}.{kind}")
    try:
        with open(cache, "rb") as f:
            cached_key, parts = marshal.load(f)
        if cached_key == key:
            return parts
    except (OSError, ValueError, EOFError, TypeError):
        pass
    parts = make(path)
    _trim_heap()
    try:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(cache))
        with os.fdopen(fd, "wb") as f:
            marshal.dump((key, parts), f)
        os.replace(tmp, cache)
    except OSError:
        log.debug("could not write the jieba cache %s", cache, exc_info=True)
    return parts


def _trim_heap() -> None:
    # glibc keeps the ~18 MB a build freed (the trie builder's, the parsed lines); hand it back
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


#: ``jieba.analyse``'s ``KeywordExtractor.STOP_WORDS`` (importing jieba.analyse costs ~97 MB:
#: its IDF dict and jieba.posseg's dict of every word's part of speech)
_KEYWORD_STOP_WORDS = """
    the of is and to in that we for an are by be as on with can if from which you it this then at
    have all not one has or
"""
KEYWORD_STOP_WORDS = frozenset(_KEYWORD_STOP_WORDS.split())


class CompactIDF:
    """``jieba.analyse``'s IDF table (word → idf; the median for a word it lacks) in a trie."""

    __slots__ = ("trie", "idfs", "median")

    def __init__(self, trie: marisa_trie.Trie, idfs: array, median: float) -> None:
        self.trie, self.idfs, self.median = trie, idfs, median

    def get(self, word: str) -> float:
        """The idf of a word, the median idf when the table lacks it."""
        key = self.trie.get(word)
        return self.idfs[key] if key is not None else self.median


def default_idf_file() -> str:
    """The path of ``jieba.analyse``'s bundled IDF table (idf.txt)."""
    return os.path.join(os.path.dirname(default_dictionary()), "analyse", "idf.txt")


def _idf_parts(path: str) -> tuple:
    with open(path, "rb") as f:
        lines = f.read().decode("utf-8").splitlines()  # as jieba.analyse.IDFLoader reads it
    trie = marisa_trie.Trie(line.strip().split(" ")[0] for line in lines)
    idfs = array("d", bytes(8 * len(trie)))
    for line in lines:  # a repeated word keeps its last idf, as in IDFLoader's dict
        word, idf = line.strip().split(" ")
        idfs[trie[word]] = float(idf)
    median = sorted(idfs)[len(idfs) // 2]
    return median, idfs.tobytes(), trie.tobytes()


def idf_table(path: str | None = None, tmp_dir: str | None = None) -> CompactIDF:
    """The IDF table of ``jieba.analyse`` (its bundled idf.txt by default), cached on disk."""
    median, idfs, trie = _cached(path or default_idf_file(), tmp_dir, "idf", _idf_parts)
    table = array("d")
    table.frombytes(idfs)
    return CompactIDF(marisa_trie.Trie().frombytes(trie), table, median)


def extract_tags(tok: Any, idf: CompactIDF, sentence: str, top_k: int | None = 20) -> list[str]:
    """``jieba.analyse.extract_tags(sentence, topK=top_k)`` (TF-IDF), read from ``idf``."""
    freq: dict[str, float] = {}
    for w in tok.cut(sentence):
        if len(w.strip()) < 2 or w.lower() in KEYWORD_STOP_WORDS:
            continue
        freq[w] = freq.get(w, 0.0) + 1.0
    total = sum(freq.values())
    for k in freq:
        freq[k] *= idf.get(k) / total
    tags = sorted(freq, key=freq.__getitem__, reverse=True)
    return tags[:top_k] if top_k else tags


def _tokenizer_class() -> type:
    jieba = import_jieba()

    class CompactTokenizer(jieba.Tokenizer):
        """A ``jieba.Tokenizer`` whose ``FREQ`` is a :class:`CompactFreq`: the same tokens."""

        def initialize(self, dictionary: str | None = None) -> None:
            """Load the compact dictionary (cached on disk) once."""
            if dictionary:
                path = jieba._get_abs_path(dictionary)
                if path != self.dictionary:
                    self.dictionary, self.initialized = path, False
            with self.lock:
                if self.initialized:
                    return
                path = self.dictionary or default_dictionary()
                self.FREQ, self.total = load(path, self.tmp_dir)
                self.initialized = True

        def get_DAG(self, sentence: str) -> dict[int, list[int]]:
            """Each position's word ends, as jieba's: one trie prefix search a position."""
            self.check_initialized()
            freq = self.FREQ
            if not freq.exact:
                return super().get_DAG(sentence)
            prefixes, longest, starts = freq.trie.prefixes, freq.longest, freq.starts
            dag = {}
            for k, char in enumerate(sentence):
                if char in starts:
                    words = prefixes(sentence[k : k + longest])
                    dag[k] = [k - 1 + len(w) for w in words] if words else [k]
                else:  # at most a one-character word here
                    dag[k] = [k]
            return dag

        def calc(self, sentence: str, DAG: dict, route: dict) -> None:  # noqa: N803
            """jieba's best route, its frequencies read by trie key (no prefix lookups)."""
            freq = self.FREQ
            if not freq.exact:
                return super().calc(sentence, DAG, route)
            key_of, freqs, one = freq.trie.get, freq.freqs, freq.chars
            logtotal = math.log(self.total)  # exact: the total the dictionary was loaded with
            unknown = math.log(1) - logtotal
            n = len(sentence)
            route[n] = (0, 0)
            for idx in range(n - 1, -1, -1):
                ends = DAG[idx]
                if len(ends) == 1 and ends[0] == idx:  # most positions: one character
                    route[idx] = (one.get(sentence[idx], unknown) + route[idx + 1][0], idx)
                    continue
                best = None
                for x in ends:
                    if x == idx:
                        here = (one.get(sentence[idx], unknown) + route[idx + 1][0], x)
                    else:
                        k = key_of(sentence[idx : x + 1])
                        f = freqs[k] if k is not None else 1
                        here = (math.log(f) - logtotal + route[x + 1][0], x)
                    if best is None or here > best:
                        best = here
                route[idx] = best

        def cut_for_search(self, sentence: str, HMM: bool = True) -> Iterator[str]:  # noqa: N803
            """jieba's search cut; a word's 2- and 3-grams looked up in the trie alone."""
            if not self.FREQ.exact:
                yield from super().cut_for_search(sentence, HMM)
                return
            trie = self.FREQ.trie  # every word in it has a frequency, so "in" means FREQ > 0
            for w in self.cut(sentence, HMM=HMM):
                if len(w) > 2:
                    for i in range(len(w) - 1):
                        if (gram := w[i : i + 2]) in trie:
                            yield gram
                if len(w) > 3:
                    for i in range(len(w) - 2):
                        if (gram := w[i : i + 3]) in trie:
                            yield gram
                yield w

    return CompactTokenizer


def default_dictionary() -> str:
    """The path of jieba's bundled dictionary (dict.txt)."""
    spec = importlib.util.find_spec("jieba")
    return os.path.join(os.path.dirname(spec.origin), "dict.txt")


_lock = threading.Lock()
_class: type | None = None


def tokenizer_class() -> type:
    """The ``jieba.Tokenizer`` subclass (jieba is imported on the first call)."""
    global _class
    with _lock:
        if _class is None:
            _class = _tokenizer_class()
        return _class


def tokenizer(dictionary: str | None = None) -> Any:
    """A new initialised :class:`CompactTokenizer` (jieba's bundled dictionary by default)."""
    tok = tokenizer_class()(dictionary)
    tok.initialize()
    return tok
