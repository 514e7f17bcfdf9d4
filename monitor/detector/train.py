"""From a table of normal history to a model folder: what ``plantwatch train`` and the demo run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__, csvio, logs
from ..errors import InputError
from .alarms import AlarmSettings
from .calibration import CalibrationOptions, calibrate_and_fit, min_rows, planned_fits
from .coverage import stretches
from .detector import Detector, DetectorSettings
from .fit import Budget, FitOptions, Progress, resolve_device
from .model import DAEConfig, Scaler, single_thread
from .model_folder import fingerprint, save
from .promise import Target
from .scoring import clear_within
from .value_bounds import TrainingRange

log = logs.get("train")

DEFAULT_WINDOW = 10


def architecture(n_sensors: int, window: int) -> DAEConfig:
    """Default layer sizes: a bottleneck well below the input, capped for speed."""
    n_in = n_sensors * window
    latent = int(min(24, max(2, n_in // 4)))
    hidden = int(min(128, max(2 * latent, n_in)))
    return DAEConfig(n_sensors=n_sensors, window=window, hidden=hidden, latent=latent)


@dataclass(frozen=True)
class TrainSettings:
    """Everything ``plantwatch train`` can be told; the demo uses it too."""

    seed: int = 0
    window: int = DEFAULT_WINDOW
    folds: int = 5
    max_epochs: int = FitOptions.max_epochs
    noise: float = FitOptions.noise
    mask: float = FitOptions.mask
    false_alarm_rate: float | None = None
    false_alarms_per_day: float | None = None
    sample_period: float | None = None
    threshold: str | None = None
    on_delay: int | None = None
    off_delay: int | None = None
    device: str = "auto"  # auto | cpu | cuda
    max_seconds: float | None = None  # wall-clock budget of the whole training


def detector_settings(ts: TrainSettings) -> DetectorSettings:
    base = DetectorSettings()
    try:
        alarm = AlarmSettings(
            on_delay=base.alarm.on_delay if ts.on_delay is None else ts.on_delay,
            off_delay=base.alarm.off_delay if ts.off_delay is None else ts.off_delay,
            deadband=base.alarm.deadband,
        )
        return DetectorSettings(threshold_method=ts.threshold or base.threshold_method, alarm=alarm)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def target(ts: TrainSettings, period: float) -> Target:
    """The operator's target: alarm episodes per day (--false-alarms-per-day) or a share of samples in alarm."""
    if ts.false_alarm_rate is not None and ts.false_alarms_per_day is not None:
        raise InputError("give either --false-alarm-rate or --false-alarms-per-day, not both")
    if not period > 0:
        raise InputError(f"sample period {period:g} s must be > 0")
    if ts.false_alarms_per_day is not None:
        per_day = ts.false_alarms_per_day
        if not 0 < per_day < 0.1 * 86400.0 / period:
            raise InputError(
                f"--false-alarms-per-day must be > 0 and below {0.1 * 86400.0 / period:g} "
                f"(one alarm every 10 samples at a {period:g} s sample period)"
            )
        return Target("episodes_per_day", float(per_day), float(period))
    rate = 0.005 if ts.false_alarm_rate is None else ts.false_alarm_rate
    if not 0 < rate < 0.5:
        raise InputError(f"target false-alarm rate {rate:g} must be in (0, 0.5)")
    return Target("rate", float(rate), float(period))


def _check(table: csvio.Table, ts: TrainSettings) -> None:
    if ts.window < 1:
        raise InputError("--window must be >= 1")
    if ts.folds < 2:
        raise InputError("--folds must be >= 2")
    if ts.max_epochs < 1:
        raise InputError("--epochs must be >= 1")
    if not 0 <= ts.noise < 10 or not 0 <= ts.mask < 1:
        raise InputError("--noise must be in [0, 10) and --mask in [0, 1)")
    need = min_rows(ts.window, ts.folds)
    if len(table) < need:
        raise InputError(
            f"{table.path}: {len(table)} data rows; training with window {ts.window} "
            f"and {ts.folds} folds needs at least {need}"
        )


