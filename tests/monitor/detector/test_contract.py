"""One contract, run against every threshold method and the detector that uses it (river's ``checks`` habit).

Each method must: score before any learning, never mutate its inputs, refuse
a row with a sensor missing or extra, come back identical from the model
folder, keep its memory bounded over a long stream, and never learn from a
sample it flagged.
"""

from __future__ import annotations

import dataclasses
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from monitor.detector import METHODS, Detector, load_model
from monitor.detector.threshold import Threshold
from tests.monitor.detector.fixtures import history, tiny_model  # noqa: F401


@pytest.fixture(params=METHODS)
def method(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def detector(tiny_model: Path, method: str) -> Detector:
    det = load_model(tiny_model)
    det.settings = dataclasses.replace(det.settings, threshold_method=method)
    return det


def test_scores_before_any_learning(detector: Detector) -> None:
    """A new stream's first rows get finite scores and the calibrated threshold, and raise no alarm."""
    res = detector.score(detector.new_stream(), history(3, seed=40))
    assert np.isfinite(res.score).all()
    np.testing.assert_allclose(res.threshold, detector.calib.threshold)
    assert not res.anomaly.any()


def test_inputs_are_never_mutated(detector: Detector) -> None:
    x = history(120, seed=41)
    x[60:, 1] += 8.0
    copy = x.copy()
    ts = np.arange(120.0)
    ts_copy = ts.copy()
    detector.score(detector.new_stream(), x, ts)
    np.testing.assert_array_equal(x, copy)
    np.testing.assert_array_equal(ts, ts_copy)


@pytest.mark.parametrize("columns", [5, 7])
def test_a_row_with_a_sensor_missing_or_extra_is_refused(detector: Detector, columns: int) -> None:
    """The detector names the sensor count it needs instead of scoring misaligned columns."""
    with pytest.raises(ValueError, match=f"{detector.n_sensors} sensors"):
        detector.score(detector.new_stream(), np.zeros((4, columns)))


def test_state_round_trips_through_the_model_folder(detector: Detector, tmp_path: Path) -> None:
    """A detector saved and loaded again scores a stream exactly as before, threshold method included."""
    from monitor.detector import save_model

    save_model(tmp_path / "again", detector, {})
    again = load_model(tmp_path / "again")
    assert again.settings == detector.settings
    x = history(200, seed=42)
    x[120:, 3] += 5.0
    a = detector.score(detector.new_stream(), x)
    b = again.score(again.new_stream(), x)
    np.testing.assert_array_equal(a.score, b.score)
    np.testing.assert_array_equal(a.threshold, b.threshold)
    np.testing.assert_array_equal(a.anomaly, b.anomaly)


def test_memory_is_bounded_over_a_long_stream(detector: Detector) -> None:
    """What a stream keeps alive does not grow with the rows it has scored."""
    state = detector.new_stream()
    rng = np.random.default_rng(43)
    chunk = history(500, seed=44)
    for _ in range(3):
        detector.score(state, chunk + rng.normal(0, 0.5, chunk.shape))
    tracemalloc.start()
    try:
        for _ in range(15):
            detector.score(state, chunk + rng.normal(0, 0.5, chunk.shape))
        alive = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert alive < 256 * 1024, f"{alive} bytes still allocated after 7,500 more rows"
    assert state.history is not None and len(state.history) <= detector.window - 1


def test_never_learns_from_a_flagged_sample(detector: Detector) -> None:
    """While the stream is in alarm, the threshold stays exactly where it was."""
    x = history(900, seed=45)
    x[300:, 2] += 12.0  # a fault that persists to the end
    res = detector.score(detector.new_stream(), x)
    alarm = np.flatnonzero(res.anomaly)
    assert len(alarm) > 500
    during = res.threshold[alarm[0] :]
    assert np.ptp(during) == 0.0


def test_every_method_implements_the_threshold_protocol(detector: Detector) -> None:
    th: Threshold = detector.new_threshold()
    before = th.value
    th.learn(0.0)
    assert np.isfinite(th.value) and th.value > 0
    assert detector.settings.bounds.low * detector.calib.threshold <= before
