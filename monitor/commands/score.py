"""``plantwatch score``: a CSV scored causally, row by row, exactly as the monitor scores the stream."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TextIO

import numpy as np

from .. import config, csvio, history_options, logs, outputs
from ..detector import Detector, DetectorSettings, StreamResult, ValueBounds, load_model, model_store, single_thread
from ..errors import InputError
from .score_report import EpisodeLog, OutsideLog, PlotData, check_plot, promise_line

log = logs.get("score")


def _column_order(detector: Detector, layout: csvio.Layout) -> np.ndarray:
    have, want = layout.sensors, list(detector.sensors)
    missing = [s for s in want if s not in have]
    extra = [s for s in have if s not in want]
    if missing or extra:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
        if extra:
            parts.append(
                "not in training " + ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else "") + " (--exclude them)"
            )
        raise InputError(f"{layout.path}: row 1: columns differ from the model's sensors: {'; '.join(parts)}")
    index = {s: i for i, s in enumerate(have)}
    return np.array([index[s] for s in want], dtype=np.int64)


def score_command(args: argparse.Namespace) -> int:
    if args.top < 0:
        raise InputError("--top must be >= 0")
    out = outputs.check_file(args.out, "--out")  # before any work: a bad path is one line, not a traceback
    plot = outputs.check_file(args.plot, "--plot") if args.plot else None
    check_plot(args.plot)
    detector = load_model(model_store.resolve(args.model))  # a store: its current version
    detector.settings = DetectorSettings(
        detector.settings.threshold_method, detector.settings.bounds, detector.settings.alarm, args.top
    )
    bounds = detector.bounds
    if args.bounds:
        bounds = bounds.with_overrides(detector.sensors, config.read_sensor_bounds(args.bounds))
    layout = history_options.layout(args.data, args)
    order = _column_order(detector, layout)
    gaps = history_options.filler(args, len(layout.sensors))
    single_thread()
    tmp = out.with_name(f".{out.name}.tmp")
    state = detector.new_stream()
    rows = scored = alarm_rows = 0
    skipped = _Skipped(detector, bounds)
    episodes, outside = EpisodeLog(), OutsideLog(detector)
    drawn = PlotData() if plot else None
    started = time.perf_counter()
    try:
        with open(tmp, "w", newline="") as f:
            header = ([layout.time_column] if layout.time_column else []) + [
                "score",
                "threshold",
                "anomaly",
                "top_sensor",
                "top_sensors",
            ]
            f.write(csvio.csv_line(header) + "\n")
            for chunk in csvio.iter_chunks(layout.path, layout=layout, gaps=gaps):
                values = chunk.values[:, order]
                keep = skipped.check(values, rows, chunk.keep)
                index = np.arange(rows, rows + len(values), dtype=np.float64)
                if keep is not None:
                    values, index = values[keep], index[keep]
                res = detector.score(state, values, index)  # times are file rows: episodes name them
                _write_rows(f, detector, chunk.timestamps, res, keep, len(chunk.values))
                episodes.add(rows, len(chunk.values), chunk.timestamps, res)
                alarm_rows += int(res.anomaly.sum())
                outside.add(values, res)
                if drawn is not None:
                    drawn.add(index, res)
                rows += len(chunk.values)
                scored += len(values)
        if rows == 0:
            raise InputError(f"{layout.path}: no data rows after the header")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    secs = time.perf_counter() - started
    log.info(
        "scored",
        data=str(layout.path),
        rows=rows,
        alarms=len(episodes.episodes),
        out_of_range=skipped.rows,
        outside_training=outside.rows,
        seconds=round(secs, 2),
        rows_per_second=int(rows / max(secs, 1e-9)),
    )
    n = len(episodes.episodes)
    print(
        f"scored {scored} rows of {layout.path} into {out}: {n} alarm(s)" + (":" if n else ""),
        file=sys.stderr,
    )
    promised = promise_line(detector, scored, alarm_rows, n)
    for line in [*episodes.lines(), promised, skipped.summary(), outside.line(scored)]:
        if line:
            print(line, file=sys.stderr)
    if gaps is not None and gaps.summary():
        print(f"{gaps.summary()} (--missing {args.missing}; dropped rows have an empty score)", file=sys.stderr)
    if drawn is not None and plot is not None:
        drawn.draw(plot, f"{layout.path.name} scored by {Path(args.model).name}", episodes)
        print(f"plot written to {plot}", file=sys.stderr)
    return 0


class _Skipped:
    """Rows with an implausible value: left out of the stream (as the monitor rejects them), counted, named."""

    def __init__(self, detector: Detector, bounds: ValueBounds) -> None:
        self.detector, self.bounds = detector, bounds
        self.rows = 0
        self.first = ""

    def check(self, values: np.ndarray, offset: int, kept: np.ndarray | None = None) -> np.ndarray | None:
        """Indices of the rows to score (those ``kept`` by the missing-value policy, with plausible values),
        or None when all of them are (the common case)."""
        bad = self.bounds.bad_rows(values)
        if kept is not None:
            bad &= kept  # a dropped row is not also implausible
        if bad.any():
            if not self.rows:
                i = int(np.flatnonzero(bad)[0])
                j = self.bounds.first_bad(values[i])
                self.first = f"row {offset + i + 2}: " + self.bounds.describe(j, self.detector.sensors[j], values[i, j])
            self.rows += int(bad.sum())
        elif kept is None:
            return None
        return np.flatnonzero(~bad & (kept if kept is not None else True))

    def summary(self) -> str:
        if not self.rows:
            return ""
        return (
            f"{self.rows} row(s) not scored (empty score): a value outside its sensor's plausible bounds; "
            f"the first, {self.first} (set [sensors.NAME] min/max in a --bounds file if this value is real)"
        )


def _write_rows(
    f: TextIO, detector: Detector, stamps: list[str] | None, res: StreamResult, keep: np.ndarray | None, n: int
) -> None:
    """One line per input row; rows left out of the stream (``keep`` does not name them) get empty fields."""
    names = [csvio.csv_cell(s) for s in detector.sensors]
    score, thr, anomaly, top = res.score, res.threshold, res.anomaly, res.top
    k = top.shape[1]
    cells = [",,,,"] * n
    for r, i in enumerate(range(n) if keep is None else keep.tolist()):
        tops = [names[j] for j in top[r]] if k else []
        first = tops[0] if tops else ""
        cells[i] = f"{score[r]:.6g},{thr[r]:.6g},{int(anomaly[r])},{first},{';'.join(tops)}"
    lines = cells if stamps is None else [csvio.csv_cell(stamps[i]) + "," + c for i, c in enumerate(cells)]
    f.write("\n".join(lines) + "\n")
