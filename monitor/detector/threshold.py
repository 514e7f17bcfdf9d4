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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeGuard

METHODS = ("quantile", "spot", "static")


class Threshold(Protocol):
    value: float

    def learn(self, score: float) -> None: ...

    def to_state(self) -> dict[str, Any]:
        """What it has learned, as plain numbers and lists (its calibration comes from the model)."""
        ...

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`to_state` of the same method; ValueError names what does not fit."""
        ...


def _check_method(state: Mapping[str, Any], method: str) -> None:
    got = state.get("method")
    if got != method:
        raise ValueError(f"threshold state is for method {got!r}, this stream uses {method!r}")


@dataclass(frozen=True)
class Bounds:
    """How far and how fast a rolling threshold may move from its calibrated value."""

    # The calibrated value is what the promise is made for: by default a threshold
    # only rises (a plant noisier than its history raises fewer alarms than
    # promised, not more), never sinks below it.
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

    def to_state(self) -> dict[str, Any]:
        return {"method": "static"}

    def load_state(self, state: Mapping[str, Any]) -> None:
        _check_method(state, "static")


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

    def to_state(self) -> dict[str, Any]:
        return {"method": "quantile", "ref": self.ref, "value": self.value}

    def load_state(self, state: Mapping[str, Any]) -> None:
        _check_method(state, "quantile")
        self.ref, self.value = _finite(state, "ref"), _finite(state, "value")


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
        self._moments()
        self._fit()

    def _moments(self) -> None:
        """The peaks' sum and sum of squares as exact integers, kept up to date as peaks come and go.

        A refit every 10 samples that walked all the peaks cost ~3.5 us a learned row (nearly every row of
        normal operation) once the deque was full (500 peaks, which a model trained on a long history has
        from its first row): ``learn`` took 4.0 us a call there against 0.5 us now, at a 2 % peak rate.
        Exact sums make the refit O(1) without rounding that builds up over months, and the moments stay a
        function of the peaks alone, so a restored state refits exactly as the original does.
        """
        fixed = [_fixed(p) for p in self.peaks]
        self._s1 = sum(fixed)
        self._s2 = sum(f * f for f in fixed)

    def _quantile(self) -> float | None:
        n = len(self.peaks)
        if n < 10 or self.peak_rate <= 0:
            return None
        # int / int is correctly rounded however large the integers
        mean = self._s1 / (n << _EXACT)
        var = (n * self._s2 - self._s1 * self._s1) / ((n * (n - 1)) << (2 * _EXACT))
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
        if over and math.isfinite(score):
            peaks = self.peaks
            if len(peaks) == peaks.maxlen:
                gone = _fixed(peaks[0])
                self._s1 -= gone
                self._s2 -= gone * gone
            peak = score - self.level
            peaks.append(peak)
            f = _fixed(peak)
            self._s1 += f
            self._s2 += f * f
        self._since_fit += 1
        if self._since_fit >= 10:
            self._since_fit = 0
            self._fit()

    def to_state(self) -> dict[str, Any]:
        return {
            "method": "spot",
            "peaks": list(self.peaks),
            "peak_rate": self.peak_rate,
            "value": self.value,
            "since_fit": self._since_fit,
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        _check_method(state, "spot")
        peaks = state.get("peaks")
        if not isinstance(peaks, list) or len(peaks) > (self.peaks.maxlen or 0) or not all(map(_number, peaks)):
            raise ValueError(f"spot peaks must be a list of at most {self.peaks.maxlen} finite numbers")
        since = state.get("since_fit")
        if not isinstance(since, int) or isinstance(since, bool) or not 0 <= since < 10:
            raise ValueError(f"spot since_fit must be an integer 0-9, got {since!r}")
        self.peaks = deque((float(p) for p in peaks), maxlen=self.peaks.maxlen)
        self.peak_rate, self.value, self._since_fit = _finite(state, "peak_rate"), _finite(state, "value"), since
        self._moments()


#: every finite double is an integer multiple of 2**-1074
_EXACT = 1074


def _fixed(p: float) -> int:
    """``p * 2**1074`` exactly, as an integer."""
    num, den = p.as_integer_ratio()  # den is a power of two
    return num << (_EXACT + 1 - den.bit_length())


def _number(v: Any) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _finite(state: Mapping[str, Any], key: str) -> float:
    v = state.get(key)
    if not _number(v):
        raise ValueError(f"threshold state {key!r} must be a finite number, got {v!r}")
    return float(v)
