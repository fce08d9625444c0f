from datetime import UTC, datetime

import pytest

from recommender.service import Recommender
from tests.recommender import synthetic

NOW = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def syn() -> synthetic.Synthetic:
    return synthetic.generate(n_users=300, n_items=150, seed=7)


@pytest.fixture(scope="session")
def catalog(syn):
    return synthetic.catalog(syn, NOW, inactive_every=7)


@pytest.fixture(scope="session")
def events(syn):
    return synthetic.interactions(syn.rows)


@pytest.fixture(scope="session")
def trained(syn, catalog, events, tmp_path_factory) -> Recommender:
    path = tmp_path_factory.mktemp("model") / "model.npz"
    rec = Recommender(path, clock=lambda: NOW)
    assert rec.train(events, catalog)["ok"]
    return rec
