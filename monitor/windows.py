"""Causal windows: the window for row i is rows i-W+1..i, padded with the first row."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def causal_windows(z: np.ndarray, window: int, history: np.ndarray | None = None) -> np.ndarray:
    """(n, d) rows -> (n, window*d) windows ending at each row, oldest first.

    ``history`` holds up to window-1 earlier rows of the same stream; when it
    is shorter, the earliest available row is repeated (causal edge padding),
    so the first rows of a stream are still scored.
    """
    n, d = z.shape
    if window == 1:
        return np.ascontiguousarray(z)
    need = window - 1
    full = np.concatenate([padded_tail(history, z, need), z])
    if n == 1:                     # the daemon's common case: one new row of one asset
        return full.reshape(1, window * d)
    win = sliding_window_view(full, (window, d))[:, 0]  # (n, window, d)
    return np.ascontiguousarray(win.reshape(n, window * d))


def padded_tail(history: np.ndarray | None, z: np.ndarray, need: int) -> np.ndarray:
    """The ``need`` rows before ``z``: the stream's remembered ones, the earliest repeated while too few."""
    prev = history if history is not None and len(history) else z[:1]
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
