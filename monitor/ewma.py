"""Causal exponential smoothing, vectorised over rows and columns.

A per-row Python loop would cost more than the autoencoder itself at tens of
thousands of rows per second; blocks of rows are smoothed with one small
matrix product instead.

>>> import numpy as np
>>> y, last = ewma(np.array([[1.0], [3.0]]), 0.5, np.array([1.0]))
>>> y.ravel().tolist(), last.tolist()
([1.0, 2.0], [2.0])
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

BLOCK = 64


@lru_cache(maxsize=16)
def _weights(alpha: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    i = np.arange(n)
    decay = (1.0 - alpha) ** (i[:, None] - i[None, :])
    lower = np.tril(alpha * decay)
    carry = (1.0 - alpha) ** (i + 1)
    return lower, carry


def ewma(x: np.ndarray, alpha: float, prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y[t] = (1-alpha) y[t-1] + alpha x[t], starting from ``prev`` = y[-1].

    Returns the smoothed rows and the last row (the state to carry on).
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    n = x.shape[0]
    out = np.empty(x.shape, dtype=np.float64)
    state = np.asarray(prev, dtype=np.float64)
    for start in range(0, n, BLOCK):
        blk = x[start:start + BLOCK]
        lower, carry = _weights(alpha, blk.shape[0])
        y = lower @ blk + np.multiply.outer(carry, state)
        out[start:start + BLOCK] = y
        state = y[-1]
    return out, state.copy()
