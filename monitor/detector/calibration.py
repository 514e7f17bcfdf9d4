"""Out-of-fold calibration; the deployed model is the last fold's, or, on a history too short to back
the target anyway, a model fitted on all of it.

Scores of the data a model trained on are far too small (in-sample thresholds
give 40-75% false alarms on TEP). So the history is cut into contiguous
blocks; each block is scored by a model fitted without it, and the residual
spreads, score normalisers and threshold come from those out-of-fold scores.

The deployed model is the fold model of the *last* block (trained on all the
history before it). It used to be a refit on all the history for the folds'
median epoch, but a refit's scores on new data are not distributed like the
out-of-fold scores it was calibrated on (on main, a stationary 6-sensor
process raised 2.2x its target, the issue reports 30x on a 10-sensor one).
Every fold model is fitted by the same recipe on the same amount of data,
so the pooled out-of-fold scores are what the deployed model gives on new
data of the same process. From :data:`LONG_HISTORY` rows on, the last block
alone holds enough calibration data, and only its model is fitted (one fit,
not K + 1).

When the history cannot back the target within a factor of two even at 1 sd
whichever model is deployed (:data:`ALL_ROWS_BELOW`), every row counts more
for detection than for calibration: a model is fitted on all of it, and its
level on new data is predicted from its in-sample residuals times the folds'
ratio of out-of-fold to in-sample residuals (the promise stays "short").
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import logs
from .alarms import AlarmSettings
from .coverage import residual_wander
from .episodes import episodes
from .fit import FitOptions, ProgressFn, fit
from .model import DAEConfig, DenoisingAE
from .promise import CONFIDENCE, Promise, Target, choose
from .scoring import Calibration, Smoothed, combine, initial_state, smooth, stream_components
from .windows import WindowSet

log = logs.get("calibration")

#: rows from which only the last block is held out and one model is fitted
LONG_HISTORY = 20_000
#: the deployed model's level on its own block against the pooled one: this quantile, this weight (exponent)
LEVEL_QUANTILE = 0.9
LEVEL_WEIGHT = 0.5
#: a level spread measured from a handful of parts is read at this one-sided confidence: 0.5 is the
#: median-unbiased value (0.8 made 4,000-row histories with 3 folds "short": a 2.1x factor at 2 dof, and
#: the model fitted on all rows that a short history deploys then realised 3.3x where the last fold's
#: model had kept 1.1x)
LEVEL_SD_CONFIDENCE = 0.5
#: below this chance of realising within 2x of the promise (1 sd), a fold history deploys a model fitted on
#: all its rows: it cannot back the target either way, and detection needs every row
ALL_ROWS_BELOW = 0.68
#: quantile of the normal energy and shift that normalises each to 1 (relative weights only)
NORM_QUANTILE = 0.995


@dataclass(frozen=True)
class CalibrationOptions:
    folds: int = 5
    target: Target = Target("rate", 0.005, 1.0)
    alarm: AlarmSettings = AlarmSettings()
    alpha: float = 0.12
    shrink: float = 0.5
    shrink_resid: float = 0.0


@dataclass
class TrainReport:
    """What training did, for the manifest and the user."""

    best_epochs: list[int] = field(default_factory=list)
    final_epochs: int = 0
    fits: int = 0
    deployed_rows: int = 0  # history rows the deployed model was fitted on
    seconds: float = 0.0
    train_loss: float = 0.0
    val_loss: float = 0.0


def min_rows(window: int, folds: int) -> int:
    """Fewest history rows that leave every fold enough windows to train and score."""
    return max(folds * (window + 20), 60)


def planned_fits(n: int, folds: int) -> int:
    """Models fitted for a history of ``n`` rows: every fold's, or from :data:`LONG_HISTORY` rows the last one's."""
    return 1 if n >= LONG_HISTORY else folds


def _fold_bounds(n: int, folds: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, n, folds + 1).astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def _fold_windows(z: np.ndarray, a: int, b: int, window: int) -> WindowSet:
    return WindowSet(z, window, parts=[(0, a), (b, len(z))])  # drawn per batch, never all built


def _block_components(model: DenoisingAE, z: np.ndarray, a: int, b: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    return stream_components(model, z, a, b, window)  # windows built a chunk at a time


def calibrate_and_fit(
    z: np.ndarray,
    cfg: DAEConfig,
    opts: FitOptions,
    seed: int,
    copts: CalibrationOptions,
    progress: ProgressFn | None = None,
    stage: Callable[[str, int], None] | None = None,
) -> tuple[DenoisingAE, Calibration, TrainReport]:
    """Fit the fold models, calibrate on their held-out blocks; the last block's model is deployed."""
    started = time.perf_counter()
    n = len(z)
    report = TrainReport()
    bounds = _fold_bounds(n, copts.folds)
    chosen = list(range(len(bounds)))[-planned_fits(n, copts.folds) :]
    blocks: list[tuple[np.ndarray, np.ndarray]] = []
    fold_val: list[float] = []
    optimism: list[float] = []  # per fold: log of its out-of-fold over its in-sample mean squared residual
    model: DenoisingAE | None = None
    for i, k in enumerate(chosen):
        a, b = bounds[k]
        if stage:
            stage(f"fold {i + 1}/{len(chosen)}", opts.max_epochs)
        res = fit(_fold_windows(z, a, b, cfg.window), cfg, opts, seed + 1000 * (k + 1), progress=progress)
        report.best_epochs.append(res.best_epoch)
        fold_val.append(res.val_loss)
        blocks.append(_block_components(res.model, z, a, b, cfg.window))
        if len(chosen) > 1:
            optimism.append(_optimism(res.model, z, a, b, cfg.window, blocks[-1][0]))
        model, report.deployed_rows, report.train_loss = res.model, a, res.train_loss
        log.debug("fold_done", fold=k + 1, best_epoch=res.best_epoch, val_loss=round(res.val_loss, 5))
    assert model is not None, "no fold was fitted"
    calib = calibrate(blocks, copts)
    report.final_epochs = report.best_epochs[-1]
    if len(chosen) > 1 and calib.promise["confidence"] < ALL_ROWS_BELOW:
        # The history cannot back the target within 2x even at 1 sd whichever model is deployed, and on so short a
        # history every row counts for detection (TEP, 500 rows: FAR 2.4/3.4 % -> 0.9/2.9 % at the same
        # FDR): deploy a model fitted on all of it, its level predicted from its in-sample residuals and
        # the folds' ratio of out-of-fold to in-sample residuals.
        epochs = max(5, int(np.median(report.best_epochs)))
        if stage:
            stage("deployed model (all rows)", epochs)
        final = fit(WindowSet(z, cfg.window), cfg, opts, seed, fixed_epochs=epochs, progress=progress)
        energy, _ = stream_components(final.model, z, 0, n, cfg.window)
        ratio = float(np.exp(np.mean(optimism))) * float(energy.mean())
        pooled = float(np.concatenate([e for e, _ in blocks]).mean())
        spread = upper_sd(float(np.std(optimism, ddof=1)), len(optimism) - 1) if len(optimism) > 1 else 0.0
        calib = calibrate(blocks, copts, level=max(ratio, 1e-12) / max(pooled, 1e-12), level_sd=spread)
        model, report.deployed_rows, report.train_loss, report.final_epochs = final.model, n, final.train_loss, epochs
        report.fits += 1
    report.fits += len(chosen)
    report.val_loss = float(np.mean(fold_val))
    report.seconds = time.perf_counter() - started
    return model, calib, report


