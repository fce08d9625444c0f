"""The one text index: lazy jieba, one analyser, BM25 search, cosine similarity, one cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from bot import textindex
from bot.textindex import STOPWORDS, IndexCache, TextIndex, cached_index, terms, tokens

ROOT = Path(__file__).resolve().parents[2]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\nprint(' '.join(sys.modules))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_importing_the_index_and_building_the_router_does_not_load_jieba():
    loaded = _modules_after(
        "import bot.textindex, recommender.fallback, services.questions, services.ratings\n"
        "import handlers\nhandlers.build_router()"
    )
    assert "bot.textindex" in loaded and "handlers.search" in loaded
    assert not {m for m in loaded if m == "jieba" or m.startswith("jieba.")}


def test_warm_up_in_background_is_one_daemon_thread():
    first = textindex.warm_up_in_background()
    assert first.daemon and textindex.warm_up_in_background() is first
    first.join(timeout=30)
    assert textindex.is_ready()


async def test_ready_waits_without_blocking_the_loop():
    await textindex.ready()
    assert textindex.is_ready()


def test_one_analyser_for_every_use():
    words = tokens("如何学习 Python 数据分析的课程？Courses for data analysis")
    assert {"python", "数据分析", "data", "analysis"} <= set(words)
    assert not set(words) & STOPWORDS
    assert "analysi" in terms("analysis") and "lesson" in STOPWORDS


def test_search_similarity_and_faq_share_the_weights():
    docs = {
        1: "Python 入门 Python for Beginners 变量 循环",
        2: "Python 数据分析 pandas data analysis",
        3: "基金定投 理财 index fund investing",
    }
    index = TextIndex(docs)
    assert [doc for doc, _ in index.search("python")][:2] == [1, 2]
    assert [doc for doc, _ in index.search("理财")] == [3]
    assert index.search("区块链") == []
    sims = index.similarity([1, 2, 3, 9], [2])
    assert sims[0, 0] > sims[2, 0] and sims[3, 0] == 0.0
    np.testing.assert_allclose(index.similarity([3], [3]), [[1.0]])
    doc, score = index.best("pandas 数据分析怎么学", 0.25)
    assert doc == 2 and 0.25 <= score <= 1.0
    assert index.best("怎么退款", 0.25) is None


def test_a_one_entry_faq_still_matches():
    index = TextIndex({7: "直播结束后有回放吗？"})
    assert index.best("错过了直播还能看录播回放吗？", 0.25)[0] == 7
    assert index.best("发票怎么开", 0.25) is None


def test_one_cache_policy_rebuilds_only_when_a_text_changes():
    cache = IndexCache(size=2)
    first = cache.get({1: "python 入门", 2: "excel"})
    assert cache.get({1: "python 入门", 2: "excel"}) is first
    changed = cache.get({1: "python 入门", 2: "excel 透视表"})
    assert changed is not first and cache.get({1: "python 入门", 2: "excel"}) is first
    assert cached_index({1: "a b"}) is cached_index({1: "a b"})


def test_tokens_and_keywords_are_stock_jiebas_on_the_compact_dictionary():
    import json

    import jieba
    import jieba.analyse

    pairs = json.loads((ROOT / "tests/data/faq_pairs.json").read_text("utf-8"))
    texts = [p["query"] for p in pairs["pairs"]] + [e["question"] for e in pairs["faq"]]
    for text in texts:
        stock = [w.strip() for w in jieba.lcut_for_search(text.lower())]
        want = [w for w in stock if w and textindex._WORD.search(w) and w not in STOPWORDS]
        assert tokens(text) == want, text
    answers = [e["answer"] for e in pairs["faq"]]
    stock = jieba.analyse.extract_tags("\n".join(answers), topK=16)
    want = [w for w in stock if len(w.strip()) > 1 and not w.isdigit()][:8]
    assert textindex.keywords(answers) == want and len(want) == 8
