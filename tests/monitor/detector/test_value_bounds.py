"""Plausible values: training records each sensor's range; a huge value can never make a score non-finite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from monitor.detector import Detector, TrainingRange, folder_format
from monitor.detector import model_folder as artefact
from monitor.detector.value_bounds import MARGIN, Z_LIMIT
from monitor.errors import ArtefactError
from tests.monitor.detector.fixtures import detector, history, tiny_model  # noqa: F401


def test_training_records_each_sensors_range_and_the_default_bounds_come_from_it(tiny_model: Path) -> None:
    m = json.loads((tiny_model / "manifest.json").read_text())
    rng = m["training_range"]
    x = history(400)
    np.testing.assert_allclose(rng["min"], x.min(axis=0))
    np.testing.assert_allclose(rng["max"], x.max(axis=0))
    np.testing.assert_allclose(rng["median"], np.median(x, axis=0))
    det = artefact.load(tiny_model)
    span = np.maximum(x.max(axis=0) - x.min(axis=0), np.abs(np.median(x, axis=0)))
    np.testing.assert_allclose(det.bounds.upper, x.max(axis=0) + MARGIN * span)
    np.testing.assert_allclose(det.bounds.lower, x.min(axis=0) - MARGIN * span)
    assert not det.bounds.bad_rows(x).any()  # training itself is plausible, of course


def test_the_training_range_survives_a_round_trip_and_a_bad_one_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    det = artefact.load(tiny_model)
    artefact.save(tmp_path / "again", det, {})
    again = artefact.load(tmp_path / "again")
    assert again.training_range is not None and det.training_range is not None
    np.testing.assert_array_equal(again.training_range.max, det.training_range.max)
    m = json.loads((tmp_path / "again" / "manifest.json").read_text())
    m["training_range"]["max"] = m["training_range"]["max"][:-1]
    (tmp_path / "again" / "manifest.json").write_text(json.dumps(folder_format.seal(m)))
    with pytest.raises(ArtefactError, match=r"training_range\.max must be 6 finite numbers"):
        artefact.load(tmp_path / "again")


@pytest.mark.parametrize("poison", [1e20, 1e38, 1e39, 1e100, 1e308, -1e308])
def test_a_huge_value_scored_anyway_gives_a_finite_score_and_the_stream_recovers(
    detector: Detector, poison: float
) -> None:
    """Even past the bounds (a caller that does not check them), the score and the stream state stay finite
    and the score comes back down. On the landed main, 1e39 made every later score NaN, 1e20 made them +Inf."""
    x = history(300, seed=3)
    poisoned = x.copy()
    poisoned[100, 1] = poison
    state = detector.new_stream()
    res = detector.score(state, poisoned)
    assert np.isfinite(res.score).all() and np.isfinite(res.threshold).all()
    assert state.energy is not None and np.isfinite(state.energy).all() and np.isfinite(state.shift).all()
    assert np.isfinite(detector.new_stream().threshold.value)
    assert res.score[-1] < res.score[101:].max() / 10


def test_bounds_can_be_narrowed_per_sensor_by_name() -> None:
    b = TrainingRange.of(np.array([[0.0, 1.0], [1.0, 2.0]])).plausible()
    narrowed = b.with_overrides(["a", "b"], {"b": (None, 1.5), "zzz": (0.0, 1.0)})
    assert narrowed.upper[1] == 1.5 and narrowed.lower[1] == b.lower[1] and narrowed.upper[0] == b.upper[0]
    assert narrowed.bad_rows(np.array([[0.5, 1.4], [0.5, 1.6]])).tolist() == [False, True]
    assert narrowed.describe(1, "b", 1.6) == "b=1.6 outside [-149, 1.5]"


def test_the_clip_is_far_beyond_any_plausible_standardised_value() -> None:
    assert Z_LIMIT >= 1e5
