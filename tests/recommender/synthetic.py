"""Synthetic course-purchase data: planted taste groups, long-tail popularity, noise, fixed seed.

Every course belongs to one of ``n_groups`` categories and has a Zipf-like popularity weight
(shuffled, so each category has a head and a tail). A learner has one favourite category; each
purchase comes from that category with probability ``taste`` (drawn per learner), otherwise from
the whole catalogue, both in proportion to popularity. Popularity therefore explains a good share
of purchases (it is a real baseline); knowing the learner's taste explains more. Ratings are
higher inside the favourite category, with Gaussian noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Row = tuple[int, int, float, float | None]


@dataclass(frozen=True, slots=True)
class Synthetic:
    """Generated rows plus the planted structure, for tests that want to peek."""

    rows: list[Row]
    item_group: dict[int, int]
    user_group: dict[int, int]


def _pick(rng, weights: np.ndarray, taken: np.ndarray) -> int:
    p = np.where(taken, 0.0, weights)
    return int(rng.choice(len(p), p=p / p.sum()))


def generate(
    n_users: int = 600,
    n_items: int = 300,
    n_groups: int = 8,
    zipf: float = 1.0,
    taste: tuple[float, float] = (0.45, 0.8),
    seed: int = 7,
) -> Synthetic:
    """Generate ``(user, item, stars, timestamp)`` rows with a fixed seed."""
    rng = np.random.default_rng(seed)
    item_group = rng.integers(0, n_groups, n_items)
    pop = (1.0 / np.arange(1, n_items + 1) ** zipf)[rng.permutation(n_items)]
    rows: list[Row] = []
    user_group = {}
    for user in range(1, n_users + 1):
        group = int(rng.integers(0, n_groups))
        user_group[user] = group
        share = rng.uniform(*taste)
        count = int(np.clip(rng.lognormal(2.4, 0.6), 5, min(60, n_items // 2)))
        taken = np.zeros(n_items, dtype=bool)
        start = rng.uniform(0, 1e8)
        for step in range(count):
            in_group = rng.random() < share
            weights = pop * (item_group == group) if in_group else pop
            if (weights * ~taken).sum() <= 0:
                weights = pop
            item = _pick(rng, weights, taken)
            taken[item] = True
            base = 4.3 if item_group[item] == group else 3.0
            stars = float(np.clip(np.rint(base + rng.normal(0, 0.9)), 1, 5))
            rows.append((user, item + 1, stars, start + step * 3600.0))
    groups = {i + 1: int(g) for i, g in enumerate(item_group)}
    return Synthetic(rows, groups, user_group)


def implicit(rows: list[Row]) -> list[Row]:
    """Drop the stars (every rating 1), as a purchase log would."""
    return [(u, i, 1.0, ts) for u, i, _, ts in rows]


TOPICS = [
    ("data", "数据分析", "Data analysis",
     "用 Python 和 SQL 做数据分析与可视化报表", "pandas SQL charts"),
    ("video", "短视频运营", "Short video", "抖音短视频脚本、拍摄与剪辑运营", "scripts editing"),
    ("finance", "个人理财", "Personal finance",
     "基金定投、保险配置与家庭资产规划", "funds insurance budget"),
    ("english", "职场英语", "Business English",
     "英文邮件写作、会议口语与面试表达", "email meetings interview"),
    ("design", "平面设计", "Graphic design", "海报排版、配色原理与品牌视觉", "posters colour"),
    ("parenting", "亲子教育", "Parenting", "儿童阅读习惯、情绪管理与亲子沟通", "reading talk"),
    ("career", "职业发展", "Career growth", "简历优化、求职面试与升职加薪", "resume promotion"),
    ("fitness", "健身减脂", "Fitness", "居家训练、饮食控制与减脂计划", "training diet fat loss"),
]


def catalog(syn: Synthetic, now, inactive_every: int = 0):
    """CourseInfo for every generated course; category = planted taste group (zh+en text)."""
    from datetime import timedelta

    from recommender.service import CourseInfo

    out = []
    for item, group in sorted(syn.item_group.items()):
        key, zh, en, desc_zh, desc_en = TOPICS[group % len(TOPICS)]
        out.append(CourseInfo(
            id=item, category=key, category_name_zh=zh, category_name_en=en,
            title_zh=f"{zh}实战第{item}期", title_en=f"{en} in practice #{item}",
            description_zh=desc_zh, description_en=f"{en}: {desc_en}",
            active=not (inactive_every and item % inactive_every == 0),
            created_at=now - timedelta(days=item % 90),
        ))
    return out


def interactions(rows: list[Row]):
    """Interactions for the service: a purchase for every row, a rating for 4-5 stars."""
    from datetime import UTC, datetime

    from recommender.signals import Interaction

    out = []
    for user, item, stars, ts in rows:
        at = datetime.fromtimestamp(ts or 0.0, tz=UTC)
        out.append(Interaction(user, item, "purchase", None, at))
        if stars >= 4:
            out.append(Interaction(user, item, "rating", stars, at))
    return out
