"""Which sensor values are physically plausible: the range training saw, widened by a wide margin.

A single well-formed value can blind a stream for good: ``1e39`` overflows
float32 in the network and the score stays NaN; ``1e20`` squares past
float32 and the score stays +Inf. The rule, the same in ``plantwatch score``
and in the monitor:

* training records each sensor's min, max, median and robust sigma
  (:class:`TrainingRange`, in the model folder's manifest);
* a value is plausible when it lies within ``MARGIN`` training *spans* of what
  training saw: ``[min - MARGIN * span, max + MARGIN * span]``, where a
  sensor's span is the larger of its training range (max - min) and the
  magnitude of its median (1 for a sensor that was always 0). TEP's strongest
  faults move a sensor about 21 ranges past its training extremes; 1e20 is
  many orders of magnitude past any bound;
* a ``[sensors.NAME]`` table (the monitor's config, or ``score --bounds``)
  replaces either bound of a sensor by name;
* a row holding an implausible value is not scored: the monitor rejects the
  message as ``out_of_range``, ``score`` leaves the row's score empty. It
  never enters the window, the smoothing or the threshold, so the stream is
  exactly as it would have been without it.

The detector also clips standardised values to ``+-Z_LIMIT`` before the
network, so that whatever bounds are configured, a finite input gives a
finite score.

>>> r = TrainingRange.of(np.array([[0.0, 5.0], [2.0, 5.0], [4.0, 5.0]]))
>>> b = r.plausible()
>>> b.lower.tolist(), b.upper.tolist()
([-400.0, -495.0], [404.0, 505.0])
>>> b.first_bad(np.array([1e39, 5.0])), b.first_bad(np.array([3.0, 5.0]))
(0, -1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: how many training spans beyond its training extremes a value may lie
MARGIN = 100.0
#: standardised values are clipped to this magnitude before the network (float32 squares stay finite)
Z_LIMIT = 1e6


@dataclass(frozen=True)
class TrainingRange:
    """Per-sensor statistics of the training history, recorded in the manifest."""

    min: np.ndarray
    max: np.ndarray
    median: np.ndarray
    robust_sigma: np.ndarray  # interquartile range / 1.349 (the standard deviation for Gaussian data)

    @classmethod
    def of(cls, values: np.ndarray) -> TrainingRange:
        q1, med, q3 = np.percentile(values, [25, 50, 75], axis=0)
        return cls(values.min(axis=0), values.max(axis=0), med, (q3 - q1) / 1.349)

    def to_dict(self) -> dict[str, list[float]]:
        fields = {"min": self.min, "max": self.max, "median": self.median, "robust_sigma": self.robust_sigma}
        return {k: [float(v) for v in a] for k, a in fields.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], n_sensors: int) -> TrainingRange:
        """Raises ValueError naming the field that is missing, of the wrong length or not finite."""
        arrays = {}
        for k in ("min", "max", "median", "robust_sigma"):
            if k not in d:
                raise ValueError(f"training_range.{k} is missing")
            a = np.asarray(d[k], dtype=np.float64)
            if a.shape != (n_sensors,) or not np.isfinite(a).all():
                raise ValueError(f"training_range.{k} must be {n_sensors} finite numbers")
            arrays[k] = a
        return cls(**arrays)

    def plausible(self, margin: float = MARGIN) -> ValueBounds:
        span = np.maximum(self.max - self.min, np.abs(self.median))
        span = np.where(span > 0, span, 1.0)
        return ValueBounds(self.min - margin * span, self.max + margin * span)


@dataclass(frozen=True)
class ValueBounds:
    """Inclusive per-sensor bounds; a row is scored only if every value lies within them."""

    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def unbounded(cls, n_sensors: int) -> ValueBounds:
        """For a folder without a training range: only float's own limits (and :data:`Z_LIMIT`) apply."""
        big = np.finfo(np.float64).max
        return cls(np.full(n_sensors, -big), np.full(n_sensors, big))

    def with_overrides(
        self, sensors: Sequence[str], overrides: Mapping[str, tuple[float | None, float | None]]
    ) -> ValueBounds:
        """Bounds with some sensors' lower/upper replaced by name (None keeps the default); others ignored."""
        lower, upper = self.lower.copy(), self.upper.copy()
        for j, name in enumerate(sensors):
            lo, hi = overrides.get(name, (None, None))
            if lo is not None:
                lower[j] = lo
            if hi is not None:
                upper[j] = hi
        return ValueBounds(lower, upper)

    def bad_rows(self, rows: np.ndarray) -> np.ndarray:
        """(n,) True where a row holds a value outside the bounds."""
        return np.asarray(((rows < self.lower) | (rows > self.upper)).any(axis=1))

    def first_bad(self, row: np.ndarray) -> int:
        """Index of the first sensor of ``row`` out of bounds, or -1."""
        bad = np.flatnonzero((row < self.lower) | (row > self.upper))
        return int(bad[0]) if len(bad) else -1

    def describe(self, j: int, sensor: str, value: float) -> str:
        """One line for a log or an error: which sensor, its value and the bounds it broke."""
        return f"{sensor}={value:.6g} outside [{self.lower[j]:.6g}, {self.upper[j]:.6g}]"
