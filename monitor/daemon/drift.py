"""Input drift: how far each asset's recent inputs are from its model's training data ("the model may be stale").

Per sensor, over an exponentially weighted window of about ``[drift] window``
messages, in units of the training standard deviation (the model's scaler):

* level: the recent mean's distance from the training mean, ``|mean(z)|``;
* spread: how much the recent standard deviation differs from training's, ``|sd(z) - 1|``;

a sensor's drift is the larger of the two, the asset's the largest over its
sensors (``plantwatch_input_drift``, the worst few sensors with theirs), and
the share of recent messages holding a value outside the training range
(min/max of the manifest's ``training_range``) is exported beside it. A
slowly moving operating point does not raise alarms once the rolling threshold
has adapted, but it is what makes a model stale: these say when to retrain.

Cost: per batch, one vectorised pass over the rows of each model's assets
(standardise, square, compare, segment sums) and one indexed add into a table
holding every asset's sums (:class:`Sums`); the window is updated from those
sums every :data:`FOLD_EVERY_S` seconds.
Rows of an asset in a maintenance window are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..detector import Detector

FOLD_EVERY_S = 5.0
#: sensors named per asset (plantwatch_input_drift_sensor)
TOP = 3
#: standardised values are clipped here: one absurd value cannot dominate the window for long
Z_CLIP = 100.0


@dataclass(frozen=True)
class Reference:
    """What training saw, per sensor: the scaler's mean and scale, the training range."""

    mean: np.ndarray
    scale: np.ndarray
    lower: np.ndarray | None
    upper: np.ndarray | None

    @classmethod
    def of(cls, det: Detector) -> Reference:
        """From a detector; a sensor constant in training gets 1% of its magnitude as its scale."""
        s = det.scaler
        scale = np.where(s.constant, np.maximum(np.abs(s.mean) * 0.01, 1e-6), s.scale) if len(s.constant) else s.scale
        r = det.training_range
        return cls(s.mean.astype(np.float64), scale.astype(np.float64), *((r.min, r.max) if r else (None, None)))


class Sums:
    """The sums since the last fold of every asset with ``d`` sensors, one row each: a batch adds to all
    its assets' rows with one indexed add instead of a Python step per asset."""

    def __init__(self, d: int) -> None:
        self.d = d
        self.z, self.z2 = np.zeros((0, d)), np.zeros((0, d))
        self.rows, self.outside = np.zeros(0, np.int64), np.zeros(0, np.int64)
        self._free: list[int] = []

    def take(self) -> int:
        if not self._free:
            n = len(self.rows)
            grow = max(16, n)
            self.z, self.z2 = (np.vstack([a, np.zeros((grow, self.d))]) for a in (self.z, self.z2))
            self.rows, self.outside = (np.concatenate([a, np.zeros(grow, np.int64)]) for a in (self.rows, self.outside))
            self._free = list(range(n + grow - 1, n - 1, -1))
        return self._free.pop()

    def give(self, row: int) -> None:
        self.z[row], self.z2[row], self.rows[row], self.outside[row] = 0.0, 0.0, 0, 0
        self._free.append(row)


@dataclass
class Drift:
    """One asset's weighted window; its sums since the last fold are row ``row`` of ``sums``."""

    sums: Sums
    row: int = field(init=False)
    mean: np.ndarray = field(init=False)  # window mean of z (starts at the training mean, 0)
    square: np.ndarray = field(init=False)  # window mean of z^2 (starts at the training variance, 1)
    share: float = 0.0  # window share of rows outside the training range
    seen: int = 0

    def __post_init__(self) -> None:
        self.row = self.sums.take()
        self.mean, self.square = np.zeros(self.sums.d), np.ones(self.sums.d)

    def release(self) -> None:
        """The asset is gone or has another model: its row is free for another."""
        self.sums.give(self.row)

    def fold(self, window: int) -> np.ndarray | None:
        """Take the sums into the window; returns the per-sensor drift, None if nothing came."""
        s, r = self.sums, self.row
        n = int(s.rows[r])
        if n == 0:
            return None
        keep = (1.0 - 1.0 / max(window, 1)) ** n  # the weight the old window keeps after n more rows
        self.mean = keep * self.mean + (1.0 - keep) * s.z[r] / n
        self.square = keep * self.square + (1.0 - keep) * s.z2[r] / n
        self.share = keep * self.share + (1.0 - keep) * float(s.outside[r]) / n
        self.seen += n
        s.z[r], s.z2[r], s.rows[r], s.outside[r] = 0.0, 0.0, 0, 0
        sd = np.sqrt(np.maximum(self.square - self.mean**2, 0.0))
        return np.maximum(np.abs(self.mean), np.abs(sd - 1.0))


def accumulate(ref: Reference, blocks: Sequence[np.ndarray], drifts: Sequence[Drift | None]) -> None:
    """Add the rows of several assets of one model (``blocks``, in order) to their sums (None: skip that
    asset); their drifts share one :class:`Sums` (same sensor count)."""
    live: list[np.ndarray] = []
    idx: list[int] = []
    counts: list[int] = []
    sums: Sums | None = None
    for b, d in zip(blocks, drifts):  # the one Python step per asset: a batch often has one row of each
        n = len(b)
        if d is not None and n:
            live.append(b)
            idx.append(d.row)
            counts.append(n)
            sums = d.sums
    if sums is None:
        return
    x = np.concatenate(live)
    z = x - ref.mean
    z /= ref.scale
    np.clip(z, -Z_CLIP, Z_CLIP, out=z)
    far = ((x < ref.lower) | (x > ref.upper)).any(axis=1) if ref.lower is not None and ref.upper is not None else None
    if len(x) == len(counts):  # one row per asset, the daemon's usual batch
        sz, sz2, out = z, z * z, far
    else:
        at = np.concatenate([[0], np.cumsum(counts[:-1])]).astype(np.int64)
        sz, sz2 = np.add.reduceat(z, at, axis=0), np.add.reduceat(z * z, at, axis=0)
        out = np.add.reduceat(far.astype(np.int64), at) if far is not None else None
    rows = np.array(idx)
    sums.z[rows] += sz
    sums.z2[rows] += sz2
    sums.rows[rows] += counts
    if out is not None:
        sums.outside[rows] += out


def worst(per_sensor: np.ndarray, sensors: Sequence[str], k: int = TOP) -> tuple[tuple[str, float], ...]:
    """The ``k`` sensors drifting most, largest first, with their drift."""
    order = np.argsort(-per_sensor, kind="stable")[:k]
    return tuple((sensors[j], float(per_sensor[j])) for j in order)
