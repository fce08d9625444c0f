import json

from typer.testing import CliRunner

from recommender.cli import recommender_app, set_train_loader
from recommender.evaluate import write_csv
from recommender.model import load, prev_path
from tests.recommender.synthetic import generate, implicit

runner = CliRunner()


def tiny_rows():
    return generate(n_users=60, n_items=40, seed=3).rows


def test_evaluate_json_shape_explicit_ml100k_format(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("".join(f"{u}\t{i}\t{int(r)}\t{int(t)}\n" for u, i, r, t in tiny_rows()))
    result = runner.invoke(recommender_app, ["evaluate", "--ratings", str(path), "--k", "5",
                                             "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(data) == {"model", "popularity", "random", "svd", "item", "svd+pop", "item+pop",
                         "item_knn", "ease"}
    metrics = {"precision@5", "recall@5", "ndcg@5", "map@5", "coverage", "seconds"}
    assert set(data["model"]) == metrics | {"rmse", "mae", "blend_weights"}
    for name in set(data) - {"model"}:
        assert set(data[name]) == metrics
    assert all(0 <= v <= 1 for m in data.values() for k, v in m.items() if "@" in k)
    assert all(0 <= m["coverage"] <= 1 for m in data.values())


def test_evaluate_implicit_csv_has_no_rmse(tmp_path):
    path = tmp_path / "buys.csv"
    write_csv(path, [(u, i, r, None) for u, i, r, _ in implicit(tiny_rows())])
    result = runner.invoke(recommender_app, ["evaluate", "--ratings", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert "rmse" not in data["model"] and "ndcg@10" in data["model"]


def test_evaluate_prints_a_table(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n" + "".join(f"{u},{i},{r}\n" for u, i, r, _ in
                                                  tiny_rows()))
    result = runner.invoke(recommender_app, ["evaluate", "--ratings", str(path)])
    assert result.exit_code == 0, result.output
    assert "P@10" in result.stdout and "NDCG@10" in result.stdout and "MAP@10" in result.stdout
    for method in ("model", "svd", "item", "popularity", "random", "item_knn", "ease"):
        assert f"│ {method} " in result.stdout


def test_train_from_file_saves_and_keeps_previous(tmp_path):
    ratings = tmp_path / "r.csv"
    write_csv(ratings, tiny_rows())
    model = tmp_path / "models" / "rec.npz"
    for _ in range(2):
        result = runner.invoke(recommender_app, ["train", "--ratings", str(ratings),
                                                 "--model-path", str(model)])
        assert result.exit_code == 0, result.output
    assert load(model) is not None and prev_path(model).exists()


def test_train_uses_injected_loader_and_fails_cleanly_on_no_data(tmp_path):
    set_train_loader(lambda: ([], []), tmp_path / "x.npz")
    try:
        result = runner.invoke(recommender_app, ["train"])
    finally:
        set_train_loader(None)
    assert result.exit_code == 1
    assert "no usable interactions" in result.stdout