def check_out(out: Path, force: bool) -> None:
    """Refuse to overwrite a folder unless told to, before any work is done."""
    if out.exists() and not force:
        raise InputError(f"{out}: already exists (use --force to overwrite)")


def train_table(table: csvio.Table, ts: TrainSettings, out: Path, force: bool = False) -> Detector:
    """Train, calibrate and write a model folder from a table of normal history."""
    check_out(out, force)
    _check(table, ts)
    period = ts.sample_period or csvio.sample_period(table.timestamps)
    goal = target(ts, period)
    settings = detector_settings(ts)
    scaler = Scaler.fit(table.values)
    if scaler.constant.all():
        raise InputError(f"{table.path}: every sensor is constant; nothing to learn")
    if scaler.constant.any():
        log.warning("constant_sensors_ignored", sensors=[s for s, c in zip(table.sensors, scaler.constant) if c])
    z = scaler.transform(table.values)
    cfg = architecture(len(table.sensors), ts.window)
    budget = Budget(ts.max_seconds, fits=planned_fits(len(z), ts.folds))  # the fold models share it
    device = resolve_device(ts.device)
    opts = FitOptions(max_epochs=ts.max_epochs, noise=ts.noise, mask=ts.mask, device=device.type, budget=budget)
    copts = CalibrationOptions(folds=ts.folds, target=goal, alarm=settings.alarm)
    single_thread()
    log.info(
        "training_started",
        data=str(table.path),
        rows=len(table),
        sensors=len(table.sensors),
        window=ts.window,
        folds=ts.folds,
        target=f"{goal.value:g} {'of samples' if goal.kind == 'rate' else 'episodes per day'}",
        device=device.type,
        max_seconds=ts.max_seconds,
    )
    progress = Progress("fold 1", opts.max_epochs)
    try:
        model, calib, report = calibrate_and_fit(z, cfg, opts, ts.seed, copts, progress=progress, stage=progress.stage)
    finally:
        progress.close()
    # how much of the process's slow wander the history spans: the promise holds only for states it has seen
    spans = stretches(z)
    al = settings.alarm
    calib.promise.update(
        stretches=round(spans, 1),
        slow_samples=round(len(z) / spans, 1),
        clears_within=clear_within(calib, ts.window, al.off_delay, al.deadband),
    )
    # the training range goes into the manifest: the default plausible bounds of every sensor come from it
    detector = Detector(model, scaler, calib, table.sensors, settings, training_range=TrainingRange.of(table.values))
    extra = {
        "time_column": table.time_column,
        "sample_period": period,
        "training": {
            "data": str(table.path),
            "rows": len(table),
            "seed": ts.seed,
            "folds": ts.folds,
            "max_epochs": opts.max_epochs,
            "best_epochs": report.best_epochs,
            "final_epochs": report.final_epochs,
            "fits": report.fits,
            "deployed_model_rows": report.deployed_rows,
            "noise": opts.noise,
            "mask": opts.mask,
            "seconds": round(report.seconds, 2),
            "device": device.type,
            "max_seconds": ts.max_seconds,
            "stopped_by_budget": budget.exhausted,  # fits the time budget ended before early stopping did
            "fold_val_loss": report.val_loss,
            "torch_version": torch.__version__,
            "plantwatch_version": __version__,
        },
        "data_fingerprint": fingerprint(table.values, table.sensors),
    }
    save(out, detector, extra, force=force)
    log.info(
        "model_written",
        path=str(out),
        seconds=round(report.seconds, 1),
        threshold=round(calib.threshold, 4),
        oof_alarm_rate=round(calib.oof_exceed_rate, 4),
        promised_rate=round(calib.target_rate, 5),
        promised_episodes_per_day=round(float(calib.promise["episodes_per_day"]), 3),
        support=calib.promise["support"],
        confidence=calib.promise["confidence"],
        epochs=report.final_epochs,
    )
    return detector
