"""Offline evaluation: per-user holdout ranking metrics and 5-fold RMSE/MAE of plain SVD."""

from __future__ import annotations

import csv
import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from surprise import SVD, Dataset, Reader
from surprise.model_selection import KFold, cross_validate

from recommender import items as item_models
from recommender.blend import Hybrid, split_latest
from recommender.model import FactorModel, ModelParams
from recommender.signals import SignalWeights

Row = tuple[int, int, float, float | None]
Tick = Callable[[str, int, int], None]
SEED = 42
EASE_LAMBDA = 200.0
KNN_K = 100


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
    return split_latest(rows, test_frac, seed)


def ranking_metrics(
    recs: dict[int, list[int]], test: dict[int, set[int]], k: int, n_items: int | None = None
) -> dict[str, float]:
    """Mean precision, recall, NDCG and MAP at k over the users in ``test``; coverage if asked.

    MAP@k divides by min(|relevant|, k). Coverage is the share of the ``n_items`` catalogue that
    appears in at least one top-k list.
    """
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    prec, rec, ndcg, aps = [], [], [], []
    shown: set[int] = set()
    for user, relevant in test.items():
        top = recs.get(user, [])[:k]
        shown.update(top)
        gains = np.zeros(k)
        gains[: len(top)] = [1.0 if item in relevant else 0.0 for item in top]
        hits = gains.sum()
        prec.append(hits / k)
        rec.append(hits / len(relevant))
        ideal = discounts[: min(len(relevant), k)].sum()
        ndcg.append(float(gains @ discounts) / ideal)
        precision_at = np.cumsum(gains) / np.arange(1, k + 1)
        aps.append(float((precision_at * gains).sum()) / min(len(relevant), k))
    out = {
        f"precision@{k}": float(np.mean(prec)) if prec else 0.0,
        f"recall@{k}": float(np.mean(rec)) if rec else 0.0,
        f"ndcg@{k}": float(np.mean(ndcg)) if ndcg else 0.0,
    }
    if n_items is not None:
        out[f"map@{k}"] = float(np.mean(aps)) if aps else 0.0
        out["coverage"] = len(shown) / n_items if n_items else 0.0
    return out


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


def to_pseudo(train: Sequence[Row], explicit: bool, weights: SignalWeights) -> list[Row]:
    """File ratings as timed pseudo-ratings: stars mapped by ``weights``, implicit = purchase."""
    if explicit:
        return [(u, i, weights.from_stars(r), t) for u, i, r, t in train]
    return [(u, i, weights.purchase, t) for u, i, r, t in train]


def _history(fm: FactorModel, pseudo: Sequence[Row], weights: SignalWeights):
    """Per learner: inner ids and recency-weighted confidences, as serving computes them."""
    rows: dict[int, list[Row]] = defaultdict(list)
    for row in pseudo:
        rows[row[0]].append(row)
    return {
        u: fm.history([r[1] for r in mine], [weights.confidence(r[2]) for r in mine],
                      [r[3] or 0.0 for r in mine])
        for u, mine in rows.items()
    }


def served_recs(
    fm: FactorModel, pseudo: Sequence[Row], users: Sequence[int], k: int,
    weights: SignalWeights | None = None,
) -> dict[int, list[int]]:
    """Top-k per user through the serving path (``FactorModel.blend``), own courses excluded."""
    weights = weights or SignalWeights()
    hist = _history(fm, pseudo, weights)
    seen = _seen(pseudo)
    out = {}
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0))
    for user in users:
        inner, conf = hist.get(user, empty)
        if not fm.knows(user) and not len(inner):
            continue
        out[user] = _top_k(fm.blend(user, inner, conf), fm.item_ids, seen[user], k)
    return out


def fit_model(
    train: Sequence[Row], explicit: bool, params: ModelParams | None = None,
    weights: SignalWeights | None = None, tick: Tick | None = None,
) -> tuple[Hybrid, list[Row]]:
    """Fit the shipped blend on ``train`` (it tunes on its own validation split of ``train``)."""
    weights = weights or SignalWeights()
    pseudo = to_pseudo(train, explicit, weights)
    return Hybrid(params, weights).fit(pseudo, progress=tick), pseudo


def model_recs(
    train: Sequence[Row],
    users: Sequence[int],
    k: int,
    explicit: bool,
    params: ModelParams | None = None,
    weights: SignalWeights | None = None,
    tick: Tick | None = None,
) -> dict[int, list[int]]:
    """Top-k per user from the shipped blend (SVD + item neighbours + popularity)."""
    weights = weights or SignalWeights()
    fitted, pseudo = fit_model(train, explicit, params, weights, tick)
    return served_recs(fitted.factors, pseudo, users, k, weights)


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


def _binary_matrix(train: Sequence[Row]):
    users = sorted({r[0] for r in train})
    items = np.array(sorted({r[1] for r in train}), dtype=np.int64)
    uid = {u: j for j, u in enumerate(users)}
    iid = {int(i): j for j, i in enumerate(items)}
    x = item_models.matrix(
        np.array([uid[r[0]] for r in train]), np.array([iid[r[1]] for r in train]),
        np.ones(len(train)), len(users), len(items),
    )
    x.data[:] = 1.0
    return x, uid, items


