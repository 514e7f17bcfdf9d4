"""Alarm episodes of a whole score series at a fixed threshold, as :class:`~.alarms.AlarmLogic` would raise them.

Calibration asks "how many alarms, and how many samples in alarm, would this
threshold have given on normal data?" for dozens of candidate thresholds.
Counting rows above the threshold answers a different question: the on-delay
drops short excursions, the off-delay and the deadband stretch the rest, and
an operator counts alarms, not rows. Stepping :class:`AlarmLogic` row by row
in Python costs a microsecond or two per row and threshold; here the runs of
samples above the threshold and below the clear level are found with numpy
and only the episodes themselves are walked.

>>> import numpy as np
>>> s = np.array([0, 2, 2, 2, 0, 0, 2, 2, 2, 2, 0, 0, 0], dtype=float)
>>> r = episodes(s, 1.0, on_delay=3, off_delay=2, deadband=0.95)
>>> r.starts.tolist(), r.ends.tolist()
([3, 8], [5, 11])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Episodes:
    starts: np.ndarray  # index of the row that raised each alarm
    ends: np.ndarray  # index of the row that cleared it (len(scores) if still raised at the end)
    peaks: np.ndarray  # per episode: the highest threshold at which it would still have been raised

    @property
    def count(self) -> int:
        return len(self.starts)

    @property
    def rows(self) -> int:
        """Samples in alarm (the raising row included, the clearing row not: as the detector's anomaly column)."""
        return int(np.sum(self.ends - self.starts))


def _run_lengths(flags: np.ndarray) -> np.ndarray:
    """Length of the run of True ending at each index (0 where False)."""
    idx = np.arange(len(flags))
    last_false = np.maximum.accumulate(np.where(flags, -1, idx))
    return np.where(flags, idx - last_false, 0)


def running_min(scores: np.ndarray, width: int) -> np.ndarray:
    """min of scores[i-width+1 .. i] (shorter at the start): the score that must beat the threshold
    for ``width`` samples in a row before an on-delay of ``width`` raises."""
    out = np.array(scores, dtype=np.float64)
    for k in range(1, width):
        out[k:] = np.minimum(out[k:], scores[:-k])
        out[:k] = -np.inf
    return out


def episodes(scores: np.ndarray, threshold: float, on_delay: int, off_delay: int, deadband: float) -> Episodes:
    """The alarm episodes a stream starting at ``scores[0]`` raises with a constant threshold."""
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    up = np.flatnonzero(_run_lengths(s > threshold) >= on_delay)
    down = np.flatnonzero(_run_lengths(s < threshold * deadband) >= off_delay)
    lows = running_min(s, on_delay)
    starts: list[int] = []
    ends: list[int] = []
    peaks: list[float] = []
    free = 0  # first row at which a new above-run may begin (after the last clear)
    while True:
        i = int(np.searchsorted(up, free + on_delay - 1))
        if i >= len(up):
            break
        r = int(up[i])
        j = int(np.searchsorted(down, r + off_delay))
        c = int(down[j]) if j < len(down) else n
        starts.append(r)
        ends.append(c)
        peaks.append(float(lows[r:c].max()) if c > r else float(lows[r]))
        if c >= n:
            break
        free = c + 1
    return Episodes(np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64), np.array(peaks))
