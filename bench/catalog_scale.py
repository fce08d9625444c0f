"""Chat latency against catalogue size: 10, 1,000 and 10,000 courses, 100,000 learners.

    .venv/bin/python bench/catalog_scale.py                      # SQLite (temporary files)
    .venv/bin/python bench/catalog_scale.py --pg postgresql+asyncpg://postgres@127.0.0.1:55432/x
    .venv/bin/python bench/catalog_scale.py --sizes 10000 --repeat 15 --train

Each size gets a fresh database (on PostgreSQL the public schema of `--pg` is WIPED): generated
courses in 12 categories, 100,000 learners with a Telegram identity and 100,000 interactions
(views, recommendation clicks, purchases with their enrolments). Then every learner-facing update
(/start, /catalog, a category page, a course card, /search, /recommend, /mycourses, buy) goes
`--repeat` times through the real dispatcher (`app.dispatcher.dispatch`), each with a fresh
update key, from a learner with a history. Printed: median and first call, in ms, and the median
CPU time of the process (threads included).

The app is built as `coursebot run` builds it; the catalogue's search index is warmed in the
background as the runner does, and the first call is taken once `services.catalog_index`
reports it ready (`--cold` takes it at once instead). `--train` trains the recommender first
(otherwise popularity serves, as on a new installation).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, select, text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from bot.bootstrap import build_app  # noqa: E402
from bot.core import Incoming  # noqa: E402
from bot.settings import Settings  # noqa: E402
from storage.models import (  # noqa: E402
    Category,
    Course,
    Enrolment,
    Identity,
    Interaction,
    Learner,
)

LEARNERS, INTERACTIONS = 100_000, 100_000
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
USER = "7000001"
CATEGORIES = [
    ("programming", "编程", "Programming", ["Python", "Java", "Go", "Rust", "前端", "算法"]),
    ("data", "数据", "Data", ["数据分析", "SQL", "机器学习", "Excel", "可视化", "统计"]),
    ("design", "设计", "Design", ["Photoshop", "UI", "插画", "排版", "Figma", "摄影"]),
    ("business", "商业", "Business", ["营销", "管理", "财务", "创业", "谈判", "品牌"]),
    ("language", "语言", "Languages", ["英语", "日语", "口语", "写作", "雅思", "法语"]),
    ("music", "音乐", "Music", ["钢琴", "吉他", "乐理", "唱歌", "作曲", "架子鼓"]),
    ("health", "健康", "Health", ["瑜伽", "健身", "营养", "跑步", "冥想", "睡眠"]),
    ("career", "职场", "Career", ["简历", "面试", "沟通", "演讲", "时间管理", "领导力"]),
    ("finance", "理财", "Finance", ["基金", "股票", "保险", "记账", "税务", "房产"]),
    ("parenting", "育儿", "Parenting", ["早教", "绘本", "辅导", "心理", "习惯", "阅读"]),
    ("writing", "写作", "Writing", ["小说", "文案", "公众号", "诗歌", "剧本", "新闻"]),
    ("cooking", "烹饪", "Cooking", ["家常菜", "烘焙", "甜点", "川菜", "茶艺", "咖啡"]),
]
LEVELS = [
    ("入门", "Basics"), ("进阶", "Intermediate"), ("实战", "in Practice"), ("高级", "Advanced"),
]
UPDATES = ["/start", "/catalog", "category page", "card", "/search", "/recommend", "/mycourses",
           "buy"]


def course_rows(n: int, category_ids: list[int], rng: random.Random) -> list[dict]:
    """`n` generated courses spread over the categories (Chinese and English text)."""
    rows = []
    for i in range(n):
        slot = i % len(CATEGORIES)
        _, cat_zh, cat_en, topics = CATEGORIES[slot]
        topic = topics[(i // len(CATEGORIES)) % len(topics)]
        zh, en = LEVELS[(i // 72) % len(LEVELS)]
        rows.append(dict(
            category_id=category_ids[slot],
            title_zh=f"{topic}{zh} 第{i + 1}期",
            title_en=f"{topic} {en} #{i + 1}",
            description_zh=f"{cat_zh}课程：{topic}{zh}，{rng.choice(topics)}与{rng.choice(topics)}"
                           f"的直播讲解和练习。",
            description_en=f"A live {cat_en.lower()} course on {topic}: {en.lower()} lessons.",
            instructor_name=f"老师{i % 300}",
            price_stars=50 + i % 200,
            price_fen=990 + 100 * (i % 50),
            active=True,
            created_at=NOW - timedelta(days=i % 400),
            updated_at=NOW - timedelta(days=i % 400),
        ))
    return rows


async def bulk(session, model, rows: list[dict], size: int = 2000) -> None:
    """Insert rows in chunks (Core, no ORM objects)."""
    for start in range(0, len(rows), size):
        await session.execute(insert(model), rows[start:start + size])


async def fill(app, n_courses: int, seed: int = 1) -> None:
    """Catalogue, learners, identities, interactions and enrolments (see the module doc)."""
    rng = random.Random(seed)
    async with app.uow() as uow:
        s = uow.session
        await bulk(s, Category, [dict(slug=slug, name_zh=zh, name_en=en, position=p)
                                 for p, (slug, zh, en, _) in enumerate(CATEGORIES)])
        category_ids = list((await s.execute(select(Category.id).order_by(Category.id))).scalars())
        await bulk(s, Course, course_rows(n_courses, category_ids, rng))
        course_ids = list((await s.execute(select(Course.id).order_by(Course.id))).scalars())
        await bulk(s, Learner, [dict(id=n + 1, display_name=f"L{n}", locale="zh",
                                     announcements_opt_out=False, created_at=NOW)
                                for n in range(LEARNERS)])
        await bulk(s, Identity, [dict(learner_id=n + 1, channel="telegram",
                                      user_ref=str(7_000_001 + n), last_seen_at=NOW)
                                 for n in range(LEARNERS)])
        interactions, enrolled = [], set()
        weights = [1.0 / (k + 1) for k in range(len(course_ids))]
        picks = rng.choices(course_ids, weights=weights, k=INTERACTIONS)
        for course in picks:
            learner = rng.randrange(1, LEARNERS + 1)
            roll = rng.random()
            kind = "view" if roll < 0.7 else "rec_click" if roll < 0.8 else "purchase"
            if kind == "purchase":
                enrolled.add((learner, course))
            at = NOW - timedelta(minutes=rng.randrange(120 * 24 * 60))
            interactions.append(dict(learner_id=learner, course_id=course, kind=kind,
                                     created_at=at))
        mine = course_ids[: min(3, len(course_ids))]
        for course in mine:
            enrolled.add((1, course))
            interactions.append(dict(learner_id=1, course_id=course, kind="purchase",
                                     created_at=NOW - timedelta(days=3)))
        await bulk(s, Interaction, interactions)
        await bulk(s, Enrolment, [dict(learner_id=u, course_id=c, created_at=NOW)
                                  for u, c in sorted(enrolled)])
        await uow.commit()


def updates(course_id: int, category_id: int) -> dict[str, tuple[str, str, str]]:
    """(kind, command or payload, args) of each learner-facing update."""
    return {
        "/start": ("command", "start", ""),
        "/catalog": ("command", "catalog", ""),
        "category page": ("button", f"cat:{category_id}:0", ""),
        "card": ("button", f"course:{course_id}", ""),
        "/search": ("command", "search", "Python 入门"),
        "/recommend": ("command", "recommend", ""),
        "/mycourses": ("command", "mycourses", ""),
        "buy": ("button", f"buy:{course_id}", ""),
    }


def incoming(kind: str, what: str, args: str, n: int) -> Incoming:
    """One Telegram update from the bench learner."""
    if kind == "button":
        return Incoming("telegram", USER, f"bench:{n}", "button", payload=what, locale="zh")
    return Incoming("telegram", USER, f"bench:{n}", "command", command=what, args=args,
                    text=f"/{what} {args}".strip(), locale="zh")


async def measure(app, repeat: int) -> dict[str, tuple[float, float]]:
    """(median, first) in ms of each update, `repeat` dispatches each."""
    async with app.uow() as uow:
        course = (await uow.session.execute(
            select(Course.id, Course.category_id).order_by(Course.id.desc()).limit(1))).first()
    out, n = {}, 0
    for name, (kind, what, args) in updates(course[0], course[1]).items():
        runs, cpu = [], []
        for _ in range(repeat):
            n += 1
            start, used = time.perf_counter(), time.process_time()
            await app.dispatcher.dispatch(incoming(kind, what, args, n))
            runs.append((time.perf_counter() - start) * 1e3)
            cpu.append((time.process_time() - used) * 1e3)
        out[name] = (statistics.median(runs), runs[0], statistics.median(cpu))
    return out


async def wait_warm(app, cold: bool) -> float:
    """Start the background warm-up as the runner does; wait until ready unless `cold`."""
    from bot import textindex

    started = time.perf_counter()
    textindex.warm_up_in_background()
    ready = _catalog_ready_hook()
    if not cold:
        while not (textindex.is_ready() and await ready(app)):
            await asyncio.sleep(0.05)
    return time.perf_counter() - started


def _catalog_ready_hook():
    """`services.catalog_index.index_ready(uow)` when it exists (the scale work), else True."""
    try:
        from services.catalog_index import index_ready as check
    except ImportError:  # before the catalogue index existed
        check = None

    async def ready(app) -> bool:
        if check is None:
            return True
        async with app.uow() as uow:
            return await check(uow)

    return ready


async def reset_pg(url: str) -> None:
    """Empty the public schema of the bench database."""
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


async def train(app) -> None:
    """Train and load the recommender on the stored interactions."""
    from services.recommendations import training_data

    async with app.uow() as uow:
        interactions, catalog = await training_data(uow)
    recommender = app.deps["recommender"]
    await asyncio.to_thread(recommender.train, interactions, catalog)


async def one_size(n_courses: int, args, folder: Path) -> tuple[dict, float]:
    """Fill a fresh database with `n_courses` courses and measure it."""
    if args.pg:
        await reset_pg(args.pg)
        url = args.pg
    else:
        url = f"sqlite+aiosqlite:///{folder / f'scale{n_courses}.db'}"
    model = folder / f"model{n_courses}.npz"
    settings = Settings(database_url=url, recommender_model_path=str(model), _env_file=None)
    app = await build_app(settings)
    try:
        await fill(app, n_courses)
        if args.train:
            await train(app)
        await app.close()
        app = await build_app(settings)  # start-up as a restart after the data arrived
        warm = await wait_warm(app, args.cold)
        return await measure(app, args.repeat), warm
    finally:
        await app.close()


def print_table(title: str, results: dict[int, dict], warm: dict[int, float]) -> None:
    """Median (first call) in ms per update and catalogue size."""
    sizes = sorted(results)
    print(f"\n{title}: median of {ARGS.repeat} dispatches, first call in brackets, median CPU "
          "time of the process in square brackets (ms; CPU is what a busy machine inflates least)")
    print("| update | " + " | ".join(f"{s:,} courses" for s in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name in UPDATES:
        cells = [
            f"{results[s][name][0]:.1f} ({results[s][name][1]:.0f}) [{results[s][name][2]:.1f}]"
            for s in sizes
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| index warm-up (background) | " + " | ".join(f"{warm[s]:.1f} s" for s in sizes)
          + " |")


async def main() -> None:
    """Every size on the chosen database, then the table."""
    logging.basicConfig(level=logging.WARNING)
    results, warm = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for n in ARGS.sizes:
            started = time.perf_counter()
            results[n], warm[n] = await one_size(n, ARGS, Path(folder))
            print(f"{n:,} courses done in {time.perf_counter() - started:.0f} s", flush=True)
    print_table("PostgreSQL" if ARGS.pg else "SQLite", results, warm)


def parse() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", help="PostgreSQL URL (its public schema is wiped)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1_000, 10_000])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--train", action="store_true", help="train the recommender first")
    parser.add_argument("--cold", action="store_true", help="do not wait for the warm-up")
    return parser.parse_args()


if __name__ == "__main__":
    ARGS = parse()
    asyncio.run(main())
