"""Simulated history as a CSV file, the training data ``plantwatch train`` reads.

Layout: a ``timestamp`` column (ISO 8601 UTC, one row per 1/rate seconds) then
one column per sensor, values as ``%.9g`` (nine significant digits, relative
error below 1e-8). Injected faults write their ground truth beside the file as
``FILE.truth.jsonl``: one :class:`monitor.wire.DrillTruth` JSON object per line,
``start``/``end`` the unix times of the first and last affected rows (a
fault-free run removes a stale truth file).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor import logs
from monitor.errors import InputError
from monitor.wire import DrillTruth

from .faults import Injection, InjectionSet
from .process import AssetProcess

log = logs.get("simulator")

DEFAULT_START_TIME = 1767225600.0  # 2026-01-01T00:00:00Z
CHUNK_ROWS = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def truth_path(path: str | Path) -> Path:
    """Where the ground truth of a history file's faults goes."""
    return Path(str(path) + ".truth.jsonl")


def iso_timestamps(start_time: float, rate: float, first: int, n: int) -> list[str]:
    """ISO 8601 UTC of rows first..first+n-1; microseconds shown unless every row is whole seconds."""
    start_us = round(start_time * 1e6)
    whole = start_us % 1_000_000 == 0 and float(1 / rate).is_integer()
    out = []
    for i in range(first, first + n):
        us = start_us + round(i * 1e6 / rate)
        dt = _EPOCH + timedelta(microseconds=us)
        out.append(dt.strftime("%Y-%m-%dT%H:%M:%SZ") if whole else dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    return out


def write_history(
    path: str | Path,
    process: AssetProcess,
    samples: int,
    *,
    rate: float = 1.0,
    start_time: float = DEFAULT_START_TIME,
    injections: Sequence[Injection] = (),
) -> list[DrillTruth]:
    """Write ``samples`` rows of ``process`` (with injections) and their ground truth.

    The file appears complete or not at all (written beside, then renamed).
    """
    if samples < 1 or rate <= 0 or process.index != 0:
        raise ValueError(
            f"need a fresh process, samples >= 1 and rate > 0, got index {process.index}, {samples}, {rate}"
        )
    path = Path(path)
    faults = InjectionSet(injections)
    truths: list[DrillTruth] = []
    row_fmt = ",".join(["%.9g"] * process.n_sensors)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(",".join(["timestamp", *process.sensors]) + "\n")
            for first in range(0, samples, CHUNK_ROWS):
                n = min(CHUNK_ROWS, samples - first)
                block = process.generate(n)
                _, ended = faults.apply(block, first)
                truths += [
                    inj.truth(start_time + inj.start / rate, start_time + inj.end / rate, "end") for inj in ended
                ]
                stamps = iso_timestamps(start_time, rate, first, n)
                f.writelines(f"{ts},{row_fmt % tuple(row)}\n" for ts, row in zip(stamps, block.tolist()))
        os.replace(tmp, path)
        if injections:
            for inj in (i for i in faults.active if i.start < samples):  # cut short by the end of the file
                inj.params["truncated"] = True
                truths.append(inj.truth(start_time + inj.start / rate, start_time + (samples - 1) / rate, "end"))
            truth_path(path).write_bytes(b"".join(t.encode() + b"\n" for t in truths))
        else:
            truth_path(path).unlink(missing_ok=True)  # a stale truth would describe old rows
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{exc.filename or path}: cannot write: {exc.strerror}") from None
    log.info(
        "history_written",
        path=str(path),
        asset=process.name,
        rows=samples,
        sensors=process.n_sensors,
        faults=len(truths),
    )
    return truths
