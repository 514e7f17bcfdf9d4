"""The false-alarm promise of training holds on new normal data (issue 12 item 1)."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from monitor import csvio
from monitor.detector import AlarmLogic, Detector, TrainSettings, read_manifest, smoothing, train_table
from monitor.detector.calibration import LONG_HISTORY, promise_of, upper_sd
from monitor.detector.coverage import FEW_STRETCHES, residual_wander, stretches
from monitor.detector.episodes import episodes
from monitor.detector.promise import Target, choose, describe, residual_wanders
from monitor.detector.scoring import Calibration


def _smoothed_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """A score-like series: a moving average of squared Gaussian noise (autocorrelated, light tail)."""
    e = (rng.normal(0, 1, (n + 7, 4)) ** 2).mean(axis=1)
    return np.convolve(e, np.ones(8) / 8, "valid")


@pytest.mark.parametrize("seed", range(5))
def test_episodes_are_the_alarm_logic_s(seed: int) -> None:
    rng = np.random.default_rng(seed)
    s = _smoothed_noise(rng, 3000)
    on, off, band = int(rng.integers(1, 6)), int(rng.integers(1, 6)), float(rng.uniform(0.8, 1.0))
    th = float(np.quantile(s, 0.95))
    logic = AlarmLogic(on_delay=on, off_delay=off, deadband=band)
    raised, active = [], 0
    for i, v in enumerate(s.tolist()):
        tr = logic.step(float(i), v, th, None)
        if tr is not None and tr.kind == "raised":
            raised.append(i)
        active += logic.active
    ep = episodes(s, th, on, off, band)
    assert len(raised) > 5
    assert ep.starts.tolist() == raised and ep.rows == active


@pytest.mark.parametrize("target", [Target("rate", 0.005, 60.0), Target("episodes_per_day", 2.0, 60.0)])
def test_a_threshold_chosen_on_a_long_history_keeps_its_promise_on_new_data(target: Target) -> None:
    rng = np.random.default_rng(3)
    p = choose(_smoothed_noise(rng, 20_000), target, on_delay=5, off_delay=3, deadband=0.95)
    new = _smoothed_noise(rng, 200_000)
    got = episodes(new, p.threshold, 5, 3, 0.95)
    per_day = got.count / (len(new) * 60.0 / 86400.0)
    assert p.support == "ok"
    assert 0.5 <= (got.rows / len(new)) / p.row_rate <= 2.0
    assert 0.5 <= per_day / p.episodes_per_day <= 2.0
    promised = p.row_rate if target.kind == "rate" else p.episodes_per_day
    assert promised == pytest.approx(target.value)


def test_a_short_history_says_what_it_can_promise() -> None:
    rng = np.random.default_rng(4)
    p = choose(_smoothed_noise(rng, 600), Target("rate", 0.001, 60.0), on_delay=5, off_delay=3, deadband=0.95)
    assert p.support == "short" and p.method == "tail"
    assert p.upper_episodes_per_day > p.episodes_per_day
    assert p.supported_episodes_per_day > p.episodes_per_day
    lines = describe(p)
    assert lines[0].startswith("promise: expect about ") and "% of samples flagged on normal operation" in lines[0]
    assert lines[1].startswith("warning: the history is too short") and "--false-alarms-per-day" in lines[1]


def _heavy_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Like _smoothed_noise, but from Student-t(5) noise: a tail heavier than exponential."""
    e = (rng.standard_t(5, (n + 7, 4)) ** 2).mean(axis=1)
    return np.convolve(e, np.ones(8) / 8, "valid")


