from datetime import UTC, datetime

import numpy as np

from recommender.fallback import ContentIndex, IndexCache, cold_start, tokenize
from recommender.service import CourseInfo

T = datetime(2025, 1, 1, tzinfo=UTC)


def course(cid, cat, title_zh, title_en, desc_zh="", desc_en=""):
    return CourseInfo(cid, cat, cat, cat, title_zh, title_en, desc_zh, desc_en, True, T)


CATALOG = [
    course(1, "data", "Python数据分析入门", "Intro to data analysis", "用pandas清洗数据"),
    course(2, "data", "SQL数据分析实战", "SQL for data analysis", "窗口函数与报表"),
    course(3, "finance", "基金定投指南", "Index fund investing", "长期理财"),
    course(4, "video", "短视频剪辑", "Short video editing", "剪映与抖音运营"),
]


def test_tokenize_mixes_chinese_and_english():
    tokens = tokenize("Python数据分析入门：用 pandas 做 Data Analysis 的课程")
    assert {"python", "数据分析", "pandas", "data", "analysis"} <= set(tokens)
    assert "的" not in tokens and "课程" not in tokens


def test_tfidf_finds_the_related_course_in_either_language():
    index = ContentIndex(CATALOG)
    sims = index.similarity([2, 3, 4, 99], [1])
    assert sims[0, 0] > 0.2 and sims[0, 0] > sims[1, 0] and sims[0, 0] > sims[2, 0]
    assert sims[3, 0] == 0.0
    np.testing.assert_allclose(index.similarity([1], [1]), [[1.0]])


def test_cache_rebuilds_only_on_text_change():
    cache = IndexCache()
    first = cache.get(CATALOG)
    assert cache.get(list(CATALOG)) is first
    assert cache.get(CATALOG[:3]) is not first


def test_cold_start_prefers_browsed_category_and_is_never_empty():
    index = ContentIndex(CATALOG)
    got = cold_start(CATALOG[1:], [], {"finance"}, {}, index, T, 5)
    assert [s.course_id for s in got][0] == 3 and len(got) == 3
    assert got[0].reason in ("new_in_category", "popular_in_category", "in_category")
    assert got[0].reason_category == "finance"
    got = cold_start(CATALOG[1:], [1], {"data"}, {4: 50.0}, index, T, 1)
    assert got[0].course_id == 2 and got[0].reason == "because_you_took"
    assert got[0].reason_course_id == 1
