"""``plantwatch score``: a CSV scored causally, row by row, exactly as the monitor scores the stream."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TextIO

import numpy as np

from .. import config, csvio, logs
from ..detector import Detector, DetectorSettings, StreamResult, ValueBounds, load_model, single_thread
from ..errors import InputError

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
            parts.append("not in training " + ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else ""))
        raise InputError(f"{layout.path}: row 1: columns differ from the model's sensors: {'; '.join(parts)}")
    index = {s: i for i, s in enumerate(have)}
    return np.array([index[s] for s in want], dtype=np.int64)


def score_command(args: argparse.Namespace) -> int:
    detector = load_model(args.model)
    if args.top < 0:
        raise InputError("--top must be >= 0")
    detector.settings = DetectorSettings(
        detector.settings.threshold_method, detector.settings.bounds, detector.settings.alarm, args.top
    )
    bounds = detector.bounds
    if args.bounds:
        bounds = bounds.with_overrides(detector.sensors, config.read_sensor_bounds(args.bounds))
    layout = csvio.read_layout(args.data)
    order = _column_order(detector, layout)
    single_thread()
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp")
    state = detector.new_stream()
    rows = alarms = 0
    skipped = _Skipped(detector, bounds)
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
            for chunk in csvio.iter_chunks(layout.path, layout=layout):
                values = chunk.values[:, order]
                keep = skipped.check(values, rows)
                res = detector.score(state, values if keep is None else values[keep])
                _write_rows(f, detector, chunk.timestamps, res, keep, len(values))
                rows += len(values)
                alarms += sum(1 for _, tr in res.transitions if tr.kind == "raised")
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
        alarms=alarms,
        out_of_range=skipped.rows,
        seconds=round(secs, 2),
        rows_per_second=int(rows / max(secs, 1e-9)),
    )
    print(f"scored {rows - skipped.rows} rows of {layout.path} into {out}: {alarms} alarm(s)", file=sys.stderr)
    if skipped.rows:
        print(skipped.summary(), file=sys.stderr)
    return 0


class _Skipped:
    """Rows with an implausible value: left out of the stream (as the monitor rejects them), counted, named."""

    def __init__(self, detector: Detector, bounds: ValueBounds) -> None:
        self.detector, self.bounds = detector, bounds
        self.rows = 0
        self.first = ""

    def check(self, values: np.ndarray, offset: int) -> np.ndarray | None:
        """Indices of the rows to score, or None when all of them are plausible (the common case)."""
        bad = self.bounds.bad_rows(values)
        if not bad.any():
            return None
        if not self.rows:
            i = int(np.flatnonzero(bad)[0])
            j = self.bounds.first_bad(values[i])
            self.first = f"row {offset + i + 2}: " + self.bounds.describe(j, self.detector.sensors[j], values[i, j])
        self.rows += int(bad.sum())
        return np.flatnonzero(~bad)

    def summary(self) -> str:
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
