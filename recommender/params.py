"""What the recommender needs before any model exists, without Surprise or scipy: its
hyperparameters, the positive-signal threshold and where the previous model file is kept
(`recommender.model` re-exports them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

POSITIVE_THRESHOLD = 2.5
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class ModelParams:
    """Hyperparameters of the ranking SVD, the item component and the blend.

    ``w_svd``/``w_item``/``w_pop`` are the blend weights used when ``tune_blend`` is off or there
    is too little data to tune them; with it on, ``fit`` chooses them on a validation split.
    """

    n_factors: int = 32
    n_epochs: int = 40
    lr_all: float = 0.01
    reg_all: float = 0.05
    random_state: int = 42
    neg_ratio: float = 8.0
    neg_sampling: str = "popularity"
    neg_pop_power: float = 0.75
    blend_k: float = 2.0  # popularity weight x (1 + k/(k+n)) for a learner with n courses
    item_method: str = "auto"
    item_k: int = 200
    ease_lambda: float = 200.0
    knn_shrink: float = 10.0
    w_svd: float = 1.0
    w_item: float = 1.0
    w_pop: float = 0.1
    recency: float = 0.25
    svd_recent_frac: float = 0.25  # each learner's latest share of courses ...
    svd_recent_repeat: int = 2  # ... visited this many extra times per SGD epoch
    tune_blend: bool = True
    val_frac: float = 0.2
    tune_min_learners: int = 20


def prev_path(path: Path) -> Path:
    """Return where the previous model is kept."""
    return path.with_name(path.name + ".prev")
