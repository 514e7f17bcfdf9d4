"""Out-of-fold calibration, then the deployed model fitted on all the history.

Scores of the data a model trained on are far too small (in-sample thresholds
give 40-75% false alarms on TEP). So the history is cut into contiguous
blocks; each block is scored by a model fitted without it, and the residual
spreads, score normalisers and threshold come from those out-of-fold scores.
The deployed model is then fitted on everything for the median best epoch.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import logs
from .fit import FitOptions, ProgressFn, fit
from .model import DAEConfig, DenoisingAE
from .scoring import Calibration, Smoothed, combine, initial_state, smooth, stream_components
from .windows import WindowSet

log = logs.get("calibration")


@dataclass(frozen=True)
class CalibrationOptions:
    folds: int = 5
    target_rate: float = 0.005
    alpha: float = 0.12
    shrink: float = 0.5
    shrink_resid: float = 0.0


@dataclass
class TrainReport:
    """What training did, for the manifest and the user."""

    best_epochs: list[int] = field(default_factory=list)
    final_epochs: int = 0
    seconds: float = 0.0
    train_loss: float = 0.0
    val_loss: float = 0.0


def min_rows(window: int, folds: int) -> int:
    """Fewest history rows that leave every fold enough windows to train and score."""
    return max(folds * (window + 20), 60)


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
    """Fit K fold models, calibrate on their held-out blocks, fit the deployed model."""
    started = time.perf_counter()
    n = len(z)
    report = TrainReport()
    blocks: list[tuple[np.ndarray, np.ndarray]] = []
    fold_val: list[float] = []
    for k, (a, b) in enumerate(_fold_bounds(n, copts.folds)):
        if stage:
            stage(f"fold {k + 1}/{copts.folds}", opts.max_epochs)
        res = fit(_fold_windows(z, a, b, cfg.window), cfg, opts, seed + 1000 * (k + 1), progress=progress)
        report.best_epochs.append(res.best_epoch)
        fold_val.append(res.val_loss)
        blocks.append(_block_components(res.model, z, a, b, cfg.window))
        log.debug("fold_done", fold=k + 1, best_epoch=res.best_epoch, val_loss=round(res.val_loss, 5))
    calib = calibrate(blocks, copts)
    epochs = max(5, int(np.median(report.best_epochs)))
    if stage:
        stage("deployed model", epochs)
    final = fit(WindowSet(z, cfg.window), cfg, opts, seed, fixed_epochs=epochs, progress=progress)
    report.final_epochs = epochs
    report.train_loss = final.train_loss
    report.val_loss = float(np.mean(fold_val))  # the deployed model has no held-out data
    report.seconds = time.perf_counter() - started
    return final.model, calib, report


def _shrink(scale: np.ndarray, weight: float) -> np.ndarray:
    """Pull per-sensor spreads toward their median.

    A spread estimated from a short history is noisy, and the sensors whose
    spread happens to come out smallest would raise most of the false alarms.
    """
    var = scale * scale
    return np.sqrt((1.0 - weight) * var + weight * float(np.median(var)))


def calibrate(blocks: list[tuple[np.ndarray, np.ndarray]], copts: CalibrationOptions) -> Calibration:
    """Residual spreads, normalisers and the threshold from out-of-fold raw components."""
    alpha, q = copts.alpha, 1.0 - copts.target_rate
    energy_all = np.concatenate([e for e, _ in blocks])
    resid_scale = _shrink(np.sqrt(np.maximum(energy_all.mean(axis=0), 1e-12)), copts.shrink_resid)
    # The out-of-fold residuals are smoothed as one stream, as the deployed model
    # will see new data: offsets between fold models count as normal wander.
    shift_all = np.concatenate([s for _, s in blocks])
    e0, s0 = initial_state(energy_all.shape[1])
    sm = smooth(energy_all, shift_all, resid_scale, alpha, e0[None], s0[None], [len(energy_all)])
    warm = int(min(round(1.0 / alpha), len(energy_all) // 10))
    E, S = sm.energy[warm:], sm.shift[warm:]
    shift_scale = _shrink(np.sqrt(np.maximum((S * S).mean(axis=0), 1e-12)), copts.shrink)
    energy_norm = float(np.quantile(E.mean(axis=1), q))
    shift_norm = float(np.quantile((np.abs(S) / shift_scale).max(axis=1), q))
    oof, _ = combine(Smoothed(E, S, E[-1], S[-1]), shift_scale, energy_norm, shift_norm)
    threshold = float(np.quantile(oof, q))
    level = float(np.quantile(oof, 0.98))
    return Calibration(
        resid_scale=resid_scale,
        shift_scale=shift_scale,
        energy_norm=energy_norm,
        shift_norm=shift_norm,
        alpha=alpha,
        threshold=threshold,
        target_rate=copts.target_rate,
        reference=float(np.quantile(oof, 0.9)),
        spot_level=level,
        spot_peaks=[float(x - level) for x in oof[oof > level]][-500:],
        oof_rows=len(oof),
        oof_exceed_rate=float(np.mean(oof > threshold)),
    )
