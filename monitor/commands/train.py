"""``plantwatch train``: flags into :class:`~monitor.detector.TrainSettings`, then the detector's training pipeline."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .. import csvio
from ..detector import TrainSettings, check_out, train_table


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    """Flags left out keep :class:`TrainSettings`' defaults."""
    base = TrainSettings()
    return TrainSettings(
        seed=args.seed,
        window=base.window if args.window is None else args.window,
        folds=base.folds if args.folds is None else args.folds,
        max_epochs=base.max_epochs if args.epochs is None else args.epochs,
        noise=base.noise if args.noise is None else args.noise,
        mask=base.mask if args.mask is None else args.mask,
        false_alarm_rate=args.false_alarm_rate,
        false_alarms_per_day=args.false_alarms_per_day,
        sample_period=args.sample_period,
        threshold=args.threshold,
        on_delay=args.on_delay,
        off_delay=args.off_delay,
    )


def train_command(args: argparse.Namespace) -> int:
    out = Path(args.out)
    check_out(out, args.force)  # before reading the history, not after minutes of training
    ts = settings_from_args(args)
    table = csvio.read_table(args.data)
    started = time.perf_counter()
    det = train_table(table, ts, out, force=args.force)
    print(
        f"model written to {out}: {det.n_sensors} sensors, window {det.window}, "
        f"threshold {det.calib.threshold:.3f} for a false-alarm rate of {det.calib.target_rate:g}, "
        f"trained in {time.perf_counter() - started:.1f}s",
        file=sys.stderr,
    )
    return 0