def _shrink(scale: np.ndarray, weight: float) -> np.ndarray:
    """Pull per-sensor spreads toward their median.

    A spread estimated from a short history is noisy, and the sensors whose
    spread happens to come out smallest would raise most of the false alarms.
    """
    var = scale * scale
    return np.sqrt((1.0 - weight) * var + weight * float(np.median(var)))


@dataclass(frozen=True)
class _Scales:
    """How a model's residuals are put on one scale: per-sensor spreads and the two components' normalisers."""

    resid: np.ndarray  # (d,) RMS residual per sensor
    shift: np.ndarray  # (d,) RMS smoothed signed residual per sensor, in resid units
    energy_norm: float
    shift_norm: float


def _fit_scales(
    raw_energy: np.ndarray, smoothed: Smoothed, resid_ref: np.ndarray, copts: CalibrationOptions
) -> _Scales:
    """Scales fitted on these rows; ``smoothed`` holds their components already divided by ``resid_ref``."""
    resid = _shrink(np.sqrt(np.maximum(raw_energy.mean(axis=0), 1e-12)), copts.shrink_resid)
    ratio = resid_ref / resid
    energy, shift = smoothed.energy * (ratio * ratio), smoothed.shift * ratio
    shift_scale = _shrink(np.sqrt(np.maximum((shift * shift).mean(axis=0), 1e-12)), copts.shrink)
    energy_norm = float(np.quantile(energy.mean(axis=1), NORM_QUANTILE))
    shift_norm = float(np.quantile((np.abs(shift) / shift_scale).max(axis=1), NORM_QUANTILE))
    return _Scales(resid, shift_scale, energy_norm, shift_norm)


