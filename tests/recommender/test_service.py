import logging
import threading
from dataclasses import replace
from datetime import timedelta

import pytest

from recommender.model import prev_path
from recommender.service import Recommender
from recommender.signals import Interaction
from tests.recommender.conftest import NOW

REASONS = {"because_you_took", "similar_learners", "new_in_category", "popular_in_category",
           "in_category", "popular"}
CATEGORY_REASONS = {"new_in_category", "popular_in_category", "in_category"}


def history_of(events, learner):
    return [e for e in events if e.learner_id == learner]


def owned_of(events, learner):
    return {e.course_id for e in history_of(events, learner) if e.kind == "purchase"}


def assert_reasons_are_real(suggestions, catalog):
    ids = {c.id for c in catalog}
    categories = {c.category for c in catalog}
    for s in suggestions:
        assert s.reason in REASONS
        if s.reason == "because_you_took":
            assert s.reason_course_id in ids
        if s.reason in CATEGORY_REASONS:
            assert s.reason_category in categories
        if s.reason_course_id is not None:
            assert s.reason_course_id in ids and s.reason_course_id != s.course_id
        if s.reason_category is not None:
            assert s.reason_category in categories


def test_known_learners_never_get_owned_or_inactive(trained, catalog, events):
    inactive = {c.id for c in catalog if not c.active}
    assert inactive
    for learner in range(1, 301, 7):
        owned = owned_of(events, learner)
        got = trained.suggest(learner, owned, catalog, history_of(events, learner), set(), n=5)
        assert len(got) == 5
        ids = {s.course_id for s in got}
        assert len(ids) == 5
        assert not ids & owned
        assert not ids & inactive
        assert_reasons_are_real(got, catalog)


def test_known_learner_is_served_by_the_model(trained, catalog, events):
    got = trained.suggest(3, owned_of(events, 3), catalog, history_of(events, 3), set())
    assert {s.reason for s in got} <= {"because_you_took", "similar_learners"}
    assert trained.model.knows(3)


def test_newcomer_gets_non_empty_fallback_in_browsed_category(trained, catalog):
    got = trained.suggest(99_999, set(), catalog, [], {"finance"}, n=5)
    assert len(got) == 5
    by_id = {c.id: c for c in catalog}
    assert all(by_id[s.course_id].category == "finance" for s in got)
    assert {s.reason for s in got} <= CATEGORY_REASONS
    assert_reasons_are_real(got, catalog)


def test_newcomer_without_model_or_browsing_still_gets_courses(catalog):
    rec = Recommender(clock=lambda: NOW)
    got = rec.suggest(1, set(), catalog, [], set(), n=5)
    assert len(got) == 5
    assert all(s.reason == "popular" for s in got)


def test_content_similarity_explains_cold_start(catalog):
    rec = Recommender(clock=lambda: NOW)
    took = next(c for c in catalog if c.category == "english" and c.active)
    event = Interaction(5, took.id, "purchase", None, NOW)
    got = rec.suggest(5, {took.id}, catalog, [event], set(), n=3)
    by_id = {c.id: c for c in catalog}
    assert all(by_id[s.course_id].category == "english" for s in got)
    assert got[0].reason == "because_you_took" and got[0].reason_course_id == took.id


def test_refunded_and_owned_never_come_back_even_when_all_else_is_gone(catalog):
    rec = Recommender(clock=lambda: NOW)
    active = [c.id for c in catalog if c.active]
    owned = set(active[:-2])
    refund = Interaction(1, active[-1], "refund", None, NOW)
    got = rec.suggest(1, owned, catalog, [refund], set(), n=5)
    assert [s.course_id for s in got] == [active[-2]]
    assert rec.suggest(1, set(active), catalog, [], set()) == []


