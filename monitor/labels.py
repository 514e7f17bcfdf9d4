"""Operators' labels of alarm episodes (``plantwatch feedback``), as ``plantwatch train --feedback`` uses them.

The monitor writes them to ``<state_dir>/feedback-<instance>.jsonl`` (see
:mod:`monitor.daemon.feedback`), one JSON object a line, the latest label of
an episode winning. For training, a ``false_alarm`` range is normal operation
the model should learn (it stays in the training set, and train says when the
history given has no rows of it), a ``confirmed`` range is a fault and is left
out.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from .csvio import Table, csv_cell
from .errors import InputError


def read_labels(path: str | Path) -> list[dict[str, Any]]:
    """The labels of a feedback file, the latest per episode; ValueError names the bad line."""
    latest: dict[str, dict[str, Any]] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            latest[str(rec["episode"])] = {
                "asset": str(rec["asset"]),
                "episode": str(rec["episode"]),
                "label": str(rec["label"]),
                "start": float(rec["start"]),
                "end": float(rec["end"]),
            }
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: line {n} is not a feedback record ({exc})") from None
    return list(latest.values())


def row_times(table: Table, flag: str = "--feedback") -> np.ndarray:
    """Epoch seconds of each row (the timestamp column: epoch seconds or ISO 8601); InputError names ``flag``."""
    if table.timestamps is None:
        raise InputError(f"{flag}: {table.path} has no timestamp column to match time ranges with")
    try:
        return np.array([_epoch(s) for s in table.timestamps])
    except ValueError as exc:
        raise InputError(f"{flag}: {table.path}: a timestamp is neither epoch seconds nor ISO 8601 ({exc})") from None


def drop_rows(table: Table, drop: np.ndarray) -> Table:
    """``table`` without the rows where ``drop`` is True."""
    if not drop.any() or table.timestamps is None:
        return table
    keep = ~drop
    stamps = [s for s, k in zip(table.timestamps, keep.tolist()) if k]
    return dataclasses.replace(table, timestamps=stamps, values=table.values[keep])


def _epoch(stamp: str) -> float:
    try:
        return float(stamp)
    except ValueError:
        t = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        return t.timestamp()


def apply(table: Table, path: str, asset: str, library: str | None = None) -> tuple[Table, list[str]]:
    """``table`` without the confirmed-fault rows of ``asset``, and what was done, one line each.

    ``library``: also write the whole history there with a ``fault`` column (1 in confirmed episodes, 0
    elsewhere), the labelled-CSV layout ``plantwatch gan train --data`` reads.
    """
    try:
        labels = [r for r in read_labels(path) if r["asset"] == asset]
    except OSError as exc:
        raise InputError(f"--feedback {path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise InputError(f"--feedback {exc}") from None
    if not labels:
        return table, [f"feedback: no labelled episode of asset {asset!r} in {path}"]
    ts = row_times(table)
    drop = np.zeros(len(ts), dtype=bool)
    said = []
    for r in sorted(labels, key=lambda r: r["start"]):
        inside = (ts >= r["start"]) & (ts <= r["end"])
        n = int(inside.sum())
        if r["label"] == "confirmed":
            drop |= inside
            said.append(f"feedback: confirmed fault {r['episode']}: {n} row(s) left out of training")
        elif n:
            said.append(f"feedback: false alarm {r['episode']}: {n} row(s) kept as normal operation")
        else:
            said.append(
                f"feedback: false alarm {r['episode']} has no rows in {table.path}: record that time range "
                "(plantwatch record) so the model learns it as normal"
            )
    if library is not None:
        write_library(table, drop, library)
        said.append(f"feedback: {int(drop.sum())} confirmed-fault row(s) written with a fault column to {library}")
    return drop_rows(table, drop), said


def write_library(table: Table, fault: np.ndarray, path: str) -> None:
    """The history with a ``fault`` column (1 = a confirmed fault, 0 = normal), written whole then renamed."""
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    head = ([table.time_column] if table.time_column and table.timestamps is not None else []) + table.sensors
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(",".join(csv_cell(h) for h in [*head, "fault"]) + "\n")
        for i, row in enumerate(table.values.tolist()):
            stamp = [table.timestamps[i]] if table.time_column and table.timestamps is not None else []
            f.write(",".join([*map(csv_cell, stamp), *map(repr, row), "1" if fault[i] else "0"]) + "\n")
    tmp.replace(out)
