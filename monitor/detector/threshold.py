"""Rolling thresholds: start from the calibrated value, adapt causally, slowly and boundedly.

Each threshold learns only from samples the caller did not flag (score under
the threshold and no alarm running): a fault must never teach the threshold
to accept it. Adaptation is bounded in speed (a step size) and in range (a
factor of the calibrated value), so a slow fault cannot walk it away either.

>>> t = QuantileThreshold(base=1.0, reference=0.5)
>>> for _ in range(5000):
...     t.learn(0.5)
>>> 0.8 <= t.value <= 1.5
True
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

METHODS = ("quantile", "spot", "static")


class Threshold(Protocol):
    value: float

    def learn(self, score: float) -> None: ...


@dataclass(frozen=True)
class Bounds:
    """How far and how fast a rolling threshold may move from its calibrated value."""

    # The calibrated value comes from out-of-fold scores, which run higher than the
    # deployed model's scores on the same plant: it is already the low end, so by
    # default thresholds only rise (a plant noisier than its history), never sink.
    low: float = 1.0
    high: float = 1.5
    step: float = 0.002  # fraction of the reference per learned sample

    def __post_init__(self) -> None:
        if not 0 < self.low <= 1 <= self.high:
            raise ValueError(f"bounds need 0 < low <= 1 <= high, got low={self.low} high={self.high}")
        if not 0 <= self.step < 1:
            raise ValueError(f"step must be in [0, 1), got {self.step}")


class StaticThreshold:
    """The calibrated threshold, never adapted."""

    def __init__(self, base: float) -> None:
        self.value = float(base)

    def learn(self, score: float) -> None:
        return None


class QuantileThreshold:
    """Scales the threshold with a tracked quantile of normal scores.

    It tracks the ``p``-quantile (default 0.9, far below the threshold, so
    the censoring of flagged samples hardly biases it) with a Robbins-Monro
    step, and moves the threshold by the same ratio: a plant whose normal
    noise grows by 20% gets a 20% higher threshold.
    """

    def __init__(self, base: float, reference: float, p: float = 0.9, bounds: Bounds = Bounds()) -> None:
        if reference <= 0 or base <= 0:
            raise ValueError(f"base and reference must be > 0, got base={base} reference={reference}")
        self.base, self.ref0, self.p, self.bounds = float(base), float(reference), float(p), bounds
        self.ref = self.ref0
        self.value = self.base
        self._up = bounds.step * self.ref0 * p
        self._down = bounds.step * self.ref0 * (1.0 - p)

    def learn(self, score: float) -> None:
        if score > self.ref:
            self.ref += self._up
        else:
            self.ref -= self._down
        ratio = min(max(self.ref / self.ref0, self.bounds.low), self.bounds.high)
        self.value = self.base * ratio


class SpotThreshold:
    """Extreme-value threshold (SPOT): a generalised Pareto tail fitted to peaks over a level.

    The threshold is the score exceeded with probability ``risk`` under the
    fitted tail. Peaks are kept in a bounded deque (method-of-moments fit), the
    peak rate is a slow running mean, so memory and time per sample are O(1).
    """

    def __init__(
        self,
        base: float,
        level: float,
        peaks: list[float],
        risk: float,
        peak_rate: float,
        bounds: Bounds = Bounds(),
        max_peaks: int = 500,
    ) -> None:
        if not 0 < risk < 1:
            raise ValueError(f"risk must be in (0, 1), got {risk}")
        self.base, self.level, self.risk, self.bounds = float(base), float(level), float(risk), bounds
        self.peaks: deque[float] = deque((float(p) for p in peaks if p > 0), maxlen=max_peaks)
        self.peak_rate = float(peak_rate)
        self.value = self.base
        self._since_fit = 0
        self._fit()

    def _quantile(self) -> float | None:
        n = len(self.peaks)
        if n < 10 or self.peak_rate <= 0:
            return None
        mean = sum(self.peaks) / n
        var = sum((p - mean) ** 2 for p in self.peaks) / (n - 1)
        if var <= 0 or mean <= 0:
            return None
        gamma = 0.5 * (1.0 - mean * mean / var)
        sigma = 0.5 * mean * (mean * mean / var + 1.0)
        r = self.risk / self.peak_rate
        if abs(gamma) < 1e-6:
            return self.level - sigma * math.log(r)
        return self.level + sigma / gamma * (r ** (-gamma) - 1.0)

    def _fit(self) -> None:
        z = self._quantile()
        if z is None or not math.isfinite(z):
            return
        lo, hi = self.base * self.bounds.low, self.base * self.bounds.high
        target = min(max(z, lo), hi)
        # bounded speed: move at most `step` of the base per refit
        limit = self.bounds.step * self.base * 10
        self.value += max(-limit, min(limit, target - self.value))

    def learn(self, score: float) -> None:
        over = score > self.level
        self.peak_rate += 0.0005 * ((1.0 if over else 0.0) - self.peak_rate)
        if over:
            self.peaks.append(score - self.level)
        self._since_fit += 1
        if self._since_fit >= 10:
            self._since_fit = 0
            self._fit()
