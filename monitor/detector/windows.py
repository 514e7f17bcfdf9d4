"""Causal windows: the window for row i of a stream is its rows i-W+1..i, oldest first.

One builder serves the daemon (a few new rows of each of many streams per
batch) and the offline scorer (many rows of one stream): every stream's
remembered tail and new rows are laid end to end and all windows come out of
one gather. At the start of a stream, while fewer than W-1 rows came before,
the earliest row is repeated (causal edge padding), so the first rows are
still scored; ``seen`` says how many real rows each window holds.

>>> import numpy as np
>>> z = np.arange(6.0).reshape(3, 2)                 # one stream, 3 rows of 2 sensors
>>> w, seen, tails = stream_windows(z, [3], [None], window=2)
>>> w.tolist(), seen.tolist(), tails[0].tolist()
([[0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 2.0, 3.0], [2.0, 3.0, 4.0, 5.0]], [1, 2, 3], [[4.0, 5.0]])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def stream_windows(
    z: np.ndarray,
    sizes: Sequence[int],
    tails: Sequence[np.ndarray | None],
    window: int,
    rows_before: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Windows of the new rows of several streams, laid end to end in ``z``.

    ``sizes[k]`` new rows of stream k follow those of stream k-1 in ``z``
    (n, d); ``tails[k]`` holds up to W-1 rows the stream saw before (None:
    none yet) and ``rows_before[k]`` how many rows it has seen in all
    (default: the length of its tail). Returns the (n, W*d) windows, the real
    rows in each window (n,) and each stream's new tail, to pass next time.
    """
    n, d = z.shape
    need = window - 1
    ns = np.asarray(sizes, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(ns)[:-1]]).astype(np.int64)
    if rows_before is None:
        rows_before = [len(t) if t is not None else 0 for t in tails]
    before = np.asarray(rows_before, dtype=np.int64)
    seen = np.repeat(before + 1 - starts, ns) + np.arange(n)
    if need == 0:
        return np.ascontiguousarray(z), seen, [z[:0] for _ in sizes]
    blocks = []
    for tail, a, m in zip(tails, starts.tolist(), ns.tolist()):
        blocks.append(_padded_tail(tail, z[a : a + m], need))
        blocks.append(z[a : a + m])
    ext = np.concatenate(blocks)
    block_start = starts + need * np.arange(len(ns))  # where each stream's tail begins in ext
    if len(ns) == 1:  # one stream: a strided view, one copy
        windows = sliding_window_view(ext, (window, d))[:, 0].reshape(n, window * d)
    else:
        pos = np.repeat(block_start + need - starts, ns) + np.arange(n)  # each new row's index in ext
        windows = ext[pos[:, None] + np.arange(-need, 1)].reshape(n, window * d)
    new_tails = [ext[b + m : b + m + need].copy() for b, m in zip(block_start.tolist(), ns.tolist())]
    return np.require(windows, requirements=["C", "W"]), seen, new_tails  # torch wants writable memory


def _padded_tail(tail: np.ndarray | None, z: np.ndarray, need: int) -> np.ndarray:
    """The ``need`` rows before ``z``: the stream's remembered ones, the earliest repeated while too few."""
    prev = tail if tail is not None and len(tail) else z[:1]
    if len(prev) < need:
        prev = np.concatenate([np.repeat(prev[:1], need - len(prev), axis=0), prev])
    return prev[-need:]


class WindowSet:
    """Training windows of ``z`` named by their newest row; a batch is gathered only when asked.

    A history of 10^6 rows x 52 sensors in windows of 10 would take 2 GB as
    a window matrix (and a copy per fold); named by their end rows it takes
    8 MB beside the rows themselves, and each batch is built from ``z`` when
    it is drawn. ``parts`` are the stretches of ``z`` a window may lie in
    (a fold's training rows are the history with a block cut out: no window
    spans the cut).

    >>> z = np.arange(10.0).reshape(5, 2)
    >>> ws = WindowSet(z, 2, parts=[(0, 2), (3, 5)])  # row 2 cut out
    >>> ws.ends.tolist(), ws.gather(np.array([1])).tolist()
    ([1, 4], [[6.0, 7.0, 8.0, 9.0]])
    """

    def __init__(
        self,
        z: np.ndarray,
        window: int,
        parts: Sequence[tuple[int, int]] | None = None,
        ends: np.ndarray | None = None,
    ) -> None:
        if z.ndim != 2:
            raise ValueError(f"expected (rows, sensors), got shape {z.shape}")
        self.z = z
        self.window = window
        if ends is None:
            spans = parts if parts is not None else [(0, len(z))]
            ranges = [np.arange(a + window - 1, b, dtype=np.int64) for a, b in spans if b - a >= window]
            ends = np.concatenate(ranges) if ranges else np.zeros(0, dtype=np.int64)
        self.ends = ends

    @classmethod
    def of_windows(cls, windows: np.ndarray) -> WindowSet:
        """Windows someone already built, (n, W*d), as a set of windows of one row."""
        return cls(windows, 1, ends=np.arange(len(windows), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.ends)

    @property
    def width(self) -> int:
        """Values per window (W*d)."""
        return self.window * self.z.shape[1]

    def split_tail(self, n_tail: int) -> tuple[WindowSet, WindowSet]:
        """The windows before the last ``n_tail`` and those ``n_tail`` (a contiguous validation tail)."""
        cut = len(self.ends) - n_tail
        return self._with(self.ends[:cut]), self._with(self.ends[cut:])

    def spread(self, most: int) -> WindowSet:
        """At most ``most`` windows spread evenly over the set (all of them when there are fewer)."""
        if len(self.ends) <= most:
            return self
        pick = np.linspace(0, len(self.ends) - 1, most).round().astype(np.int64)
        return self._with(self.ends[pick])

    def offsets(self) -> np.ndarray:
        """Row offsets of a window's rows from its end row, oldest first."""
        return np.arange(-self.window + 1, 1, dtype=np.int64)

    def gather(self, idx: np.ndarray) -> np.ndarray:
        """Windows ``idx`` of the set as a (len(idx), W*d) float32 array."""
        rows = self.ends[idx][:, None] + self.offsets()
        return np.ascontiguousarray(self.z[rows].reshape(len(rows), self.width), dtype=np.float32)

    def _with(self, ends: np.ndarray) -> WindowSet:
        return WindowSet(self.z, self.window, ends=ends)