def _score_with(smoothed: Smoothed, resid_ref: np.ndarray, sc: _Scales) -> np.ndarray:
    ratio = resid_ref / sc.resid
    energy, shift = smoothed.energy * (ratio * ratio), smoothed.shift * ratio
    score, _ = combine(Smoothed(energy, shift, energy[-1], shift[-1]), sc.shift, sc.energy_norm, sc.shift_norm)
    return score


def _rows(sm: Smoothed, rows: np.ndarray) -> Smoothed:
    return Smoothed(sm.energy[rows], sm.shift[rows], sm.last_energy, sm.last_shift)


def _cross_fitted(
    raw_energy: np.ndarray,
    smoothed: Smoothed,
    resid_ref: np.ndarray,
    parts: list[np.ndarray],
    copts: CalibrationOptions,
) -> np.ndarray:
    """Each part's scores with the scales fitted on the other parts.

    Scales fitted on the very rows the threshold is then chosen on fit their tail too: a sensor whose
    residuals ran high in the calibration data gets a wider spread and its excursions look smaller there
    than they will on new data. On two iid 30,000-row histories the threshold came out 0.6-3 % low and new
    data realised 1.4-1.7x the promised samples in alarm; scored with scales from the other parts, 1.0-1.1x
    (the deployed model keeps the scales fitted on all of them). ``parts`` are row indices.
    """
    out = np.empty(len(smoothed.energy))
    for k, rows in enumerate(parts):
        rest = np.concatenate([p for j, p in enumerate(parts) if j != k])
        sc = _fit_scales(raw_energy[rest], _rows(smoothed, rest), resid_ref, copts)
        out[rows] = _score_with(_rows(smoothed, rows), resid_ref, sc)
    return out


#: every calibration block is cut into this many stretches for cross-fitting the scales: scales from
#: (K-1)/K of the rows are a little noisier than the deployed ones from all of them, which makes the
#: cross-fitted tail a little heavier than new data's; at 5, TEP's 500-row history lost 8 points of
#: detection (FDR 93.2 -> 83.5 %, FAR on d00_te 4.7 -> 0.0 %), at 10 it lost 4 (89.4 %, 2.2 %)
SCALE_PARTS = 10


