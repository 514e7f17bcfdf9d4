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


def full_windows(z: np.ndarray, window: int) -> np.ndarray:
    """Windows of training data that need no padding (rows window-1..n-1)."""
    n, d = z.shape
    if n < window:
        raise ValueError(f"{n} rows is fewer than the window of {window}")
    win = sliding_window_view(z, (window, d))[:, 0]
    return np.ascontiguousarray(win.reshape(n - window + 1, window * d))