def test_an_extrapolation_far_past_the_episodes_seen_is_bounded_not_promised_within_two_x() -> None:
    """3,000 samples (2 days at one a minute) hold ~30 episodes at the tail's base; a target of 0.72 a day
    is 1.5 of them, a reach the tail's unknown shape makes uncertain by more than 2x: short, and its upper
    bound covers what new data realise. Before the shape counted, this promised 'within 2x' (kept 14 of
    20 seeds) and its bound missed 3 of 20."""
    period, seeds = 60.0, range(10)
    covered = 0
    for seed in seeds:
        rng = np.random.default_rng(seed)
        p = choose(_heavy_noise(rng, 3000), Target("episodes_per_day", 0.72, period), 5, 3, 0.95)
        assert p.support == "short" and p.method == "tail" and p.supported_episodes_per_day > 0.72
        new = _heavy_noise(rng, 100_000)
        covered += episodes(new, p.threshold, 5, 3, 0.95).count / (len(new) * period / 86400.0) <= (
            p.upper_episodes_per_day
        )
    assert covered == len(seeds)
    # a target of 8 episodes is within the tail's reach from 30 (90 % within 2x); 3.6 is not
    p = choose(_heavy_noise(np.random.default_rng(0), 3000), Target("episodes_per_day", 3.85, period), 5, 3, 0.95)
    assert p.support == "ok" and p.method == "tail" and p.confidence >= 0.9
    p = choose(_heavy_noise(np.random.default_rng(0), 3000), Target("episodes_per_day", 1.73, period), 5, 3, 0.95)
    assert p.support == "short" and 0.68 < p.confidence < 0.9


def test_a_level_spread_from_a_few_parts_is_read_median_unbiased() -> None:
    """Five parts give an sd that falls short of the true one 6 times in 10; as read for the promise, half
    the time; and the 80 % bound 2 times in 10."""
    sds = np.random.default_rng(7).normal(0, 1, (4000, 5)).std(axis=1, ddof=1)
    assert 0.56 < float(np.mean(sds < 1.0)) < 0.63
    assert 0.47 < float(np.mean(np.array([upper_sd(float(sd), 4) for sd in sds]) < 1.0)) < 0.53
    assert 0.17 < float(np.mean(np.array([upper_sd(float(sd), 4, 0.8) for sd in sds]) < 1.0)) < 0.23
    assert upper_sd(0.3, 0) == 0.3 and upper_sd(0.0, 4) == 0.0


def _low_rank(rng: np.random.Generator, mix: np.ndarray, n: int) -> np.ndarray:
    return rng.normal(0, 1, (n, mix.shape[1])) @ mix.T + 0.3 * rng.normal(0, 1, (n, mix.shape[0]))


def _train(x: np.ndarray, ts: TrainSettings) -> Detector:
    table = csvio.Table(Path("history.csv"), "time", None, [f"s{j}" for j in range(x.shape[1])], x)
    with tempfile.TemporaryDirectory(prefix="pw-promise-") as tmp:
        return train_table(table, ts, Path(tmp) / "model")


def test_trained_promise_holds_on_new_data_of_a_stationary_process() -> None:
    """Through the training pipeline: 5,000 rows of a stationary 6-sensor process with two latent factors,
    then 20,000 new rows of it. On main before the promise this raised ~30x its target."""
    rng = np.random.default_rng(0)
    mix = rng.normal(0, 1, (6, 2))
    x = _low_rank(rng, mix, 25_000)
    det = _train(x[:5000], TrainSettings(seed=0, window=4, folds=3, max_epochs=10, false_alarm_rate=0.02))
    p = promise_of(det.calib)
    assert p is not None and p.support == "ok" and p.confidence >= 0.9
    res = det.score(det.new_stream(), x[5000:])
    raised = sum(1 for _, tr in res.transitions if tr.kind == "raised")
    per_day = raised / (20_000 * p.target["sample_period"] / 86400.0)  # type: ignore[operator]
    assert 0.5 <= float(res.anomaly.mean()) / p.row_rate <= 2.0, (res.anomaly.mean(), p)
    assert 0.5 <= per_day / p.episodes_per_day <= 2.0, (raised, p)
    assert p.residual_stretches is not None and p.residual_stretches >= FEW_STRETCHES, p
    assert not any("wander" in line for line in describe(p))