def test_new_courses_in_browsed_category_are_labelled_new(catalog):
    rec = Recommender(clock=lambda: NOW)
    got = rec.suggest(1, set(), catalog, [], {"data"}, n=20)
    by_id = {c.id: c for c in catalog}
    in_data = [s for s in got if by_id[s.course_id].category == "data"]
    assert in_data and got[: len(in_data)] == in_data
    for s in in_data:
        fresh = by_id[s.course_id].created_at >= NOW - timedelta(days=30)
        assert s.reason == ("new_in_category" if fresh else "in_category"), "nobody took it yet"


def test_new_says_nothing_when_the_whole_catalogue_is_new(catalog):
    """A fresh catalogue (the demo's) is all new: suggestions then name the category, not "new"."""
    rec = Recommender(clock=lambda: NOW)
    fresh = [replace(c, created_at=NOW) for c in catalog]
    got = rec.suggest(1, set(), fresh, [], {"data"}, n=5)
    assert got and all(s.reason != "new_in_category" for s in got)
    assert {s.reason for s in got} <= {"in_category", "popular_in_category", "popular"}


def test_corrupted_model_serves_previous_then_popularity(syn, catalog, events, tmp_path, caplog):
    path = tmp_path / "model.npz"
    first = Recommender(path, clock=lambda: NOW)
    assert first.train(events, catalog)["ok"] and first.train(events, catalog)["ok"]
    path.write_bytes(b"\x00" * 100)
    with caplog.at_level(logging.WARNING):
        rec = Recommender(path, clock=lambda: NOW)
    assert rec.model is not None
    got = rec.suggest(3, owned_of(events, 3), catalog, history_of(events, 3), set())
    assert len(got) == 5
    prev_path(path).write_bytes(b"PK\x03\x04 broken")
    rec = Recommender(path, clock=lambda: NOW)
    assert rec.model is None
    got = rec.suggest(3, owned_of(events, 3), catalog, history_of(events, 3), set())
    assert len(got) == 5 and not {s.course_id for s in got} & owned_of(events, 3)
    assert "unusable" in caplog.text


def test_failed_training_keeps_serving_old_model(trained, catalog, caplog):
    before = trained.model
    with caplog.at_level(logging.ERROR):
        metrics = trained.train([], catalog)
    assert metrics["ok"] is False and "no usable interactions" in metrics["error"]
    assert trained.model is before


def test_reload_swaps_and_survives_corruption(catalog, events, tmp_path):
    path = tmp_path / "m.npz"
    trainer = Recommender(path)
    trainer.train(events, catalog)
    server = Recommender(path)
    old = server.model
    trainer.train(events[: len(events) // 2], catalog)
    assert server.reload() and server.model is not old
    current = server.model
    path.write_bytes(b"junk")
    prev_path(path).write_bytes(b"junk")
    assert server.reload() is False and server.model is current


def test_suggest_is_safe_while_models_swap(catalog, events, tmp_path):
    rec = Recommender(tmp_path / "m.npz", clock=lambda: NOW)
    rec.train(events, catalog)
    errors = []

    def serve():
        try:
            for learner in range(1, 40):
                rec.suggest(learner, owned_of(events, learner), catalog, [], set())
        except Exception as exc:  # pragma: no cover - recorded for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=serve) for _ in range(3)]
    for t in threads:
        t.start()
    rec.train(events[::2], catalog)
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.parametrize("n", [0, 1, 12])
def test_n_is_respected(trained, catalog, events, n):
    got = trained.suggest(4, owned_of(events, 4), catalog, history_of(events, 4), set(), n=n)
    assert len(got) == n


def test_a_serving_process_picks_up_a_model_trained_by_another(catalog, events, tmp_path):
    path = tmp_path / "shared.npz"
    serving = Recommender(path, clock=lambda: NOW, reload_seconds=0)
    throttled = Recommender(path, clock=lambda: NOW, reload_seconds=3600)
    assert serving.model is None and not serving.refresh()
    throttled.refresh()

    assert Recommender(path, clock=lambda: NOW).train(events, catalog)["ok"]
    assert serving.refresh() and serving.model.knows(3)
    assert not serving.refresh(), "an unchanged file is not loaded again"
    assert not throttled.refresh() and throttled.model is None, "checked at most once a period"
