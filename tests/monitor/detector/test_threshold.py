"""Rolling thresholds learn only from what they did not flag, slowly and within bounds."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.detector.threshold import Bounds, QuantileThreshold, SpotThreshold, StaticThreshold


def _feed(th: object, scores: np.ndarray) -> None:
    """Feed scores the way the detector does: learn only from unflagged samples."""
    for s in scores:
        if s <= th.value:  # type: ignore[attr-defined]
            th.learn(float(s))  # type: ignore[attr-defined]


def test_quantile_threshold_rises_with_noisier_normal_data() -> None:
    """Normal scores 30% larger than calibration raise the threshold, within the upper bound."""
    rng = np.random.default_rng(0)
    th = QuantileThreshold(base=1.0, reference=0.5, bounds=Bounds(1.0, 1.5, 0.01))
    _feed(th, np.abs(rng.normal(0, 0.5 / 1.645 * 1.3, 20000)))
    assert 1.15 < th.value <= 1.5


def test_quantile_threshold_ignores_a_fault_it_flags() -> None:
    """A long run of flagged (above-threshold) scores leaves the threshold where it was."""
    th = QuantileThreshold(base=1.0, reference=0.5, bounds=Bounds(1.0, 1.5, 0.01))
    before = th.value
    _feed(th, np.full(50000, 3.0))
    assert th.value == before


def test_quantile_threshold_speed_is_bounded() -> None:
    """However extreme the unflagged scores, one sample moves the threshold by at most the step."""
    th = QuantileThreshold(base=1.0, reference=0.5, bounds=Bounds(0.5, 2.0, 0.01))
    prev = th.value
    for _ in range(100):
        th.learn(0.99)
        assert abs(th.value - prev) <= 0.01 * 1.0 + 1e-12
        prev = th.value


def test_spot_threshold_stays_near_calibration_on_matching_data() -> None:
    """SPOT on data shaped like its calibration keeps a threshold within its bounds."""
    rng = np.random.default_rng(1)
    calib = rng.exponential(0.2, 5000)
    level = float(np.quantile(calib, 0.98))
    base = float(np.quantile(calib, 0.995))
    th = SpotThreshold(base, level, list(calib[calib > level] - level), 0.005, 0.02, Bounds(0.8, 1.5, 0.002))
    _feed(th, rng.exponential(0.2, 5000))
    assert 0.8 * base <= th.value <= 1.5 * base


def test_spot_tail_fit_after_months_of_turnover_matches_one_made_from_the_peaks_held() -> None:
    """The running moments behind each refit stay those of the peaks in the deque after it has turned over
    many times (each refit is O(1), so nothing is re-summed; rounding must not build up)."""
    rng = np.random.default_rng(2)
    th = SpotThreshold(1.5, 1.0, list(rng.exponential(0.1, 500)), 0.001, 0.02, Bounds(0.5, 2.0, 0.01))
    scores = 0.8 + rng.normal(0, 0.1, 200_000)  # ~2 % over the level: ~4,600 peaks through a deque of 500
    scores[::997] = 1.0 + 1e-12  # peaks many orders of magnitude apart share the sums
    _feed(th, scores)
    peaks = np.array(th.peaks)
    assert len(peaks) == 500
    mean, var = peaks.mean(), peaks.var(ddof=1)
    gamma, sigma = 0.5 * (1.0 - mean * mean / var), 0.5 * mean * (mean * mean / var + 1.0)
    expected = 1.0 + sigma / gamma * ((0.001 / th.peak_rate) ** (-gamma) - 1.0)
    got = th._quantile()
    assert got is not None and got == pytest.approx(expected, rel=1e-12)


def test_static_threshold_never_moves() -> None:
    """The static method is the calibrated value forever."""
    th = StaticThreshold(2.0)
    _feed(th, np.linspace(0, 1.9, 100))
    assert th.value == 2.0


def test_invalid_bounds_are_refused_with_the_rule() -> None:
    with pytest.raises(ValueError, match="low <= 1 <= high"):
        Bounds(low=1.2, high=1.5)