def test_residuals_that_wander_slowly_are_measured_per_sensor_and_not_by_one_sticky_sensor() -> None:
    """Each sensor's smoothed residual: white noise through the EWMA comes and goes in ~16 samples; a slow
    AR(1) per sensor (a drifting sensor) in hundreds. One sticky sensor among white ones does not decide."""
    rng = np.random.default_rng(8)
    n, d = 6000, 6

    def ewma(x: np.ndarray) -> np.ndarray:  # the detector's smoothing at its default alpha
        return smoothing.ewma(x, 0.12, np.zeros((1, d)), [n])[0]

    white = ewma(rng.normal(0, 1, (n, d)))
    slow = np.zeros((n, d))
    for t in range(1, n):
        slow[t] = 0.998 * slow[t - 1] + rng.normal(0, 1, d)
    drifting = ewma(rng.normal(0, 1, (n, d)) + 0.3 * slow)
    one_sticky = white.copy()
    one_sticky[:, 0] = slow[:, 0]
    assert residual_wander(white) < 40 and n / residual_wander(white) > FEW_STRETCHES
    assert n / residual_wander(drifting) < FEW_STRETCHES
    assert residual_wander(one_sticky) < 40


def test_a_history_whose_sensors_drift_on_their_own_says_its_promise_holds_only_within_that_drift() -> None:
    """Inputs with a wide main variation (many stretches of it) but each sensor drifting slowly on its own:
    train records how few stretches of the residuals' wander the calibration data hold and warns."""
    rng = np.random.default_rng(4)
    mix = 3.0 * rng.normal(0, 1, (6, 2))
    n = LONG_HISTORY  # one model, calibrated on the last block: drift slower than a block moves the fold
    t = np.arange(n)[:, None]  # models' levels instead, which the promise's level uncertainty covers
    drift = 0.15 * np.sin(2 * np.pi * t / rng.uniform(5000, 20000, 6) + rng.uniform(0, 6.3, 6))  # half the noise
    x = _low_rank(rng, mix, n) + drift
    assert stretches((x - x.mean(axis=0)) / x.std(axis=0)) >= FEW_STRETCHES  # the inputs alone look well covered
    det = _train(x, TrainSettings(seed=0, window=4, folds=3, max_epochs=10, false_alarm_rate=0.01))
    p = promise_of(det.calib)
    assert p is not None and residual_wanders(p), p
    (line,) = [line for line in describe(p) if "wander" in line]
    assert line.startswith("warning: the model's errors wander slowly") and f"~{p.residual_stretches:.0f} " in line


def test_a_short_history_is_recorded_with_its_honest_promise() -> None:
    rng = np.random.default_rng(1)
    x = _low_rank(rng, rng.normal(0, 1, (5, 2)), 400)
    det = _train(x, TrainSettings(seed=0, window=4, folds=2, max_epochs=5, false_alarms_per_day=1.0, sample_period=60))
    p = promise_of(det.calib)
    assert p is not None and p.support == "short"
    assert p.target == {"kind": "episodes_per_day", "value": 1.0, "sample_period": 60.0}
    assert p.episodes_per_day == pytest.approx(1.0) and p.upper_episodes_per_day > 1.0
    # few stretches of the smoothing's memory in 400 rows: a short history, not errors that wander
    assert p.residual_stretches is not None and p.residual_stretches < FEW_STRETCHES
    assert not residual_wanders(p) and not any("wander" in line for line in describe(p))


def test_a_history_spanning_few_stretches_of_its_slow_variation_is_called_too_uniform() -> None:
    rng = np.random.default_rng(5)
    slow = np.zeros(1000)
    for t in range(1, 1000):
        slow[t] = 0.995 * slow[t - 1] + rng.normal()
    x = np.outer(slow, [1.0, -0.5, 0.8]) + 0.1 * rng.normal(0, 1, (1000, 3))
    assert stretches(x) < FEW_STRETCHES < stretches(rng.normal(0, 1, (1000, 3)))
    p = choose(_smoothed_noise(rng, 20_000), Target("rate", 0.01, 1.0), on_delay=5, off_delay=3, deadband=0.95)
    assert not any("too uniform" in line for line in describe(p))
    narrow = dataclasses.replace(p, stretches=stretches(x), slow_samples=1000 / stretches(x))
    assert any(line.startswith("warning: the history may be too uniform") for line in describe(narrow))


