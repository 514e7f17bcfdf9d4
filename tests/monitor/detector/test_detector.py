"""The detector's streaming contract: causal, batch-independent, per-stream state, attribution."""

from __future__ import annotations

import numpy as np

from monitor.detector import Detector
from tests.monitor.detector.fixtures import detector, history, tiny_model  # noqa: F401


def _run(det: Detector, x: np.ndarray, sizes: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    state = det.new_stream()
    parts, start = [], 0
    for n in sizes:
        parts.append(det.score(state, x[start : start + n]))
        start += n
    return (
        np.concatenate([p.score for p in parts]),
        np.concatenate([p.threshold for p in parts]),
        np.concatenate([p.anomaly for p in parts]),
    )


def test_scores_do_not_depend_on_batch_boundaries(detector: Detector) -> None:
    """Row-by-row, odd-sized and whole-file batches give the same scores, thresholds and alarms."""
    x = history(300, seed=5)
    x[150:, 2] += 3.0
    whole = _run(detector, x, [300])
    for sizes in ([1] * 300, [7, 13, 1, 100, 179], [150, 150]):
        got = _run(detector, x, sizes)
        for a, b in zip(whole, got):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_prefix_scores_like_the_same_rows_of_the_whole(detector: Detector) -> None:
    """Causality: rows 1..i score identically whether or not later rows exist."""
    x = history(200, seed=6)
    full = _run(detector, x, [200])[0]
    prefix = _run(detector, x[:57], [57])[0]
    np.testing.assert_allclose(full[:57], prefix, rtol=1e-5, atol=1e-6)


def test_score_many_equals_separate_streams(detector: Detector) -> None:
    """One forward pass for several assets gives each asset what it would get alone."""
    a, b = history(80, seed=1), history(50, seed=2) + 0.5
    sa, sb = detector.new_stream(), detector.new_stream()
    together = detector.score_many([(sa, a, None), (sb, b, None)])
    alone_a = detector.score(detector.new_stream(), a)
    alone_b = detector.score(detector.new_stream(), b)
    np.testing.assert_allclose(together[0].score, alone_a.score, rtol=1e-5)
    np.testing.assert_allclose(together[1].score, alone_b.score, rtol=1e-5)


def test_first_rows_are_scored_and_normal_data_is_quiet(detector: Detector) -> None:
    """Every row gets a finite score (the window is padded causally) and normal data raises no alarm."""
    res = detector.score(detector.new_stream(), history(400, seed=11))
    assert len(res.score) == 400 and np.isfinite(res.score).all()
    assert res.anomaly.mean() < 0.05


def test_a_sensor_bias_raises_an_alarm_naming_the_sensor(detector: Detector) -> None:
    """A 6-sigma bias on one sensor is flagged quickly and that sensor tops the attribution."""
    x = history(400, seed=12)
    sd = x[:200, 4].std()
    x[200:, 4] += 6 * sd
    res = detector.score(detector.new_stream(), x)
    assert res.anomaly[:200].mean() < 0.05
    assert res.anomaly[220:].mean() > 0.9
    raised = [tr for _, tr in res.transitions if tr.kind == "raised"]
    assert raised and raised[-1].episode.top_sensors[0] == "s4"
    assert detector.sensors[res.top[-1][0]] == "s4"


def test_inputs_are_not_mutated(detector: Detector) -> None:
    """Scoring never writes into the caller's array."""
    x = history(60, seed=3)
    copy = x.copy()
    detector.score(detector.new_stream(), x)
    np.testing.assert_array_equal(x, copy)


def test_windows_and_smoothing_of_many_streams_equal_each_stream_alone() -> None:
    """One batch of several streams gives each stream's own windows and smoothing, padding included."""
    from monitor.detector.smoothing import ewma
    from monitor.detector.windows import stream_windows

    rng = np.random.default_rng(3)
    window, d = 4, 3
    sizes_per_batch = [[1, 0, 4], [3, 2, 0], [window + 2, 1, 70]]
    tails: list[np.ndarray | None] = [None, None, None]
    rows = [0, 0, 0]
    state = np.ones((3, d))
    for sizes in sizes_per_batch:
        zs = [rng.normal(size=(n, d)) for n in sizes]
        live = [k for k, n in enumerate(sizes) if n]
        z = np.concatenate([zs[k] for k in live])
        windows, seen, new_tails = stream_windows(
            z, [sizes[k] for k in live], [tails[k] for k in live], window, [rows[k] for k in live]
        )
        smoothed, last = ewma(z, 0.3, state[live], [sizes[k] for k in live])
        start = 0
        for j, k in enumerate(live):
            alone, alone_seen, alone_tail = stream_windows(zs[k], [sizes[k]], [tails[k]], window, [rows[k]])
            np.testing.assert_array_equal(windows[start : start + sizes[k]], alone)
            np.testing.assert_array_equal(seen[start : start + sizes[k]], alone_seen)
            np.testing.assert_array_equal(new_tails[j], alone_tail[0])
            one, one_last = ewma(zs[k], 0.3, state[k : k + 1], [sizes[k]])
            np.testing.assert_allclose(smoothed[start : start + sizes[k]], one, rtol=1e-12)
            np.testing.assert_allclose(last[j], one_last[0], rtol=1e-12)
            tails[k], rows[k], state[k] = new_tails[j], rows[k] + sizes[k], last[j]
            start += sizes[k]


def test_smoothing_matches_the_recursion_across_blocks() -> None:
    """The block matrix form is y[t] = (1-a) y[t-1] + a x[t], also across block boundaries."""
    from monitor.detector.smoothing import BLOCK, ewma

    x = np.random.default_rng(5).normal(size=(2 * BLOCK + 7, 2))
    y, last = ewma(x, 0.2, np.zeros((1, 2)), [len(x)])
    ref, prev = np.empty_like(x), np.zeros(2)
    for t in range(len(x)):
        prev = 0.8 * prev + 0.2 * x[t]
        ref[t] = prev
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(last[0], ref[-1], rtol=1e-10)


def test_rows_far_outside_the_training_range_are_flagged_and_blame_the_sensors_that_moved(
    detector: Detector,
) -> None:
    """Two sensors pushed 57 and 58 training standard deviations away: the rows are flagged as outside the
    training range and those two sensors lead the attribution of every row (furthest first), whatever the
    residuals of the others; rows before the shift are not flagged."""
    x = history(300, seed=21)
    sd = detector.scaler.scale
    x[100:, 1] += 57 * sd[1]
    x[100:, 4] += 58 * sd[4]
    res = detector.score(detector.new_stream(), x)
    assert res.outside is not None
    assert not res.outside[:100].any() and res.outside[100:].all()
    assert (np.sort(res.top[100:, :2], axis=1) == [1, 4]).all()
    dist = detector.training_distance(x)
    rows = np.arange(100, 300)
    assert (dist[rows, res.top[100:, 0]] >= dist[rows, res.top[100:, 1]]).all()
    assert dist[150, 4] > 50 and dist[50].max() < 10
    assert detector.score(detector.new_stream(), history(300, seed=22)).outside is None


def test_a_sensor_constant_in_training_that_moves_is_outside_the_training_range(detector: Detector) -> None:
    det = detector
    saved = det.scaler.constant.copy()
    det.scaler.constant[:] = False
    det.scaler.constant[3] = True  # as if s3 never moved in training
    try:
        x = np.tile(det.scaler.mean, (5, 1))
        x[3:, 3] += 0.5
        dist = det.training_distance(x)
        assert (dist[:3, 3] == 0).all() and np.isinf(dist[3:, 3]).all()
    finally:
        det.scaler.constant[:] = saved


def test_a_muted_stream_is_scored_but_raises_nothing_and_its_threshold_learns_nothing(detector: Detector) -> None:
    """A maintenance window (StreamState.muted): the same scores as unmuted, no transition, the threshold's
    state unchanged by the rows (an unmuted stream learns from the same normal rows); after it, the threshold
    waits its holdoff before learning again."""
    x = history(400, seed=4)
    biased = x.copy()
    biased[100:200, 1] += 8.0  # a bias that raises an alarm when not muted
    loud, quiet, control = detector.new_stream(), detector.new_stream(), detector.new_stream()
    for st in (loud, quiet, control):
        detector.score(st, x[:100])
    before = quiet.threshold.to_state()
    quiet.muted = True
    muted = detector.score(quiet, biased[100:200])
    normal = detector.score(loud, biased[100:200])
    np.testing.assert_allclose(muted.score, normal.score)
    assert normal.transitions and not muted.transitions and not muted.anomaly.any()
    assert (muted.threshold == muted.threshold[0]).all() and not quiet.alarm.active
    detector.score(quiet, x[200:300])  # normal rows, still muted
    detector.score(control, x[100:300])
    assert quiet.threshold.to_state() == before != control.threshold.to_state()
    quiet.muted = False
    detector.score(quiet, x[300 : 300 + detector.settings.holdoff])
    assert quiet.threshold.to_state() == before  # the holdoff after the window: still nothing learned
    detector.score(quiet, x[300 + detector.settings.holdoff :])
    assert quiet.threshold.to_state() != before
