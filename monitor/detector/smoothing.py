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
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    ns = np.asarray(sizes, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(ns)[:-1]]).astype(np.int64)
    out = np.empty(x.shape, dtype=np.float64)
    state = np.array(prev, dtype=np.float64)
    longest = int(ns.max()) if len(ns) else 0
    for b0 in range(0, longest, BLOCK):
        sel = np.flatnonzero(ns > b0)
        steps = b0 + np.arange(min(BLOCK, longest - b0))
        last = np.minimum(ns[sel] - 1 - b0, len(steps) - 1)  # each stream's last step in this block
        idx = starts[sel, None] + np.minimum(steps[None, :], ns[sel, None] - 1)  # past a stream's end: its last row
        lower, carry = _weights(alpha, len(steps))
        y = lower @ x[idx] + carry[None, :, None] * state[sel][:, None, :]  # (streams, steps, d)
        valid = steps[None, :] < ns[sel, None]
        out[idx[valid]] = y[valid]  # causal: padding never reaches a real row
        state[sel] = y[np.arange(len(sel)), last]
    return out, state
