"""jieba on the compact (trie) dictionary gives exactly stock jieba's tokens and keywords."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bot import jieba_compact

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compact():
    return jieba_compact.tokenizer()


@pytest.fixture(scope="module")
def stock():
    jieba = jieba_compact.import_jieba()
    jieba.setLogLevel(30)
    tok = jieba.Tokenizer()
    tok.initialize()
    return tok


def _strings(node, out: list[str]) -> list[str]:
    if isinstance(node, str):
        out.append(node)
    elif isinstance(node, dict):
        for value in node.values():
            _strings(value, out)
    elif isinstance(node, list):
        for value in node:
            _strings(value, out)
    return out


def _corpus() -> list[str]:
    """FAQ pairs and entries, the demo catalogue, and 300 random zh/en/mixed strings."""
    texts = _strings(json.loads((ROOT / "tests/data/faq_pairs.json").read_text("utf-8")), [])
    texts += _strings(json.loads((ROOT / "bot/demo_catalog.json").read_text("utf-8")), [])
    lines = Path(jieba_compact.default_dictionary()).read_text("utf-8").splitlines()
    words = [line.split(" ")[0] for line in lines[::53]]
    rnd = random.Random(15)
    for _ in range(300):
        parts = [
            rnd.choice(
                [
                    rnd.choice(words),
                    rnd.choice(words).upper(),
                    rnd.choice("的了吗，。！？ abcXYZ123-_.#%&+\n\t"),
                    chr(rnd.randint(0x4E00, 0x9FD5)),
                    rnd.choice(["Python", "数据分析", "data science", "理财", "C++", "3.5折"]),
                ]
            )
            for _ in range(rnd.randint(1, 14))
        ]
        texts.append("".join(parts))
    return texts


CORPUS = _corpus()


def test_the_corpus_is_varied():
    assert len(CORPUS) > 400 and sum(map(len, CORPUS)) > 5000


def test_the_same_tokens_as_stock_jieba(compact, stock):
    def cuts(tok, text: str):
        return (
            tok.lcut(text),
            tok.lcut(text, HMM=False),
            tok.lcut(text, cut_all=True),
            tok.lcut_for_search(text),
            tok.lcut_for_search(text.lower()),  # as bot.textindex.tokens cuts
            tok.lcut_for_search(text, HMM=False),
            tok.get_DAG(text),
        )

    for text in CORPUS:
        assert cuts(compact, text) == cuts(stock, text), text


def test_freq_answers_as_jiebas_dict(compact, stock):
    probes = ["中", "中国", "中国人民解放", "中国人民解放军", "国人民", "", "zz", "a", "Python"]
    probes += [text[:n] for text in CORPUS[:100] for n in (1, 2, 3, 4)]
    for frag in probes:
        assert (frag in compact.FREQ) == (frag in stock.FREQ), frag
        assert compact.FREQ.get(frag) == stock.FREQ.get(frag), frag
        assert compact.FREQ.get(frag, 1) == stock.FREQ.get(frag, 1), frag
    assert compact.total == stock.total
    with pytest.raises(KeyError):
        compact.FREQ["不是词的一串"]


def test_the_same_keywords_as_jieba_analyse(compact):
    import jieba.analyse

    idf = jieba_compact.idf_table()
    for text in ["\n".join(CORPUS[i : i + 12]) for i in range(0, len(CORPUS), 12)]:
        want = jieba.analyse.extract_tags(text, topK=16)
        assert jieba_compact.extract_tags(compact, idf, text, 16) == want


def _dictionary(folder: Path, lines: list[str]) -> str:
    path = folder / "dict.txt"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return str(path)


SMALL = ["北京 100 ns", "北京大学 50 nt", "大学 80 n", "学生 60 n", "生活 40 n", "天 10 n"]


def test_a_custom_dictionary_words_added_and_zero_frequencies(tmp_path):
    jieba = jieba_compact.import_jieba()
    path = _dictionary(tmp_path, [*SMALL, "活动 0 n"])
    compact = jieba_compact.tokenizer_class()(path)
    compact.tmp_dir = str(tmp_path)
    stock = jieba.Tokenizer(path)
    stock.tmp_dir = str(tmp_path)
    texts = ["北京大学生活动", "大学生活天天", "北京 大学 abc123"]
    for tok in (compact, stock):
        tok.initialize()
    assert not compact.FREQ.exact  # a zero frequency: jieba's own DAG walk
    assert [compact.lcut_for_search(t) for t in texts] == [stock.lcut_for_search(t) for t in texts]
    for tok in (compact, stock):
        tok.add_word("大学生活", 500)  # (not del_word: it adds to finalseg's global state)
        tok.add_word("天天", 30)
    assert [compact.lcut(t) for t in texts] == [stock.lcut(t) for t in texts]
    assert compact.FREQ["大学生活"] == 500 and compact.FREQ["大学生"] == 0


def test_the_trie_is_cached_next_to_jiebas_cache_and_rebuilt_when_the_file_changes(
    tmp_path, monkeypatch
):
    path = _dictionary(tmp_path, SMALL)
    first, total = jieba_compact.load(path, str(tmp_path))
    assert total == 340 and list(tmp_path.glob("coursebot-jieba.*.trie"))

    def no_build(_path):
        raise AssertionError("built again")

    monkeypatch.setattr(jieba_compact, "_freq_parts", no_build)
    again, _ = jieba_compact.load(path, str(tmp_path))
    assert again.get("北京大学") == 50 and again.get("北京大") == 0
    monkeypatch.undo()
    _dictionary(tmp_path, [*SMALL, "北京大学生 7 n"])
    os.utime(path, ns=(1, 1))
    changed, total = jieba_compact.load(path, str(tmp_path))
    assert changed.get("北京大学生") == 7 and total == 347


PROBE = """
import sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
from bot import jieba_compact
jieba_compact.tokenizer()  # builds the cache file if there is none
before = rss()
tok = jieba_compact.tokenizer()
print(rss() - before, "pkg_resources" in sys.modules, tok.lcut("我来到北京清华大学"))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS")
def test_the_dictionary_takes_a_few_mb_and_jieba_loads_without_pkg_resources():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    )
    grown, pkg_resources, words = out.stdout.rsplit("\n", 1)[0].split(" ", 2)
    assert float(grown) < 15  # stock jieba's dict: ~62 MB
    assert pkg_resources == "False"
    assert words == "['我', '来到', '北京', '清华大学']"