def calibrate(
    blocks: list[tuple[np.ndarray, np.ndarray]],
    copts: CalibrationOptions,
    level: float | None = None,
    level_sd: float = 0.0,
) -> Calibration:
    """Residual spreads, normalisers, the threshold and its promise from out-of-fold raw components.

    The last block's model is the deployed one, unless ``level`` is given: a model fitted on all the
    history is, whose mean squared residual on new data is predicted to be ``level`` x the pooled one
    (uncertain by ``level_sd`` in its logarithm). The threshold is chosen on scores whose scales were
    fitted without them (:func:`_cross_fitted`), as new data's will be."""
    alpha = copts.alpha
    energy_all = np.concatenate([e for e, _ in blocks])
    resid_scale = _shrink(np.sqrt(np.maximum(energy_all.mean(axis=0), 1e-12)), copts.shrink_resid)
    # The out-of-fold residuals are smoothed as one stream, as the deployed model
    # will see new data: offsets between fold models count as normal wander.
    shift_all = np.concatenate([s for _, s in blocks])
    e0, s0 = initial_state(energy_all.shape[1])
    sm = smooth(energy_all, shift_all, resid_scale, alpha, e0[None], s0[None], [len(energy_all)])
    warm = int(min(round(1.0 / alpha), len(energy_all) // 10))
    E, S, raw = sm.energy[warm:], sm.shift[warm:], energy_all[warm:]
    kept = Smoothed(E, S, sm.last_energy, sm.last_shift)
    sizes = [len(e) for e, _ in blocks]
    sizes[0] -= warm
    cuts = np.cumsum(sizes)[:-1]
    # cross-fitting groups: the j-th of SCALE_PARTS stretches of every block (each group holds every fold
    # model's scores, so its held-out scales differ from the deployed ones only by sampling, not by model)
    pieces = [np.array_split(r, SCALE_PARTS) for r in np.split(np.arange(len(E)), cuts)]
    groups = [np.concatenate([p[j] for p in pieces]) for j in range(SCALE_PARTS)]
    deployed = _fit_scales(raw, kept, resid_scale, copts)
    oof = _cross_fitted(raw, kept, resid_scale, groups, copts)
    resid_scale, shift_scale = deployed.resid, deployed.shift
    energy_norm, shift_norm = deployed.energy_norm, deployed.shift_norm
    parts = np.split(oof, cuts)
    if level is not None:  # energy scales with the mean squared residual, the shift with its root
        energy_norm, shift_norm = energy_norm * level, shift_norm * math.sqrt(level)
        level_sd = math.hypot(level_sd, _level_spread(parts) / math.sqrt(len(parts)))
    elif len(blocks) > 1:
        # The deployed model is the last block's. Fold models differ by a few percent in level, and a
        # few percent of threshold is a factor of two in false alarms; its own block says where its level
        # lies, but from a fifth of the data. The two estimates are about equally uncertain, so its scores
        # are put halfway to the pooled scale (the pooled tail keeps the shape).
        mine, pooled_q = float(np.quantile(parts[-1], LEVEL_QUANTILE)), float(np.quantile(oof, LEVEL_QUANTILE))
        own = (max(mine, 1e-12) / max(pooled_q, 1e-12)) ** LEVEL_WEIGHT
        energy_norm, shift_norm = energy_norm * own, shift_norm * own
        level_sd = _level_spread(parts) * LEVEL_WEIGHT
    else:  # one model, calibrated on its own block: only that block's sampling noise
        level_sd = _level_spread(np.array_split(oof, 5)) / math.sqrt(5)
    al = copts.alarm
    promise = choose(oof, copts.target, al.on_delay, al.off_delay, al.deadband, level_sd)
    # within each block: the offsets between fold models are the level's uncertainty (level_sd), not wander
    wander = residual_wander(np.concatenate([b - b.mean(axis=0) for b in np.split(S, cuts)]))
    promise = dataclasses.replace(
        promise,
        residual_stretches=round(len(S) / wander, 1),
        residual_samples=round(wander, 1),
        residual_memory=round((2.0 - alpha) / alpha, 1),  # white residuals through the smoothing: no wander
    )
    threshold = promise.threshold
    spot_at = float(np.quantile(oof, 0.98))
    peaks = oof[oof > spot_at] - spot_at
    spot_rate = len(peaks) / len(oof)
    seen = episodes(oof, threshold, al.on_delay, al.off_delay, al.deadband)
    return Calibration(
        resid_scale=resid_scale,
        shift_scale=shift_scale,
        energy_norm=energy_norm,
        shift_norm=shift_norm,
        alpha=alpha,
        threshold=threshold,
        target_rate=promise.row_rate,
        reference=float(np.quantile(oof, 0.9)),
        spot_level=spot_at,
        spot_peaks=[float(x) for x in peaks][-500:],
        oof_rows=len(oof),
        oof_exceed_rate=seen.rows / len(oof),
        spot_risk=spot_risk(peaks, spot_rate, threshold - spot_at),
        spot_rate=spot_rate,
        promise={
            **promise.to_dict(),
            "alarm": dict(al.__dict__),
            "deployed": "last fold" if level is None else "all rows",
        },
    )


def _optimism(model: DenoisingAE, z: np.ndarray, a: int, b: int, window: int, held_out: np.ndarray) -> float:
    """log of a fold model's mean squared residual on its held-out block over that on its training rows."""
    inside = [stream_components(model, z, lo, hi, window)[0] for lo, hi in ((0, a), (b, len(z))) if hi > lo]
    return math.log(max(float(held_out.mean()), 1e-12) / max(float(np.concatenate(inside).mean()), 1e-12))


def _level_spread(parts: list[np.ndarray]) -> float:
    """sd of the parts' log score levels (their 0.9 quantiles) around the pooled level, median-unbiased.

    Five parts give an sd with four degrees of freedom, which falls below the true one more often than not
    (6 times in 10, median 0.92x; three parts: median 0.83x), so it is read as the value the true sd
    exceeds half the time (:data:`LEVEL_SD_CONFIDENCE`).
    """
    pooled = max(float(np.quantile(np.concatenate(parts), LEVEL_QUANTILE)), 1e-12)
    logs_ = [math.log(max(float(np.quantile(p, LEVEL_QUANTILE)), 1e-12) / pooled) for p in parts if len(p) > 10]
    return upper_sd(float(np.std(logs_, ddof=1)), len(logs_) - 1) if len(logs_) > 1 else 0.0


def upper_sd(sd: float, dof: int, confidence: float = LEVEL_SD_CONFIDENCE) -> float:
    """One-sided upper confidence bound on a standard deviation estimated with ``dof`` degrees of freedom
    (at confidence 0.5: its median-unbiased value).

    sd * sqrt(dof / chi2_(1-confidence)(dof)), the chi-square quantile by Wilson & Hilferty's cube-root
    normal approximation (within 1 % of the exact one from 3 dof up; scipy is not a dependency).

    >>> round(upper_sd(1.0, 4, 0.9), 2)  # exact: sqrt(4 / 1.064) = 1.94
    1.94
    """
    if dof < 1 or sd <= 0:
        return max(sd, 0.0)
    z = statistics.NormalDist().inv_cdf(1.0 - confidence)
    h = 2.0 / (9.0 * dof)
    chi2 = dof * max(1.0 - h + z * math.sqrt(h), 1e-3) ** 3
    return sd * math.sqrt(dof / chi2)


def spot_risk(peaks: np.ndarray, rate: float, excess: float) -> float:
    """The risk at which :class:`~.threshold.SpotThreshold`'s own tail fit, started from these peaks,
    sits at the calibrated threshold: the rolling threshold starts where calibration put it and
    moves only when the new data's tail differs from the history's."""
    if len(peaks) < 10 or rate <= 0:
        return 0.0
    mean, var = float(np.mean(peaks)), float(np.var(peaks, ddof=1))
    if var <= 0 or mean <= 0:
        return 0.0
    gamma = 0.5 * (1.0 - mean * mean / var)
    sigma = 0.5 * mean * (mean * mean / var + 1.0)
    x = max(excess, 0.0)
    if abs(gamma) < 1e-6:
        r = float(np.exp(-x / sigma))
    else:
        base = 1.0 + gamma * x / sigma
        r = 0.0 if base <= 0 else float(base ** (-1.0 / gamma))
    return float(min(max(r * rate, 1e-9), 0.5))


def promise_of(calib: Calibration) -> Promise | None:
    """The promise recorded with a calibration (None for models trained before promises)."""
    if not calib.promise:
        return None
    fields = {k: v for k, v in calib.promise.items() if k in Promise.__dataclass_fields__}
    if fields.get("supported_episodes_per_day", 0.0) is None:
        fields["supported_episodes_per_day"] = math.inf
    fields.setdefault("level_factor", 1.0)
    fields.setdefault("confidence", CONFIDENCE if fields.get("support") == "ok" else 0.0)
    return Promise(**fields)
