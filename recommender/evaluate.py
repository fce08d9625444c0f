"""Offline evaluation: per-user holdout ranking metrics and 5-fold RMSE/MAE of plain SVD."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from surprise import SVD, Dataset, Reader
from surprise.model_selection import KFold, cross_validate

from recommender.model import ModelParams, RankingSVD
from recommender.signals import SignalWeights

Row = tuple[int, int, float, float | None]
Tick = Callable[[str, int, int], None]
SEED = 42


@dataclass(frozen=True, slots=True)
class RatingsFile:
    """Parsed ratings: rows of (user, item, rating, timestamp|None) and how to re-read them."""

    rows: list[Row]
    explicit: bool
    has_time: bool
    reader: Reader


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _split_line(line: str, sep: str | None) -> list[str]:
    return [part.strip() for part in (line.split(sep) if sep else line.split())]


def load_ratings(path: str | Path) -> RatingsFile:
    """Read MovieLens-100k (tab-separated) or CSV ``user,item,rating[,timestamp]``."""
    text = Path(path).read_text(encoding="utf-8").splitlines()
    lines = [line for line in text if line.strip()]
    sep = "," if lines and "," in lines[0] else "\t" if lines and "\t" in lines[0] else None
    header = bool(lines) and not _is_number(_split_line(lines[0], sep)[0])
    rows = [_parse(_split_line(line, sep)) for line in lines[int(header):]]
    if not rows:
        raise ValueError(f"{path}: no ratings")
    has_time = all(row[3] is not None for row in rows)
    explicit = len({row[2] for row in rows}) > 1
    fmt = "user item rating timestamp" if has_time else "user item rating"
    scale = (min(r[2] for r in rows), max(r[2] for r in rows))
    reader = Reader(line_format=fmt, sep=sep, skip_lines=int(header), rating_scale=scale)
    return RatingsFile(rows, explicit, has_time, reader)


def _parse(parts: list[str]) -> Row:
    ts = float(parts[3]) if len(parts) > 3 and parts[3] else None
    return int(parts[0]), int(parts[1]), float(parts[2]), ts


def holdout(
    rows: Sequence[Row], test_frac: float = 0.2, seed: int = SEED
) -> tuple[list[Row], dict[int, set[int]]]:
    """Per-user split: the latest ``test_frac`` when timestamped, else a seeded random share."""
    rng = np.random.default_rng(seed)
    by_user: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        by_user[row[0]].append(row)
    train: list[Row] = []
    test: dict[int, set[int]] = {}
    for user in sorted(by_user):
        items = by_user[user]
        if all(r[3] is not None for r in items):
            items = sorted(items, key=lambda r: (r[3], r[1]))
        else:
            items = [items[j] for j in rng.permutation(len(items))]
        n_test = int(math.ceil(test_frac * len(items))) if len(items) >= 2 else 0
        train.extend(items[: len(items) - n_test])
        if n_test:
            test[user] = {r[1] for r in items[len(items) - n_test:]}
    return train, test


def ranking_metrics(
    recs: dict[int, list[int]], test: dict[int, set[int]], k: int
) -> dict[str, float]:
    """Mean precision@k, recall@k and NDCG@k over the users in ``test``."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    prec, rec, ndcg = [], [], []
    for user, relevant in test.items():
        top = recs.get(user, [])[:k]
        gains = np.zeros(k)
        gains[: len(top)] = [1.0 if item in relevant else 0.0 for item in top]
        hits = gains.sum()
        prec.append(hits / k)
        rec.append(hits / len(relevant))
        ideal = discounts[: min(len(relevant), k)].sum()
        ndcg.append(float(gains @ discounts) / ideal)
    return {
        f"precision@{k}": float(np.mean(prec)) if prec else 0.0,
        f"recall@{k}": float(np.mean(rec)) if rec else 0.0,
        f"ndcg@{k}": float(np.mean(ndcg)) if ndcg else 0.0,
    }


def _seen(train: Sequence[Row]) -> dict[int, set[int]]:
    seen: dict[int, set[int]] = defaultdict(set)
    for user, item, _, _ in train:
        seen[user].add(item)
    return seen


