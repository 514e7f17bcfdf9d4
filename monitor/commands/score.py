"""``plantwatch score``: a CSV scored causally, row by row, exactly as the monitor scores the stream."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TextIO

import numpy as np

from .. import csvio, logs
from ..detector import Detector, DetectorSettings, StreamResult, load_model, single_thread
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
    layout = csvio.read_layout(args.data)
    order = _column_order(detector, layout)
    single_thread()
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp")
    state = detector.new_stream()
    rows = alarms = 0
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
    log.info(
        "scored",
        data=str(layout.path),
        rows=rows,
        alarms=alarms,
        seconds=round(secs, 2),
        rows_per_second=int(rows / max(secs, 1e-9)),
    )
    print(f"scored {rows} rows of {layout.path} into {out}: {alarms} alarm(s)", file=sys.stderr)
    return 0


def _write_rows(f: TextIO, detector: Detector, stamps: list[str] | None, res: StreamResult) -> None:
    names = [csvio.csv_cell(s) for s in detector.sensors]
    score, thr, anomaly, top = res.score, res.threshold, res.anomaly, res.top
    k = top.shape[1]
    lines = []
    for i in range(len(score)):
        tops = [names[j] for j in top[i]] if k else []
        first = tops[0] if tops else ""
        row = f"{score[i]:.6g},{thr[i]:.6g},{int(anomaly[i])},{first},{';'.join(tops)}"
        lines.append((csvio.csv_cell(stamps[i]) + "," + row) if stamps is not None else row)
    f.write("\n".join(lines) + "\n")