def item_baseline_recs(
    train: Sequence[Row], users: Sequence[int], k: int, method: str,
    lam: float = EASE_LAMBDA, neighbours: int = KNN_K,
) -> dict[int, list[int]]:
    """Baselines on the binary matrix: dense EASE^R (numpy) or item-kNN cosine (top-k sparse)."""
    x, uid, items = _binary_matrix(train)
    if method == "ease":
        weights = item_models.ease_dense(x, lam)
    else:
        weights = item_models.knn(x, neighbours, shrink=0.0, alpha=0.5)
    seen = _seen(train)
    out = {}
    for user in users:
        if user in uid:
            row = x[uid[user]]
            product = row @ weights
            scores = np.asarray(product.todense() if hasattr(product, "todense") else product)
            scores = scores.ravel()
            out[user] = _top_k(scores, items, seen[user], k)
    return out


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
    """Ranking metrics of the blend, each of its parts and the baselines on a per-user holdout.

    Keys: ``model`` (the shipped blend), ``svd``, ``item`` and ``svd+pop`` / ``item+pop`` (its
    components, served alone through the same code), ``popularity``, ``random``, ``item_knn``,
    ``ease`` (dense EASE^R, numpy). Each has P/R/NDCG/MAP@k, ``coverage`` and ``seconds``.
    """
    tick = tick or (lambda stage, done, total: None)
    weights = weights or SignalWeights()
    train, test = holdout(rows)
    users = sorted(test)
    n_items = len({r[1] for r in train})
    results: dict[str, dict[str, float]] = {}

    def run(name: str, fn, seconds: float | None = None) -> None:
        start = time.perf_counter()
        recs = fn()
        spent = time.perf_counter() - start + (seconds or 0.0)
        results[name] = {**ranking_metrics(recs, test, k, n_items), "seconds": round(spent, 3)}

    steps = 8
    tick("blend: fit + tune", 0, steps)
    start = time.perf_counter()
    fitted, pseudo = fit_model(train, explicit, params, weights)
    fit_s = time.perf_counter() - start
    fm = fitted.factors
    tick("blend: serve", 1, steps)
    run("model", lambda: served_recs(fm, pseudo, users, k, weights), fit_s)
    w_svd, w_item, w_pop = fm.weights
    parts = {"svd": (1.0, 0.0, 0.0), "item": (0.0, 1.0, 0.0),
             "svd+pop": (1.0, 0.0, w_pop or 0.1), "item+pop": (0.0, 1.0, w_pop or 0.1)}
    for j, (name, blend) in enumerate(parts.items()):
        tick(f"component: {name}", 2 + j // 2, steps)
        run(name, lambda b=blend: served_recs(replace(fm, weights=b), pseudo, users, k, weights))
    results["model"]["blend_weights"] = list(fm.weights)
    tick("popularity", 4, steps)
    run("popularity", lambda: popularity_recs(train, users, k))
    tick("random", 5, steps)
    run("random", lambda: random_recs(train, users, k))
    tick("item-kNN", 6, steps)
    run("item_knn", lambda: item_baseline_recs(train, users, k, "knn"))
    tick("EASE^R", 7, steps)
    run("ease", lambda: item_baseline_recs(train, users, k, "ease"))
    tick("done", steps, steps)
    return results


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[stage]}"),
        TimeElapsedColumn(), console=console, transient=False,
    )


def results_table(results: dict[str, dict[str, float]], k: int) -> Table:
    """Rich table with one row per method and one column per metric (plus ratios to popularity)."""
    table = Table(title=f"Recommender evaluation (k={k})")
    metrics = [f"precision@{k}", f"recall@{k}", f"ndcg@{k}", f"map@{k}", "coverage", "seconds",
               "rmse", "mae"]
    metrics = [m for m in metrics if any(m in r for r in results.values())]
    pop = results.get("popularity", {})
    table.add_column("method")
    for metric in metrics:
        table.add_column(metric.replace("precision", "P").replace("recall", "R")
                         .replace("ndcg", "NDCG").replace("map", "MAP"), justify="right")
        if metric in (f"precision@{k}", f"ndcg@{k}") and pop.get(metric):
            table.add_column("x pop", justify="right")
    for name, row in results.items():
        cells = []
        for metric in metrics:
            value = row.get(metric)
            cells.append("-" if value is None else f"{value:.4f}")
            if metric in (f"precision@{k}", f"ndcg@{k}") and pop.get(metric):
                cells.append("-" if value is None else f"{value / pop[metric]:.2f}x")
        table.add_row(name, *cells)
    return table


def evaluate_file(
    path: str | Path, k: int = 10, as_json: bool = False, console: Console | None = None
) -> dict[str, dict[str, float]]:
    """Evaluate on a ratings file, print a rich table (or one JSON object) and return results."""
    console = console or Console()
    data = load_ratings(path)
    with _progress(console if not as_json else Console(stderr=True)) as bars:
        task = bars.add_task("evaluate", total=9 if data.explicit else 8, stage="loading")

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
        wide = console if console.is_terminal else Console(file=console.file, width=140)
        wide.print(results_table(results, k))
    return results


def write_csv(path: str | Path, rows: Sequence[Row]) -> None:
    """Write rows as CSV ``user,item,rating[,timestamp]`` (helper for tests and benches)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        for user, item, rating, ts in rows:
            out.writerow([user, item, rating] + ([] if ts is None else [ts]))
