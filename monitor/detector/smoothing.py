"""Causal exponential smoothing of many streams at once, vectorised over rows, streams and columns.

A per-row Python loop would cost more than the autoencoder itself at tens
of thousands of rows per second. Rows are smoothed in blocks of up to
:data:`BLOCK` time steps with one small matrix product per block; the
streams of a daemon batch (a few rows of each of many assets) share those
products, and one long offline stream is simply one stream.

>>> import numpy as np
>>> y, last = ewma(np.array([[1.0], [3.0]]), 0.5, np.array([[1.0]]), [2])
>>> y.ravel().tolist(), last.tolist()
([1.0, 2.0], [[2.0]])
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

BLOCK = 64


@lru_cache(maxsize=BLOCK)
def _weights(alpha: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    i = np.arange(n)
    decay = (1.0 - alpha) ** (i[:, None] - i[None, :])
    lower = np.tril(alpha * decay)
    carry = (1.0 - alpha) ** (i + 1)
    return lower, carry


def ewma(x: np.ndarray, alpha: float, prev: np.ndarray, sizes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """y[t] = (1-alpha) y[t-1] + alpha x[t] for each stream, from ``prev[k]`` = stream k's y[-1].

    ``x`` (n, d) holds ``sizes[k]`` rows of stream k after those of stream
    k-1; ``prev`` is (k, d). Returns the smoothed rows and each stream's last
    smoothed row (the state to carry on; ``prev[k]`` for a stream without rows).

    One stream (offline scoring) is smoothed in blocks of :data:`BLOCK` rows,
    one matrix product each; several (a daemon batch: a few rows of each of
    many assets) take one vector update per step, across all the streams
    that still have a row at that step.
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    ns = np.asarray(sizes, dtype=np.int64)
    state = np.array(prev, dtype=np.float64)
    if len(ns) == 1:
        out, state[0] = _blocks(x, alpha, state[0])
        return out, state
    out = np.array(x, dtype=np.float64)
    starts = np.cumsum(ns) - ns
    keep = 1.0 - alpha
    longest = int(ns.max()) if len(ns) else 0
    everyone = slice(None) if len(ns) and ns.min() > 0 else np.flatnonzero(ns)
    for step in range(longest):
        sel = np.flatnonzero(ns > step) if step else everyone
        rows = starts[sel] + step
        state[sel] = keep * state[sel] + alpha * out[rows]
        out[rows] = state[sel]
    return out, state


def _blocks(x: np.ndarray, alpha: float, prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = np.empty(x.shape, dtype=np.float64)
    state = prev
    for start in range(0, len(x), BLOCK):
        blk = x[start : start + BLOCK]
        lower, carry = _weights(alpha, len(blk))
        y = lower @ blk + np.multiply.outer(carry, state)
        out[start : start + BLOCK] = y
        state = y[-1]
    return out, state
