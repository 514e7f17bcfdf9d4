"""Per-asset sequence bookkeeping: order a batch's rows by ``seq``, drop redeliveries, count gaps."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


class Ordered(NamedTuple):
    """What :func:`order` decided for one asset's rows of a batch."""

    keep: list[int] | None  # row indices to score in this order; None: all, as they came
    gaps: int  # sequence numbers never seen
    first: int  # first seq kept (-1 if none)
    last: int  # last seq scored, the new baseline
    duplicates: list[int]  # seqs dropped as redeliveries
    restarts: list[tuple[int, int]]  # (last seq, new seq) where the publisher started again


def order(seqs: np.ndarray, ts: np.ndarray, last: int, last_ts: float) -> Ordered:
    """Order one asset's rows (in arrival order), drop redeliveries, count gaps.

    The common case is one consecutive run above ``last``. Otherwise rows go in
    ``seq`` order; a ``seq`` at or below the last scored one is a redelivery
    unless its ``ts`` is newer than everything before it, which means the
    publisher restarted its numbering (a new run, not a duplicate).

    >>> order(np.array([5, 6]), np.array([1.0, 2.0]), 2, 0.0)
    Ordered(keep=None, gaps=2, first=5, last=6, duplicates=[], restarts=[])
    >>> order(np.array([7, 5, 8]), np.array([3.0, 1.0, 4.0]), 6, 2.0)
    Ordered(keep=[0, 2], gaps=0, first=7, last=8, duplicates=[5], restarts=[])
    """
    if seqs[0] > last and (len(seqs) == 1 or bool((np.diff(seqs) == 1).all())):
        return Ordered(None, int(seqs[0]) - last - 1 if last >= 0 else 0, int(seqs[0]), int(seqs[-1]), [], [])
    s_list, t_list = seqs.tolist(), ts.tolist()
    runs: list[list[int]] = [[]]
    newest = -math.inf
    for j, (s, t) in enumerate(zip(s_list, t_list)):
        if runs[-1] and s < s_list[j - 1] and t > newest:
            runs.append([])
        runs[-1].append(j)
        newest = max(newest, t)
    keep, dups, restarts, gaps, first = [], [], [], 0, -1
    for j in (j for run in runs for j in sorted(run, key=s_list.__getitem__)):
        s, t = s_list[j], t_list[j]
        if s <= last:
            if t <= last_ts or last < 0:
                dups.append(s)
                continue
            restarts.append((last, s))
            last = s - 1
        if last >= 0 and s > last + 1:
            gaps += s - last - 1
        keep.append(j)
        first = s if first < 0 else first
        last, last_ts = s, max(last_ts, t)
    return Ordered(keep, gaps, first, last, dups, restarts)
