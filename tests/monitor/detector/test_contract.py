"""One contract, run against every threshold method and the detector that uses it (river's ``checks`` habit).

Each method must: score before any learning, never mutate its inputs, refuse
a row with a sensor missing or extra, come back identical from the model
folder, keep its memory bounded over a long stream, never learn from a
sample it flagged, and continue a stream saved with ``to_state`` and restored
(in another process, after a crash) exactly as if it had never stopped.
"""

from __future__ import annotations

import dataclasses
import json
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.detector import METHODS, Bounds, Detector, load_model
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
    alarm = np.flatnonzero(res.anomaly[300:]) + 300  # a false alarm before the fault may come and go
    assert len(alarm) > 500
    during = res.threshold[alarm[0] :]
    assert np.ptp(during) == 0.0


def test_every_method_implements_the_threshold_protocol(detector: Detector) -> None:
    th: Threshold = detector.new_threshold()
    before = th.value
    th.learn(0.0)
    assert np.isfinite(th.value) and th.value > 0
    assert detector.settings.bounds.low * detector.calib.threshold <= before


def _through_json(state: dict[str, Any]) -> Any:
    """The state as a checkpoint store sees it: plain JSON (arrays become lists), read back."""
    return json.loads(json.dumps(state, default=lambda a: a.tolist()))


@pytest.mark.parametrize("cut", [2, 150, 330, 420])  # in the warm-up, normal, alarm rising, alarm open
def test_a_restored_stream_continues_exactly_like_an_uninterrupted_one(detector: Detector, cut: int) -> None:
    """Save the stream after ``cut`` rows and restore it into a new stream: the rest scores bit for bit as
    on the stream that never stopped, and as one pass over all rows up to float rounding (batch boundaries
    change the order of the smoothing sums by ~1e-15, with or without a restore)."""
    x = history(700, seed=46)
    x[320:520, 2] += 9.0  # a fault that raises and then clears an alarm
    ts = np.arange(700.0)
    whole = detector.score(detector.new_stream(), x, ts)
    assert whole.anomaly.any() and not whole.anomaly[-50:].any(), "the fault must raise and clear an alarm"
    kept = detector.new_stream()
    head = detector.score(kept, x[:cut], ts[:cut])
    again = detector.restore_stream(_through_json(kept.to_state()))
    tail = detector.score(again, x[cut:], ts[cut:])
    same = detector.score(kept, x[cut:], ts[cut:])
    for field in ("score", "threshold", "anomaly", "top"):
        np.testing.assert_array_equal(getattr(tail, field), getattr(same, field))
    np.testing.assert_allclose(np.concatenate([head.score, tail.score]), whole.score, rtol=1e-9)
    np.testing.assert_allclose(np.concatenate([head.threshold, tail.threshold]), whole.threshold, rtol=1e-9)
    np.testing.assert_array_equal(np.concatenate([head.anomaly, tail.anomaly]), whole.anomaly)
    moved = [(i + cut, t.kind, t.episode.start) for i, t in tail.transitions]
    assert [(i, t.kind, t.episode.start) for i, t in head.transitions] + moved == [
        (i, t.kind, t.episode.start) for i, t in whole.transitions
    ]
    assert again.to_state().keys() == kept.to_state().keys()


@pytest.mark.parametrize("cut", [5, 1234])
def test_a_restored_threshold_learns_on_exactly_like_the_original(detector: Detector, cut: int) -> None:
    """Scores that move every method (peaks over the SPOT level, a shifting quantile): the restored
    threshold takes the same values as the one that never stopped, refit schedule included."""
    detector.settings = dataclasses.replace(detector.settings, bounds=Bounds(low=0.3, high=3.0, step=0.05))
    c = detector.calib
    level = max(c.spot_level, c.reference)
    scores = (level * (0.7 + np.random.default_rng(48).exponential(0.2, 3000))).tolist()
    original = detector.new_threshold()
    for s in scores[:cut]:
        original.learn(s)
    restored = detector.new_threshold()
    restored.load_state(_through_json(original.to_state()))
    a, b = [], []
    for s in scores[cut:]:
        original.learn(s)
        restored.learn(s)
        a.append(original.value)
        b.append(restored.value)
    assert a == b
    if detector.settings.threshold_method != "static":
        assert len(set(a)) > 10, "the scores must move the threshold for this test to mean anything"


def test_a_state_for_another_method_or_model_is_refused(detector: Detector, method: str) -> None:
    """A foreign state raises ValueError naming what does not fit; it never scores nonsense."""
    st = detector.new_stream()
    detector.score(st, history(50, seed=47))
    state = st.to_state()
    other = next(m for m in METHODS if m != method)
    foreign = dataclasses.replace(detector.settings, threshold_method=other)
    det2 = load_model_like(detector, foreign)
    with pytest.raises(ValueError, match="threshold state is for method"):
        det2.restore_stream(state)
    with pytest.raises(ValueError, match="version"):
        detector.restore_stream({**state, "version": 99})
    with pytest.raises(ValueError, match="'energy' must be finite numbers of shape"):
        detector.restore_stream({**state, "energy": state["energy"][:-1]})
    with pytest.raises(ValueError, match="'shift' must be finite"):
        detector.restore_stream({**state, "shift": state["shift"] * np.nan})
    with pytest.raises(ValueError, match="'rows' must be a count"):
        detector.restore_stream({**state, "rows": -1})


def load_model_like(detector: Detector, settings: Any) -> Detector:
    det = Detector(detector.model, detector.scaler, detector.calib, detector.sensors, settings, detector.manifest)
    return det
