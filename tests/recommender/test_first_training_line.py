"""A new installation has no model yet: one INFO line says what serves and until when."""

from __future__ import annotations

import logging

from recommender.service import Recommender


def test_no_model_file_is_one_info_line_naming_the_first_training(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="recommender")
    Recommender(tmp_path / "model.npz", training_schedule="nightly at 03:00 Asia/Shanghai")
    records = [r for r in caplog.records if r.name.startswith("recommender")]
    assert [r.levelno for r in records] == [logging.INFO]
    line = records[0].getMessage()
    assert "popularity serves until the first training" in line
    assert "nightly at 03:00 Asia/Shanghai" in line
