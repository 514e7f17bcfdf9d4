"""``plantwatch train`` and ``plantwatch score``: the detector on files, as a user runs it."""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__, artefact, csvio, logs
from .alarms import AlarmSettings
from .calibration import CalibrationOptions, calibrate_and_fit, min_rows
from .detector import Detector, DetectorSettings
from .errors import InputError
from .model import DAEConfig, Scaler
from .training import FitOptions, Progress

log = logs.get("offline")

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

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainSettings:
        base = cls()
        return cls(
            seed=args.seed,
            window=base.window if args.window is None else args.window,
            folds=base.folds if args.folds is None else args.folds,
            max_epochs=base.max_epochs if args.epochs is None else args.epochs,
            noise=base.noise if args.noise is None else args.noise,
            mask=base.mask if args.mask is None else args.mask,
            false_alarm_rate=args.false_alarm_rate, false_alarms_per_day=args.false_alarms_per_day,
            sample_period=args.sample_period, threshold=args.threshold,
            on_delay=args.on_delay, off_delay=args.off_delay,
        )


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


def target_rate(ts: TrainSettings, period: float) -> float:
    if ts.false_alarm_rate is not None and ts.false_alarms_per_day is not None:
        raise InputError("give either --false-alarm-rate or --false-alarms-per-day, not both")
    if ts.false_alarms_per_day is not None:
        if ts.false_alarms_per_day <= 0:
            raise InputError("--false-alarms-per-day must be > 0")
        rate = ts.false_alarms_per_day * period / 86400.0
    else:
        rate = 0.005 if ts.false_alarm_rate is None else ts.false_alarm_rate
    if not 0 < rate < 0.5:
        raise InputError(f"target false-alarm rate {rate:g} must be in (0, 0.5)")
    return float(rate)


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
        raise InputError(f"{table.path}: {len(table)} data rows; training with window {ts.window} "
                         f"and {ts.folds} folds needs at least {need}")


def train_table(table: csvio.Table, ts: TrainSettings, out: Path, force: bool = False) -> Detector:
    """Train, calibrate and write a model folder from a table of normal history."""
    if out.exists() and not force:
        raise InputError(f"{out}: already exists (use --force to overwrite)")
    _check(table, ts)
    period = ts.sample_period or csvio.sample_period(table.timestamps)
    rate = target_rate(ts, period)
    settings = detector_settings(ts)
    scaler = Scaler.fit(table.values)
    if scaler.constant.all():
        raise InputError(f"{table.path}: every sensor is constant; nothing to learn")
    if scaler.constant.any():
        log.warning("constant_sensors_ignored", sensors=[s for s, c in zip(table.sensors, scaler.constant) if c])
    z = scaler.transform(table.values)
    cfg = architecture(len(table.sensors), ts.window)
    opts = FitOptions(max_epochs=ts.max_epochs, noise=ts.noise, mask=ts.mask)
    copts = CalibrationOptions(folds=ts.folds, target_rate=rate)
    torch.set_num_threads(1)  # small MLPs: a second thread costs more in sync than it gains
    log.info("training_started", data=str(table.path), rows=len(table), sensors=len(table.sensors),
             window=ts.window, folds=ts.folds, target_rate=rate)
    progress = Progress("fold 1", opts.max_epochs)
    try:
        model, calib, report = calibrate_and_fit(z, cfg, opts, ts.seed, copts, progress=progress, stage=progress.stage)
    finally:
        progress.close()
    detector = Detector(model, scaler, calib, table.sensors, settings)
    extra = {
        "time_column": table.time_column,
        "sample_period": period,
        "training": {
            "data": str(table.path), "rows": len(table), "seed": ts.seed, "folds": ts.folds,
            "max_epochs": opts.max_epochs, "best_epochs": report.best_epochs,
            "final_epochs": report.final_epochs, "noise": opts.noise, "mask": opts.mask,
            "seconds": round(report.seconds, 2), "fold_val_loss": report.val_loss,
            "torch_version": torch.__version__, "plantwatch_version": __version__,
        },
        "data_fingerprint": artefact.fingerprint(table.values, table.sensors),
    }
    artefact.save(out, detector, extra, force=force)
    log.info("model_written", path=str(out), seconds=round(report.seconds, 1), threshold=round(calib.threshold, 4),
             oof_exceed_rate=round(calib.oof_exceed_rate, 4), epochs=report.final_epochs)
    return detector


def train_command(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.force:
        raise InputError(f"{out}: already exists (use --force to overwrite)")
    ts = TrainSettings.from_args(args)
    table = csvio.read_table(args.data)
    started = time.perf_counter()
    det = train_table(table, ts, out, force=args.force)
    print(f"model written to {out}: {det.n_sensors} sensors, window {det.window}, "
          f"threshold {det.calib.threshold:.3f} for a false-alarm rate of {det.calib.target_rate:g}, "
          f"trained in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return 0


def _column_order(detector: Detector, layout: csvio.Layout) -> np.ndarray:
    have, want = layout.sensors, list(detector.sensors)
    missing = [s for s in want if s not in have]
    extra = [s for s in have if s not in want]
    if missing or extra:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
        if extra:
            parts.append("not in training " + ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else ""))
        raise InputError(f"{layout.path}: row 1: columns differ from the model's sensors: {'; '.join(parts)}")
    index = {s: i for i, s in enumerate(have)}
    return np.array([index[s] for s in want], dtype=np.int64)


def score_command(args: argparse.Namespace) -> int:
    detector = artefact.load(args.model)
    if args.top < 0:
        raise InputError("--top must be >= 0")
    detector.settings = DetectorSettings(detector.settings.threshold_method, detector.settings.bounds,
                                         detector.settings.alarm, args.top)
    layout = csvio.read_layout(args.data)
    order = _column_order(detector, layout)
    torch.set_num_threads(1)
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp")
    state = detector.new_stream()
    rows = alarms = 0
    started = time.perf_counter()
    try:
        with open(tmp, "w", newline="") as f:
            header = ([layout.time_column] if layout.time_column else []) + ["score", "threshold", "anomaly", "top_sensor", "top_sensors"]
            f.write(",".join(_csv_cell(h) for h in header) + "\n")
            for chunk in csvio.iter_chunks(layout.path, layout=layout):
                res = detector.score(state, chunk.values[:, order])
                _write_rows(f, detector, chunk.timestamps, res)
                rows += len(chunk.values)
                alarms += sum(1 for _, tr in res.transitions if tr.kind == "raised")
        if rows == 0:
            raise InputError(f"{layout.path}: no data rows after the header")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    secs = time.perf_counter() - started
    log.info("scored", data=str(layout.path), rows=rows, alarms=alarms, seconds=round(secs, 2),
             rows_per_second=int(rows / max(secs, 1e-9)))
    print(f"scored {rows} rows of {layout.path} into {out}: {alarms} alarm(s)", file=sys.stderr)
    return 0


def _csv_cell(text: str) -> str:
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _write_rows(f: io.TextIOBase, detector: Detector, stamps: list[str] | None, res: object) -> None:
    names = [_csv_cell(s) for s in detector.sensors]
    score, thr, anomaly, top = res.score, res.threshold, res.anomaly, res.top  # type: ignore[attr-defined]
    k = top.shape[1]
    lines = []
    for i in range(len(score)):
        tops = [names[j] for j in top[i]] if k else []
        first = tops[0] if tops else ""
        row = f"{score[i]:.6g},{thr[i]:.6g},{int(anomaly[i])},{first},{';'.join(tops)}"
        lines.append((_csv_cell(stamps[i]) + "," + row) if stamps is not None else row)
    f.write("\n".join(lines) + "\n")
