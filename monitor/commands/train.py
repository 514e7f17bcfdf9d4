"""``plantwatch train``: flags into :class:`~monitor.detector.TrainSettings`, then the detector's training pipeline."""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from pathlib import Path

from .. import columns, history_options, labels, outputs
from ..detector import (
    Budget,
    TrainSettings,
    describe,
    model_store,
    promise_of,
    read_manifest,
    resolve_device,
    train_table,
)
from ..errors import InputError


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
        device=base.device if args.device is None else args.device,
        max_seconds=args.max_seconds,
    )


def train_command(args: argparse.Namespace) -> int:
    # every output problem before reading the history, not after minutes of training
    if args.store is not None:
        return _into_store(args)
    if args.challenger:
        raise InputError("--challenger needs --store (a challenger is a version of a model store)")
    return _train(args, outputs.check_folder(args.out, "--out", exists_ok=False, force=args.force))


def _into_store(args: argparse.Namespace) -> int:
    """Train into the store's next version; the first becomes current, a later one optionally the challenger."""
    store = Path(args.store)
    if (store / "manifest.json").exists():
        raise InputError(f"--store {store}: is a model folder, not a store; give the folder that holds versions")
    outputs.check_folder(store, "--store")
    with model_store.locked(store):  # two trainers never take the same version
        version = model_store.next_version(store)
        out = store / version
        code = _train(args, out)
        first = model_store.pointer(store, model_store.CURRENT) is None
        if first:
            model_store.switch(store, version, "initial", _who(), "first version of the store")
            print(f"{store}: {version} is the current version (the store's first)", file=sys.stderr)
        elif args.challenger:
            model_store.set_pointer(store, model_store.CHALLENGER, version)
            print(f"{store}: {version} is the challenger; a running monitor scores it in shadow", file=sys.stderr)
        else:
            print(f"{store}: {version} added; 'plantwatch models promote {store} {version}' makes it current")
    return code


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _train(args: argparse.Namespace, out: Path) -> int:
    if args.fault_library is not None:
        if not args.feedback:
            raise InputError("--fault-library needs --feedback (the labels that say which rows are faults)")
        outputs.check_file(args.fault_library, "--fault-library")
    ts = settings_from_args(args)
    resolve_device(ts.device)  # --device cuda without a GPU, or a bad budget: say so before reading anything
    Budget(ts.max_seconds)
    table, gaps = history_options.read_table(args.data, args)
    shown = ", ".join(table.sensors[:30]) + (f" ... ({len(table.sensors)} in all)" if len(table.sensors) > 30 else "")
    print(f"training on {len(table.sensors)} sensor(s) of {table.path}: {shown}", file=sys.stderr)
    for name, why in columns.suspicious(table.sensors, table.values):
        print(
            f"warning: column {name!r}: {why}; leave it out with --exclude {name!r} if it is not a sensor",
            file=sys.stderr,
        )
    if gaps is not None and gaps.summary():
        print(f"{gaps.summary()} (--missing {args.missing})", file=sys.stderr)
    if args.feedback:
        asset = args.feedback_asset or Path(args.data).stem
        table, said = labels.apply(table, args.feedback, asset, args.fault_library)
        for line in said:
            print(line, file=sys.stderr)
    started = time.perf_counter()
    det = train_table(table, ts, out, force=args.force)
    print(
        f"model written to {out}: {det.n_sensors} sensors, window {det.window}, "
        f"threshold {det.calib.threshold:.3f}, trained in {time.perf_counter() - started:.1f}s",
        file=sys.stderr,
    )
    promise = promise_of(det.calib)
    for line in describe(promise) if promise is not None else []:
        print(line, file=sys.stderr)
    training = read_manifest(out)["training"]
    if training.get("stopped_by_budget"):
        print(
            f"note: training stopped at the --max-seconds budget of {ts.max_seconds:g}s: "
            f"{training['stopped_by_budget']} model fit(s) ended before early stopping did, each keeping its best "
            "weights so far; a larger budget may give a better model",
            file=sys.stderr,
        )
    return 0