def _top_k(scores: np.ndarray, items: np.ndarray, exclude: set[int], k: int) -> list[int]:
    mask = np.isin(items, np.fromiter(exclude, dtype=np.int64, count=len(exclude)))
    scores = np.where(mask, -np.inf, scores)
    top = np.argpartition(-scores, min(k, len(scores) - 1))[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [int(items[j]) for j in top if np.isfinite(scores[j])]


def to_pseudo(train: Sequence[Row], explicit: bool, weights: SignalWeights):
    """Turn file ratings into pseudo-ratings: stars mapped by ``weights``, implicit = purchase."""
    if explicit:
        return [(u, i, weights.from_stars(r)) for u, i, r, _ in train]
    return [(u, i, weights.purchase) for u, i, _, _ in train]


def model_recs(
    train: Sequence[Row],
    users: Sequence[int],
    k: int,
    explicit: bool,
    params: ModelParams | None = None,
    weights: SignalWeights | None = None,
    tick: Tick | None = None,
) -> dict[int, list[int]]:
    """Top-k per user from the ranking SVD blended with popularity."""
    weights = weights or SignalWeights()
    pseudo = to_pseudo(train, explicit, weights)
    fm = RankingSVD(params, weights).fit(pseudo, progress=tick).factors
    seen = _seen(train)
    out = {}
    for user in users:
        scores = fm.blended(user, len(seen[user]))
        if scores is not None:
            out[user] = _top_k(scores, fm.item_ids, seen[user], k)
    return out


def popularity_recs(train: Sequence[Row], users: Sequence[int], k: int) -> dict[int, list[int]]:
    """Top-k most-interacted items in the training split, minus each user's own."""
    counts: dict[int, int] = defaultdict(int)
    for _, item, _, _ in train:
        counts[item] += 1
    items = np.array(sorted(counts), dtype=np.int64)
    scores = np.array([counts[i] for i in items], dtype=np.float64)
    seen = _seen(train)
    return {user: _top_k(scores, items, seen[user], k) for user in users}


def random_recs(
    train: Sequence[Row], users: Sequence[int], k: int, seed: int = SEED
) -> dict[int, list[int]]:
    """k random unseen items per user with a fixed seed."""
    rng = np.random.default_rng(seed)
    items = np.array(sorted({r[1] for r in train}), dtype=np.int64)
    seen = _seen(train)
    return {user: _top_k(rng.random(len(items)), items, seen[user], k) for user in users}


def svd_accuracy(path: str | Path, reader: Reader, folds: int = 5) -> dict[str, float]:
    """RMSE and MAE of plain ``surprise.SVD`` with k-fold cross-validation."""
    data = Dataset.load_from_file(str(path), reader=reader)
    folds_split = KFold(n_splits=folds, random_state=SEED, shuffle=True)
    res = cross_validate(SVD(random_state=SEED), data, measures=["RMSE", "MAE"], cv=folds_split)
    return {"rmse": float(np.mean(res["test_rmse"])), "mae": float(np.mean(res["test_mae"]))}


def evaluate_rows(
    rows: Sequence[Row],
    k: int = 10,
    explicit: bool = True,
    params: ModelParams | None = None,
    weights: SignalWeights | None = None,
    tick: Tick | None = None,
) -> dict[str, dict[str, float]]:
    """Ranking metrics for model, popularity and random on a per-user holdout of ``rows``."""
    tick = tick or (lambda stage, done, total: None)
    train, test = holdout(rows)
    users = sorted(test)
    tick("model", 0, 3)
    model = model_recs(train, users, k, explicit, params, weights)
    tick("popularity", 1, 3)
    pop = popularity_recs(train, users, k)
    tick("random", 2, 3)
    rnd = random_recs(train, users, k)
    tick("done", 3, 3)
    return {
        "model": ranking_metrics(model, test, k),
        "popularity": ranking_metrics(pop, test, k),
        "random": ranking_metrics(rnd, test, k),
    }


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[stage]}"),
        TimeElapsedColumn(), console=console, transient=False,
    )


def results_table(results: dict[str, dict[str, float]], k: int) -> Table:
    """Rich table with one column per method and one row per metric."""
    table = Table(title=f"Recommender evaluation (k={k})")
    table.add_column("metric")
    for name in results:
        table.add_column(name, justify="right")
    metrics = [f"precision@{k}", f"recall@{k}", f"ndcg@{k}", "rmse", "mae"]
    for metric in metrics:
        cells = [results[name].get(metric) for name in results]
        if any(c is not None for c in cells):
            table.add_row(metric, *("-" if c is None else f"{c:.4f}" for c in cells))
    return table


def evaluate_file(
    path: str | Path, k: int = 10, as_json: bool = False, console: Console | None = None
) -> dict[str, dict[str, float]]:
    """Evaluate on a ratings file, print a rich table (or one JSON object) and return results."""
    console = console or Console()
    data = load_ratings(path)
    with _progress(console if not as_json else Console(stderr=True)) as bars:
        task = bars.add_task("evaluate", total=4 if data.explicit else 3, stage="loading")

        def tick(stage: str, done: int, total: int) -> None:
            bars.update(task, completed=done, stage=stage)

        results = evaluate_rows(data.rows, k, data.explicit, tick=tick)
        if data.explicit:
            bars.update(task, stage="5-fold SVD RMSE/MAE")
            results["model"].update(svd_accuracy(path, data.reader))
        bars.update(task, completed=bars.tasks[0].total, stage="done")
    if as_json:
        console.out(json.dumps(results), highlight=False)
    else:
        console.print(results_table(results, k))
    return results


def write_csv(path: str | Path, rows: Sequence[Row]) -> None:
    """Write rows as CSV ``user,item,rating[,timestamp]`` (helper for tests and benches)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        for user, item, rating, ts in rows:
            out.writerow([user, item, rating] + ([] if ts is None else [ts]))
