"""``plantwatch gan train`` and ``plantwatch gan evaluate`` (``gan sample`` lives in :mod:`.sample`)."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from monitor import logs, outputs
from monitor.errors import InputError

from . import artefact
from .data import load
from .train import Progress, TrainOptions, checkpoint_dir, prune_checkpoints, train, training_record

log = logs.get("gan")

DEFAULT_MAX_MINUTES = 3.0
SAVE_RESERVE_S = 5.0  # kept back from the budget for writing the folder


def threads(cpus: int, load: float) -> int:
    """Torch threads for training: up to 2, but 1 when other work already keeps the cores busy.

    Measured on the 2-core host: with the cores busy, 2 threads made each step of the demo GAN twice as
    slow as 1 (0.38 vs 0.19 s; they wait on each other), which is how 600 epochs came to 12-26 s each.

    >>> threads(2, 0.1), threads(2, 1.8), threads(1, 0.0), threads(8, 3.0)
    (2, 1, 1, 2)
    """
    idle = cpus - load
    return max(1, min(2, cpus, int(idle + 0.5)))


def _threads() -> None:
    n = threads(os.cpu_count() or 1, os.getloadavg()[0])
    torch.set_num_threads(n)
    log.info("gan_threads", threads=n, load=round(os.getloadavg()[0], 2))


def _classes(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    classes = tuple(c.strip() for c in text.split(",") if c.strip())
    if not classes:
        raise InputError("--classes needs at least one class, e.g. --classes 1,2,4")
    return classes


def train_command(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    out = outputs.check_folder(args.out, "--out", exists_ok=False, force=args.force)
    minutes = DEFAULT_MAX_MINUTES if args.max_minutes is None else args.max_minutes
    if minutes < 0:
        raise InputError(f"--max-minutes must be >= 0 (0 = no budget), got {args.max_minutes}")
    base = TrainOptions()
    opts = TrainOptions(
        epochs=base.epochs if args.epochs is None else args.epochs,
        seed=args.seed,
        window=base.window if args.window is None else args.window,
        checkpoint_every=base.checkpoint_every if args.checkpoint_every is None else args.checkpoint_every,
        classes=_classes(args.classes),
    )
    data = load(args.data, "train")
    if minutes:  # the budget is for the whole command: loading is spent, writing the folder is kept back
        spent = time.perf_counter() - started
        opts = dataclasses.replace(opts, max_seconds=max(1.0, 60 * minutes - spent - SAVE_RESERVE_S))
    _threads()
    ckpt = checkpoint_dir(out)
    extra = {"training": {"data": data.source, "partial": True}, "data_files": _file_hashes(data.source)}

    def checkpoint(gan: artefact.GAN, epoch: int, step: int) -> None:
        artefact.save(
            ckpt / f"epoch-{epoch:05d}", gan, {**extra, "checkpoint": {"epoch": epoch, "step": step}}, force=True
        )
        prune_checkpoints(ckpt)
        log.info("gan_checkpoint", path=str(ckpt / f"epoch-{epoch:05d}"), epoch=epoch)

    progress = Progress(opts.epochs)
    try:
        result = train(data, opts, progress=progress, checkpoint=checkpoint)
    finally:
        progress.close()
    record = training_record(data, result.gan.classes, opts, result)
    artefact.save(out, result.gan, {**record, "data_files": extra["data_files"]}, force=args.force)
    if not args.keep_checkpoints:
        shutil.rmtree(ckpt, ignore_errors=True)
    log.info("gan_written", path=str(out), seconds=round(result.seconds, 1), steps=result.steps)
    print(
        f"GAN written to {out}: {len(result.gan.classes)} classes ({', '.join(result.gan.classes)}), "
        f"{len(result.gan.sensors)} sensors, window {opts.window}, {result.epochs} epochs ({result.steps} steps) "
        f"in {time.perf_counter() - started:.0f}s"
        + (f" (shortened from {opts.epochs} to fit --max-minutes {minutes:g})" if result.epochs < opts.epochs else ""),
        file=sys.stderr,
    )
    return 0


def _file_hashes(source: str) -> dict[str, str]:
    """SHA-256 of every data file, so evaluation can refuse the files the GAN was trained on."""
    path = Path(source)
    files = sorted(path.glob("*.csv")) + sorted(path.glob("d[0-9][0-9].dat")) if path.is_dir() else [path]
    out = {}
    for f in files:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        out[f.name] = h.hexdigest()
    return out


def evaluate_command(args: argparse.Namespace) -> int:
    from .evaluate import evaluate
    from .report import can_draw, write

    out = Path(args.out)
    if out.suffix != ".json":
        raise InputError(f"--out {out}: must end in .json (REPORT.md and REPORT_figures/ are written beside it)")
    outputs.check_folder(out.parent, "--out")
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder; give a file name ending in .json")
    if not can_draw():  # said before the evaluation's minutes, not after them
        log.warning("figures_not_drawn", reason="matplotlib is not installed: pip install 'plantwatch[plots]'")
    gan = artefact.load(args.gan)
    test = load(args.data, "test")
    trained_on = set(gan.manifest.get("data_files", {}).values())
    if test.layout == "csv":
        reused = [name for name, digest in _file_hashes(test.source).items() if digest in trained_on]
        if reused:
            raise InputError(
                f"{args.data}: {reused[0]} is a file the GAN was trained on; evaluate on held-out episodes only"
            )
    train_source = args.train_data or (
        args.data if test.layout == "tep" else gan.manifest.get("training", {}).get("data")
    )
    train_data = load(train_source, "train") if train_source and Path(train_source).exists() else None
    if train_data is None:
        log.warning("no_training_data", note="trtr_macro_recall is null; give --train-data for the TRTR reference")
    exclude = _classes(args.exclude) if args.exclude is not None else None
    torch.set_num_threads(1)
    report = evaluate(gan, test, train_data, seed=args.seed, exclude=exclude)
    paths = write(report, out, gan, test)
    met = report["meets_targets"]
    print(
        f"discriminative accuracy {report['discriminative_accuracy']:.3f} (target <= 0.75: "
        f"{'met' if met['discriminative_accuracy'] else 'NOT met'}), TSTR macro recall "
        f"{report['tstr_macro_recall']:.3f} (target >= 0.7: {'met' if met['tstr_macro_recall'] else 'NOT met'}), "
        f"TRTR {report['trtr_macro_recall'] if report['trtr_macro_recall'] is None else round(report['trtr_macro_recall'], 3)}, "
        f"diversity {report['diversity']['ratio']:.3f}; wrote {paths[0]}, {paths[1]} and {len(paths) - 2} figures",
        file=sys.stderr,
    )
    return 0


def usage_command(args: argparse.Namespace) -> int:
    raise InputError("choose what to do: plantwatch gan train | sample | evaluate (plantwatch gan --help)")
