"""`/stats` and chart rendering time on 100,000 interactions and 10,000 learners.

    .venv/bin/python bench/stats.py                       # SQLite (a temporary file)
    .venv/bin/python bench/stats.py --pg postgresql+asyncpg://postgres@127.0.0.1:55432/bench

Fills a fresh database with the demo catalog, 10,000 learners, 100,000 interactions (views,
purchases with their payments, recommendation clicks, attendance), 60 sessions and ratings, then
times the figures (`services.stats.report`, all courses and one course, 30 days and all time)
and the chart (`services.charts.render`), each the median of several runs.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, text  # noqa: E402

from bot.bootstrap import build_app  # noqa: E402
from bot.demo import seed_demo  # noqa: E402
from bot.settings import Settings  # noqa: E402
from services import charts, stats  # noqa: E402
from storage.models import (  # noqa: E402
    Attendance,
    Enrolment,
    Interaction,
    Learner,
    LiveSession,
    Payment,
    Rating,
)

LEARNERS, INTERACTIONS, SESSIONS = 10_000, 100_000, 60
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


async def fill(app, rng: random.Random) -> None:
    async with app.uow() as uow:
        await seed_demo(uow)
        await uow.commit()
    async with app.uow() as uow:
        s = uow.session
        courses = [(c.id, c.price_stars) for c in await uow.courses.all()]
        await s.execute(
            insert(Learner),
            [
                dict(
                    display_name=f"L{n}", locale="zh", announcements_opt_out=False, created_at=NOW
                )
                for n in range(LEARNERS)
            ],
        )
        first = await s.scalar(text("SELECT min(id) FROM learners"))
        learner_ids = list(range(first, first + LEARNERS))
        interactions, payments, enrolled = [], [], set()
        while len(interactions) < INTERACTIONS:
            learner = rng.choice(learner_ids)
            course, price = rng.choice(courses)
            at = NOW - timedelta(minutes=rng.randrange(120 * 24 * 60))
            roll = rng.random()
            kind = "view" if roll < 0.7 else "rec_click" if roll < 0.8 else "purchase"
            if kind == "purchase":
                if (learner, course) in enrolled:
                    continue
                enrolled.add((learner, course))
                currency = "XTR" if rng.random() < 0.5 else "CNY"
                payments.append(
                    dict(
                        provider="bench",
                        provider_charge_id=f"b{len(payments)}",
                        learner_id=learner,
                        course_id=course,
                        channel="telegram",
                        user_ref=str(learner),
                        currency=currency,
                        amount=price if currency == "XTR" else price * 70,
                        status="paid",
                        note="",
                        created_at=at,
                    )
                )
            interactions.append(
                dict(learner_id=learner, course_id=course, kind=kind, created_at=at)
            )
        sessions = [
            dict(
                course_id=courses[n % len(courses)][0],
                title=f"第 {n + 1} 讲",
                starts_at=NOW - timedelta(days=n),
                duration_minutes=90,
                url="https://x/",
                status="scheduled",
                created_at=NOW,
            )
            for n in range(SESSIONS)
        ]
        for table, rows in (
            (Interaction, interactions),
            (Payment, payments),
            (LiveSession, sessions),
        ):
            for start in range(0, len(rows), 2000):
                await s.execute(insert(table), rows[start : start + 2000])
        await s.execute(
            insert(Enrolment),
            [dict(learner_id=u, course_id=c, created_at=NOW) for u, c in sorted(enrolled)],
        )
        by_course: dict[int, list[int]] = {}
        for u, c in enrolled:
            by_course.setdefault(c, []).append(u)
        session_rows = (await s.execute(text("SELECT id, course_id FROM live_sessions"))).all()
        attendance = []
        for sid, cid in session_rows:
            for u in by_course.get(cid, [])[: rng.randrange(1, 200)]:
                attendance.append(
                    dict(
                        session_id=sid,
                        learner_id=u,
                        course_id=cid,
                        opens=1,
                        first_at=NOW,
                        last_at=NOW,
                    )
                )
        ratings = []
        for u, c in sorted(enrolled)[::4]:
            parts = [rng.randint(1, 5) for _ in range(3)]
            ratings.append(
                dict(
                    learner_id=u,
                    course_id=c,
                    content=parts[0],
                    instructor=parts[1],
                    interaction=parts[2],
                    score=0.4 * parts[0] + 0.3 * parts[1] + 0.3 * parts[2],
                    created_at=NOW - timedelta(days=rng.randrange(90)),
                    updated_at=NOW - timedelta(days=rng.randrange(90)),
                )
            )
        for table, rows in ((Attendance, attendance), (Rating, ratings)):
            for start in range(0, len(rows), 2000):
                await s.execute(insert(table), rows[start : start + 2000])
        await uow.commit()
    print(
        f"  filled: {LEARNERS} learners, {len(interactions)} interactions, "
        f"{len(payments)} payments, {len(attendance)} attendance rows, {len(ratings)} ratings"
    )


async def timed(fn, runs: int = 5) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = await fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


async def bench(url: str, label: str) -> None:
    settings = Settings(
        database_url=url,
        _env_file=None,
        recommender_model_path=f"{tempfile.gettempdir()}/no-model.npz",
    )
    app = await build_app(settings)
    try:
        print(f"{label}:")
        await fill(app, random.Random(13))
        for scope, period in ((None, "30d"), (None, "all"), ([1], "30d")):

            async def run(scope=scope, period=period):
                async with app.uow() as uow:
                    return await stats.report(uow, scope, period, NOW, settings.zone)

            seconds, report = await timed(run)
            name = "all courses" if scope is None else f"course {scope[0]}"
            print(
                f"  /stats figures, {name}, {period}: {seconds * 1000:7.1f} ms "
                f"(buyers {report.buyers}, sessions {len(report.sessions)})"
            )
        from bot.i18n import Translator

        t = Translator("zh", settings.zone)
        data = charts.chart_data(report, "全部课程", t, settings.zone)
        charts.render(data)  # font loading happens once per process
        seconds, png = await timed(lambda: asyncio.to_thread(charts.render, data))
        print(
            f"  chart render: {seconds * 1000:7.1f} ms ({len(png) // 1024} KiB PNG, "
            f"CJK font: {charts.cjk_font()})"
        )
    finally:
        await app.close()


async def reset_pg(url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", help="a PostgreSQL URL (its public schema is wiped)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(bench(f"sqlite+aiosqlite:///{folder}/bench.db", "SQLite"))
    if args.pg:
        asyncio.run(reset_pg(args.pg))
        asyncio.run(bench(args.pg, "PostgreSQL"))


if __name__ == "__main__":
    main()