def test_the_deployed_model_never_saw_its_calibration_data_and_long_histories_take_one_fit(tmp_path: Path) -> None:
    """The last block's model is deployed (fitted on the rows before it); a history too short to back the
    target deploys a model fitted on all its rows instead (one fit more); from LONG_HISTORY rows on only the
    last block's model is fitted: one fit, not K folds plus a refit."""
    rng = np.random.default_rng(6)
    mix = rng.normal(0, 1, (4, 2))
    cases = ((6000, 0.05, "ok", 3, 4000), (300, 0.001, "short", 4, 300), (LONG_HISTORY, 0.05, "ok", 1, 13333))
    for rows, rate, support, fits, deployed_rows in cases:
        x = _low_rank(rng, mix, rows)
        table = csvio.Table(Path("h.csv"), "time", None, [f"s{j}" for j in range(4)], x)
        ts = TrainSettings(seed=0, window=3, folds=3, max_epochs=2, false_alarm_rate=rate)
        train_table(table, ts, tmp_path / f"m{rows}")
        manifest = read_manifest(tmp_path / f"m{rows}")
        promise = manifest["calibration"]["promise"]
        assert promise["support"] == support
        assert promise["deployed"] == ("all rows" if support == "short" else "last fold")
        assert manifest["training"]["fits"] == fits
        assert manifest["training"]["deployed_model_rows"] == deployed_rows


_OLD_CALIBRATION = {
    "resid_scale": [1.0, 2.0],
    "shift_scale": [0.5, 0.5],
    "energy_norm": 2.0,
    "shift_norm": 3.0,
    "alpha": 0.12,
    "threshold": 1.1,
    "target_rate": 0.005,
    "reference": 0.7,
    "spot_level": 0.9,
    "spot_peaks": [0.1, 0.2],
    "oof_rows": 500,
    "oof_exceed_rate": 0.005,
}


def test_a_model_calibrated_before_promises_still_loads_with_none() -> None:
    """Model folders of the current format written before promises: the calibration reads with defaults,
    the spot threshold starts from the target rate as before, and there is no promise to print."""
    old = _OLD_CALIBRATION
    calib = Calibration.from_dict(old)
    assert calib.spot_risk == 0.0 and calib.promise == {} and promise_of(calib) is None


def test_a_promise_recorded_before_its_confidence_reads_as_its_support_said() -> None:
    """Promises written before the confidence was recorded: "ok" then meant within 2x at 1 sd of the tail."""
    p = choose(_smoothed_noise(np.random.default_rng(3), 20_000), Target("rate", 0.005, 60.0), 5, 3, 0.95)
    for support, confidence in (("ok", 0.9), ("short", 0.0)):
        recorded = {k: v for k, v in p.to_dict().items() if k != "confidence"} | {"support": support}
        calib = Calibration.from_dict({**_OLD_CALIBRATION, "promise": recorded})
        got = promise_of(calib)
        assert got is not None and got.support == support and got.confidence == confidence


@pytest.mark.parametrize("scores", [np.ones(100), np.r_[np.zeros(50), 5.0], np.r_[np.ones(500), 1 + 1e-13]])
def test_a_degenerate_history_still_gives_a_finite_promise_the_manifest_can_hold(scores: np.ndarray) -> None:
    """Constant or near-constant scores and a wildly uncertain level: the promise is finite JSON
    (the manifest is written with allow_nan=False) and says short."""
    p = choose(scores, Target("rate", 0.005, 1.0), on_delay=5, off_delay=3, deadband=0.95, level_sd=1000.0)
    json.dumps(p.to_dict(), allow_nan=False)
    assert p.support == "short" and np.isfinite(p.threshold)
