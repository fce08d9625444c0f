"""Recommender figures: training time, vectorised top-10 vs the Surprise FAQ recipe, evaluation.

Usage: python bench/recommend.py [MOVIELENS_100K_u.data]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recommender.blend import Hybrid  # noqa: E402
from recommender.evaluate import evaluate_file  # noqa: E402
from recommender.service import CourseInfo, Recommender  # noqa: E402
from recommender.signals import Interaction, timed_pseudo_ratings  # noqa: E402

N_COURSES = 10_000
N_LEARNERS = 5_000
N_INTERACTIONS = 100_000
N_GROUPS = 20
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def make_interactions(seed: int = 1) -> list[Interaction]:
    """~100k purchases with taste groups and Zipf popularity over 10,000 courses."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, N_GROUPS, N_COURSES)
    pop = (1.0 / np.arange(1, N_COURSES + 1))[rng.permutation(N_COURSES)]
    per_user = N_INTERACTIONS // N_LEARNERS
    out = []
    for learner in range(1, N_LEARNERS + 1):
        taste = pop * (group == rng.integers(0, N_GROUPS))
        p = 0.6 * taste / taste.sum() + 0.4 * pop / pop.sum()
        items = rng.choice(N_COURSES, per_user, replace=False, p=p)
        out += [Interaction(learner, int(i) + 1, "purchase", None, T0 + timedelta(hours=j))
                for j, i in enumerate(items)]
    return out


def make_catalog() -> list[CourseInfo]:
    """Plain 10,000-course catalogue (text is irrelevant to these timings)."""
    return [
        CourseInfo(i, f"c{i % N_GROUPS}", f"类{i % N_GROUPS}", f"cat {i % N_GROUPS}",
                   f"课程{i}", f"Course {i}", "", "", True, T0 - timedelta(days=i % 365))
        for i in range(1, N_COURSES + 1)
    ]


def faq_get_top_n(algo, raw_uid: int, n: int = 10) -> list[tuple[int, float]]:
    """Surprise FAQ recipe, for one user: predict the anti-testset with algo.test, sort."""
    ts = algo.trainset
    inner = ts.to_inner_uid(raw_uid)
    rated = {j for j, _ in ts.ur[inner]}
    fill = ts.global_mean
    anti = [(raw_uid, ts.to_raw_iid(i), fill) for i in ts.all_items() if i not in rated]
    top_n = defaultdict(list)
    for uid, iid, _, est, _ in algo.test(anti):
        top_n[uid].append((iid, est))
    return sorted(top_n[raw_uid], key=lambda x: x[1], reverse=True)[:n]


def blend_top_n(fm, raw_uid: int, hist, exclude: set[int], n: int = 10) -> list[int]:
    """The shipped blend (SVD + sparse neighbours + popularity) for one learner, top-n."""
    scores = fm.blend(raw_uid, *hist)
    scores[[fm.item_index[i] for i in exclude if i in fm.item_index]] = -np.inf
    top = np.argpartition(-scores, n)[:n]
    return fm.item_ids[top[np.argsort(-scores[top])]].tolist()


def vectorised_top_n(fm, raw_uid: int, exclude: set[int], n: int = 10) -> list[tuple[int, float]]:
    """Same ranking (raw SVD estimate) from numpy factors in one expression plus a partition."""
    scores = fm.scores(raw_uid)
    scores[[fm.item_index[i] for i in exclude if i in fm.item_index]] = -np.inf
    top = np.argpartition(-scores, n)[:n]
    top = top[np.argsort(-scores[top])]
    return list(zip(fm.item_ids[top].tolist(), scores[top].tolist(), strict=True))


def same_ranking(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> bool:
    """Equal top-n scores (Surprise clips to 1..5, so compare clipped scores; ties may reorder)."""
    return np.allclose(np.clip([s for _, s in a], 1, 5), [s for _, s in b])


def timed(fn, repeat: int) -> float:
    """Median wall time of ``fn`` in seconds."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main(argv: list[str]) -> None:
    """Print the figures; evaluate a MovieLens-format file when given one."""
    console = Console()
    events = make_interactions()
    catalog = make_catalog()
    start = time.perf_counter()
    with Progress(TextColumn("train"), BarColumn(), TextColumn("{task.fields[stage]}"),
                  TimeElapsedColumn(), console=console, transient=True) as bars:
        task = bars.add_task("train", total=6, stage="")

        def tick(stage: str, done: int, total: int) -> None:
            bars.update(task, completed=done, total=total, stage=stage)

        fitted = Hybrid().fit(timed_pseudo_ratings(events), items=[c.id for c in catalog],
                              progress=tick)
    path = Path(tempfile.mkdtemp()) / "model.npz"
    fitted.factors.save(path)
    train_s = time.perf_counter() - start
    rec = Recommender(path)
    user = 42
    owned = {e.course_id for e in events if e.learner_id == user}
    ts = fitted.algo.trainset
    seen = {ts.to_raw_iid(j) for j, _ in ts.ur[ts.to_inner_uid(user)]}
    same = same_ranking(vectorised_top_n(rec.model, user, seen), faq_get_top_n(fitted.algo, user))
    faq_s = timed(lambda: faq_get_top_n(fitted.algo, user), 3)
    vec_s = timed(lambda: vectorised_top_n(rec.model, user, seen), 200)
    mine = [e for e in events if e.learner_id == user]
    hist = rec.model.history([e.course_id for e in mine], [1.0] * len(mine),
                             [e.at.timestamp() for e in mine])
    blend_s = timed(lambda: blend_top_n(rec.model, user, hist, seen), 200)
    nbytes = rec.model.neighbours.data.nbytes + rec.model.neighbours.indices.nbytes
    history = [e for e in events if e.learner_id == user]
    sug_s = timed(lambda: rec.suggest(user, owned, catalog, history, set(), n=10), 50)
    table = Table(title="Recommender bench")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row(f"train: {len(events):,} interactions, {N_LEARNERS:,} learners, "
                  f"{N_COURSES:,} courses (+{fitted.stats['negatives']:,} negatives; "
                  "tune+refit, progress bar)",
                  f"{train_s:.2f} s")
    table.add_row("top-10 over 10,000 courses, Surprise FAQ get_top_n (algo.test)",
                  f"{faq_s * 1e3:.1f} ms")
    table.add_row("top-10 over 10,000 courses, vectorised numpy", f"{vec_s * 1e3:.3f} ms")
    table.add_row(f"speed-up (same top-10 scores: {'yes' if same else 'NO'})",
                  f"{faq_s / vec_s:,.0f}x")
    table.add_row("top-10 over 10,000 courses, shipped blend (SVD + neighbours + popularity)",
                  f"{blend_s * 1e3:.3f} ms")
    table.add_row(f"item neighbours: {rec.model.neighbours.nnz:,} entries (sparse top-k)",
                  f"{nbytes / 1e6:.1f} MB")
    table.add_row("blend weights chosen on the validation split", fitted.stats["blend"])
    table.add_row("Recommender.suggest(n=10), blend + reasons + filters", f"{sug_s * 1e3:.2f} ms")
    console.print(table)
    if len(argv) > 1:
        evaluate_file(argv[1], k=10, console=console)


if __name__ == "__main__":
    main(sys.argv)
