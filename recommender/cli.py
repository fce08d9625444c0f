"""`coursebot recommender …`: train and evaluate from the shell, with rich progress bars."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from recommender.entities import CourseInfo
from recommender.signals import Interaction

TrainData = tuple[Iterable[Interaction], Sequence[CourseInfo]]
TrainLoader = Callable[[], TrainData]

recommender_app = typer.Typer(help="Train and evaluate the course recommender.")
_state: dict[str, object] = {"loader": None, "model_path": None}


def set_train_loader(loader: TrainLoader | None, model_path: Path | None = None) -> None:
    """Inject how ``train`` reads interactions and the catalogue when no --ratings is given."""
    _state["loader"], _state["model_path"] = loader, model_path


def interactions_from_file(path: Path) -> list[Interaction]:
    """Read a ratings file as interactions: stars become ratings, an all-1 file purchases."""
    from recommender.evaluate import load_ratings  # numpy and Surprise load on use only

    data = load_ratings(path)
    out = []
    for user, item, rating, ts in data.rows:
        at = datetime.fromtimestamp(ts or 0.0, tz=UTC)
        if data.explicit:
            out.append(Interaction(user, item, "rating", rating, at))
        else:
            out.append(Interaction(user, item, "purchase", None, at))
    return out


@recommender_app.command()
def evaluate(
    ratings: Annotated[Path, typer.Option("--ratings", exists=True, dir_okay=False)],
    k: Annotated[int, typer.Option("--k", min=1)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Precision/recall/NDCG@k for model, popularity and random; RMSE/MAE of plain SVD."""
    from recommender.evaluate import evaluate_file

    evaluate_file(ratings, k=k, as_json=as_json, console=Console())


def _load(ratings: Path | None) -> TrainData:
    if ratings is not None:
        return interactions_from_file(ratings), []
    loader = _state["loader"]
    if loader is None:
        raise typer.BadParameter("no interaction source; pass --ratings FILE")
    return loader()


@recommender_app.command()
def train(
    ratings: Annotated[
        Path | None, typer.Option("--ratings", exists=True, dir_okay=False)
    ] = None,
    model_path: Annotated[Path | None, typer.Option("--model-path")] = None,
) -> None:
    """Train the ranking SVD and save it atomically (the old model is kept as .prev)."""
    path = model_path or _state["model_path"] or Path("recommender.npz")
    console = Console()
    interactions, catalog = _load(ratings)
    from recommender.service import Recommender

    rec = Recommender(path)
    bars = Progress(TextColumn("[bold]train"), BarColumn(), TextColumn("{task.fields[stage]}"),
                    TimeElapsedColumn(), console=console)
    with bars:
        task = bars.add_task("train", total=3, stage="reading")

        def tick(stage: str, done: int, total: int) -> None:
            bars.update(task, completed=done, total=total, stage=stage)

        metrics = rec.train(interactions, list(catalog), progress=tick)
    table = Table(title=f"Training → {path}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, str(value))
    console.print(table)
    if not metrics.get("ok"):
        raise typer.Exit(code=1)
