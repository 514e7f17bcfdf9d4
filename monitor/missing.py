"""Rows with a sensor missing: refuse them, drop them, or hold the sensor's last value for a while.

Real plant history has gaps (a transmitter out for maintenance, an export
that writes ``n/a``), and live gateways sometimes leave a sensor out of a
message. One policy, spelt the same on the command line (``--missing``) and
in the monitor's config (``[missing]``), and one implementation,
:class:`Filler`, for files and for live streams:

* ``fail``: a missing value is an error (offline: the file is refused,
  naming the row and column; live: the message is rejected as
  ``missing_sensor``);
* ``drop``: the row is left out (counted);
* ``hold`` / ``hold:N``: the sensor keeps its last real value, for at most
  ``N`` rows after it (no limit without ``:N``); a row that cannot be filled
  (no earlier value, or older than ``N`` rows) is dropped (counted).

A held value is a guess: ``hold:N`` with a small N keeps a short dropout
from costing a whole window of scores without pretending a dead sensor is
alive.

>>> f = Filler([parse("hold:1")] * 2)
>>> x = np.array([[1.0, 2.0], [np.nan, 3.0], [np.nan, 4.0], [5.0, 6.0]])
>>> keep = f.apply(x)
>>> x[:, 0].tolist(), keep.tolist(), (f.filled_rows, f.dropped_rows)
([1.0, 1.0, nan, 5.0], [True, True, False, True], (1, 1))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase

import numpy as np

#: what ``fail``, ``drop`` and ``hold[:N]`` mean as a hold limit in rows (``fail`` is checked before filling)
FAIL = -1.0
DROP = 0.0
RULE = "must be fail, drop, hold or hold:N with N >= 1"
#: cell texts that mean "no value" in a history file
MISSING_TEXTS = frozenset(("", "nan", "-nan", "na", "n/a", "#n/a", "null", "none"))


def parse(text: str) -> float:
    """A policy's hold limit: -1 (fail), 0 (drop), N (hold:N) or infinity (hold); ValueError otherwise.

    >>> parse("fail"), parse("drop"), parse("hold:5"), parse("hold")
    (-1.0, 0.0, 5.0, inf)
    """
    t = text.strip().lower()
    if t == "fail":
        return FAIL
    if t == "drop":
        return DROP
    if t == "hold":
        return math.inf
    if t.startswith("hold:"):
        try:
            n = int(t[5:])
        except ValueError:
            n = 0
        if n >= 1:
            return float(n)
    raise ValueError(f"{text!r}: {RULE}")


def valid(text: str) -> bool:
    try:
        parse(text)
    except ValueError:
        return False
    return True


def limits(sensors: Sequence[str], default: str, by_pattern: Mapping[str, str] | None = None) -> np.ndarray:
    """Per sensor, its hold limit: the first pattern of ``by_pattern`` (fnmatch) that matches it, else ``default``."""
    base = parse(default)
    out = np.full(len(sensors), base)
    for j, name in enumerate(sensors):
        for pattern, policy in (by_pattern or {}).items():
            if fnmatchcase(name, pattern):
                out[j] = parse(policy)
                break
    return out


class Filler:
    """Fills (or drops) rows of one stream in order; carries each sensor's last value from call to call.

    ``age`` counts rows since a sensor's last real value, whether or not the
    rows between were kept, so ``hold:N`` never reaches further back than N
    rows of the stream.
    """

    def __init__(self, hold_limits: Sequence[float] | np.ndarray) -> None:
        self.limit = np.maximum(np.asarray(hold_limits, dtype=np.float64), 0.0)  # fail is the caller's to refuse
        d = len(self.limit)
        self.last = np.full(d, np.nan)
        self.age = np.full(d, np.inf)
        self.filled_rows = self.filled_values = self.dropped_rows = 0

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Fill NaNs of the (n, d) rows ``x`` in place; returns which rows to keep (all True when none is missing)."""
        n = len(x)
        if n == 0:
            return np.ones(0, dtype=bool)
        gap = np.isnan(x)
        if not gap.any():
            self.last[:] = x[-1]
            self.age[:] = 0.0
            return np.ones(n, dtype=bool)
        rows = np.arange(n)[:, None]
        seen = np.maximum.accumulate(np.where(gap, -1, rows), axis=0)  # (n, d) row of the last real value, or -1
        cols = np.arange(x.shape[1])[None, :]
        before = seen < 0
        age = np.where(before, rows + 1 + self.age, rows - seen)
        source = np.where(before, self.last, x[np.maximum(seen, 0), cols])
        fill = gap & (age <= self.limit) & ~np.isnan(source)
        x[fill] = source[fill]
        drop = (gap & ~fill).any(axis=1)
        self.last = source[-1].copy()
        self.age = np.where(gap[-1], age[-1], 0.0)
        self.last[~gap[-1]] = x[-1, ~gap[-1]]
        self.filled_values += int(fill.sum())
        self.filled_rows += int((fill.any(axis=1) & ~drop).sum())
        self.dropped_rows += int(drop.sum())
        return ~drop

    def summary(self) -> str:
        """What was done, for a command's closing line ('' when nothing was missing)."""
        parts = []
        if self.filled_rows:
            parts.append(f"{self.filled_rows} row(s) with a held value ({self.filled_values} value(s) filled)")
        if self.dropped_rows:
            parts.append(f"{self.dropped_rows} row(s) dropped")
        return "missing values: " + ", ".join(parts) if parts else ""
