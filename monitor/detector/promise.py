"""The threshold for a false-alarm target, and the promise that comes with it.

Operators count alarm *episodes* (ISA-18.2 / EEMUA 191 count alarms per
operator per hour), and the smoothed score is strongly autocorrelated, so
the threshold is chosen on the calibration scores by replaying the alarm
chain (on-delay, off-delay, deadband: :mod:`.episodes`) and counting what
comes out, not by reading a quantile of rows.

A target with at least :data:`EMPIRICAL` episodes in the calibration data is
read off directly. A rarer one is extrapolated: every episode at a base
level ``u0`` has a peak (the highest threshold at which it would still have
been raised), and the peaks' excesses over ``u0`` follow a generalised
Pareto tail (peaks over threshold; exponential while there are too few
peaks to estimate a shape). The number of peaks behind the fit says how far
the tail can honestly be trusted (its scale, and its shape, whose error grows
with the square of how far past the peaks it reaches): :func:`choose` reports the lowest rate the
history supports within a factor of two and a conservative upper bound on
the rate it promises, which ``train`` prints and the manifest records.

>>> import numpy as np
>>> s = np.convolve(np.random.default_rng(0).exponential(1.0, 20000), np.ones(8) / 8, "valid")
>>> p = choose(s, Target("rate", 0.01, 60.0), on_delay=5, off_delay=3, deadband=0.95)
>>> p.support, 0.005 < float(np.mean(s > p.threshold)) < 0.03
('ok', True)
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

import numpy as np

from .coverage import FEW_STRETCHES
from .episodes import Episodes, episodes

#: episodes in the calibration data from which a target is read off directly
EMPIRICAL = 10
#: episodes at the base level of the tail fit
BASE = 30
#: peaks from which the tail's shape is estimated rather than taken as exponential
SHAPE_PEAKS = 15
DAY = 86400.0
#: a promise is "ok" when new data realise within a factor of two of it at least this often (the count's,
#: the tail's and the deployed model's level errors together); at 1 sd of the tail alone ("ok" until
#: 2026-12) 3,000-row histories promised "ok" and realised 0.24x and 2.05x
CONFIDENCE = 0.9
_NORMAL = statistics.NormalDist()
#: residuals whose correlation time exceeds this many times the smoothing's own memory wander (stationary
#: processes at 3,000-30,000 rows: 1.2-2.5x; the simulator's drifting sensors at 10,000-30,000 rows: 10-25x)
SLOW_RESIDUAL = 4.0


@dataclass(frozen=True)
class Target:
    """What the operator asked for: a share of samples in alarm, or alarm episodes per day."""

    kind: str  # "rate" or "episodes_per_day"
    value: float
    period: float  # seconds per sample

    def __post_init__(self) -> None:
        if self.kind not in ("rate", "episodes_per_day"):
            raise ValueError(f"target kind must be 'rate' or 'episodes_per_day', got {self.kind!r}")
        if not (self.value > 0 and self.period > 0):
            raise ValueError(f"target value and sample period must be > 0, got {self.value}, {self.period}")


@dataclass(frozen=True)
class Promise:
    """What train promises for new normal data, and how well the history backs it."""

    threshold: float
    row_rate: float  # expected share of samples in alarm
    episodes_per_day: float  # expected alarm episodes per day
    upper_episodes_per_day: float  # a conservative (~95 %) bound on episodes per day
    supported_episodes_per_day: float  # lowest rate this history supports within a factor of two (inf: none)
    support: str  # "ok", or "short": the target lies beyond what the history supports
    method: str  # "empirical" or "tail"
    calibration_rows: int
    calibration_days: float
    peaks: int  # episodes behind the tail fit (or seen at the threshold, empirically)
    level_factor: float  # the rate factor one sd of the deployed model's score level stands for
    confidence: float  # chance that new normal data realise within a factor of two of the promise
    target: dict[str, float | str]
    stretches: float | None = None  # history length in correlation times of its main variation (see .coverage)
    slow_samples: float | None = None  # that correlation time, in samples
    clears_within: int | None = None  # samples after the process is normal again by which an alarm has cleared
    residual_stretches: float | None = None  # calibration data in correlation times of the residuals' wander
    residual_samples: float | None = None  # that correlation time, in samples (see .coverage.residual_wander)
    residual_memory: float | None = None  # the smoothing's own correlation time, in samples (white residuals)

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        if math.isinf(self.supported_episodes_per_day):
            d["supported_episodes_per_day"] = None  # JSON has no infinity: no target is backed
        return d


def _grid(s: np.ndarray) -> np.ndarray:
    qs = 1.0 - np.geomspace(0.5, 0.5 / len(s), 90)
    return np.unique(np.quantile(s, qs))


def _gpd(excess: np.ndarray) -> tuple[float, float]:
    """(shape, scale) of a generalised Pareto tail; exponential (shape 0) when peaks are few.

    Probability-weighted moments (Hosking & Wallis) are robust for the
    sample sizes here; the shape is kept within [-0.3, 0.3] (bounded to
    moderately heavy tails) because a wild shape from noise would move an
    extrapolated threshold by factors.
    """
    y = np.sort(excess)
    k = len(y)
    if k < SHAPE_PEAKS:
        return 0.0, float(max(y.mean(), 1e-12))
    b0 = float(y.mean())
    b1 = float(np.sum(np.arange(k) / (k - 1) * y) / k)  # E[X F(X)]
    xi = float(np.clip(2.0 - b0 / (2.0 * b1 - b0), -0.3, 0.3)) if 2.0 * b1 > b0 else 0.0
    sigma = float(max(b0 * (1.0 - xi), 1e-12))
    return xi, sigma


def _excess_for(ratio: float, xi: float, sigma: float) -> float:
    """Excess over the base level at which the survival equals ``ratio`` (< 1)."""
    if abs(xi) < 1e-9:
        return -sigma * math.log(ratio)
    return sigma / xi * (ratio ** (-xi) - 1.0)


def _survival(excess: float, xi: float, sigma: float) -> float:
    if abs(xi) < 1e-9:
        return math.exp(-excess / sigma)
    base = 1.0 + xi * excess / sigma
    return 0.0 if base <= 0 else base ** (-1.0 / xi)


def _shape_sd(peaks: int) -> float:
    """sd of a tail shape estimated from ``peaks`` peaks (probability-weighted moments near an exponential
    tail, Hosking & Wallis 1987); an exponential assumed from fewer peaks is no surer."""
    return math.sqrt(4.0 / (3.0 * max(peaks, 1)))


def _tail_error(want: float, peaks: int) -> float:
    """sd of the log rate extrapolated from ``peaks`` episodes down to ``want``: the tail's scale and shape.

    L = log(peaks / want) scale units past the base, the scale's error moves the log rate by L / sqrt(peaks)
    and a shape error d by L - log(1 + d L) / d. Without the shape a 3,000-row history extrapolated from 30
    episodes to 2 and promised "within 2x" (it realised 0.47x and 2.6x at two seeds).
    """
    reach = math.log(max(peaks / max(want, 1e-12), 1.0))
    d = _shape_sd(peaks)
    return math.hypot(reach / math.sqrt(max(peaks, 1)), reach - math.log1p(d * reach) / d)


def _rate_error(want: float, peaks: int) -> float:
    """sd of the log episode rate the calibration data give at ``want`` episodes: counted directly from
    :data:`EMPIRICAL` episodes on (Poisson), extrapolated from ``peaks`` at the tail's base otherwise."""
    if want >= EMPIRICAL:
        return 1.0 / math.sqrt(want)
    return math.hypot(1.0 / math.sqrt(max(peaks, 1)), _tail_error(want, peaks))


def _within_two(sd: float) -> float:
    """Chance that a log-normal error of this sd stays within a factor of two."""
    return 1.0 if sd <= 0 else 2.0 * _NORMAL.cdf(math.log(2.0) / sd) - 1.0


def _fewest_backed(peaks: int, most: float, level_log_sd: float) -> float:
    """Fewest episodes (in the calibration data) promised within a factor of two at :data:`CONFIDENCE`
    (inf: none, the level alone is too uncertain)."""
    for want in np.geomspace(0.01, max(most, 0.02), 200):
        if _within_two(math.hypot(_rate_error(float(want), peaks), level_log_sd)) >= CONFIDENCE:
            return float(want)
    return math.inf


def _interp(grid: np.ndarray, counts: np.ndarray, want: float) -> float:
    """Threshold at which the (non-increasing) count falls to ``want``, interpolated on log counts."""
    idx = np.flatnonzero(counts >= want)
    i = int(idx[-1]) if idx.size else 0
    if i + 1 >= len(grid) or counts[i + 1] <= 0:
        return float(grid[i])
    c0, c1 = math.log(max(counts[i], 1e-9)), math.log(max(counts[i + 1], 1e-9))
    if c0 == c1:
        return float(grid[i])
    f = (c0 - math.log(want)) / (c0 - c1)
    return float(grid[i] + min(max(f, 0.0), 1.0) * (grid[i + 1] - grid[i]))


def choose(
    scores: np.ndarray, target: Target, on_delay: int, off_delay: int, deadband: float, level_sd: float = 0.0
) -> Promise:
    """Threshold meeting ``target`` on these (normal, never-trained-on) scores, with its promise.

    ``level_sd`` is how uncertain the deployed model's score level is against these scores (sd of its
    logarithm). The tail is steep (a few percent of threshold are a factor of two in false alarms), so it
    widens the bound and can leave no target that the history backs within a factor of two.
    """
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    days = n * target.period / DAY
    grid = _grid(s)
    runs: list[Episodes] = [episodes(s, float(u), on_delay, off_delay, deadband) for u in grid]
    counts = np.array([r.count for r in runs], dtype=np.float64)
    rows = np.array([r.rows for r in runs], dtype=np.float64)
    length = rows / np.maximum(counts, 1)
    # base of the tail: the highest level still holding BASE episodes (or the most episodes there are)
    enough = np.flatnonzero(counts >= min(BASE, counts.max()))
    b = int(enough[-1])
    u0, base = float(grid[b]), runs[b]
    k = base.count
    xi, sigma = _gpd(np.maximum(base.peaks - u0, 0.0)) if k else (0.0, 1.0)
    # mean alarm length near the tail: the highest level with a few episodes left
    typical = float(length[int(np.flatnonzero(counts >= min(5, counts.max()))[-1])]) if counts.max() else 1.0
    if target.kind == "rate":
        want = target.value * n / max(typical, 1.0)  # episodes in the calibration data
    else:
        want = target.value * days
    if EMPIRICAL <= want <= counts.max():
        method = "empirical"
        if target.kind == "rate":
            th = _interp(grid, rows, target.value * n)
        else:
            th = _interp(grid, counts, want)
        at = episodes(s, th, on_delay, off_delay, deadband)
        expect = float(at.count) if target.kind == "rate" else want
        row_rate = target.value if target.kind == "rate" else at.rows / n
        peaks = at.count
    else:
        method = "tail"
        ratio = min(want / max(k, 1), 1.0)
        th = u0 + _excess_for(ratio, xi, sigma) if ratio < 1 else u0
        expect = want
        row_rate = want * typical / n
        peaks = k
    per_day = expect / days
    # conservative bound (the tail's scale and shape, the count: ~1.64 sd) and the rate the history backs within 2x
    kk = max(k, 1)
    hi_c = 1.64 / math.sqrt(kk)
    excess = max(th - u0, 0.0)
    # false alarms per unit of log threshold near th: how a level error turns into a rate error
    steep = th / max(sigma + xi * excess, 1e-12)
    level = math.exp(min(steep * level_sd, 30.0))  # finite: the manifest is JSON
    heavier = xi + 1.64 * _shape_sd(kk) if method == "tail" else xi
    upper = kk * _survival(excess, heavier, sigma * (1 + hi_c)) * (1 + hi_c)
    upper = max(upper, expect * (1 + hi_c), expect) * level**1.64
    level_log_sd = math.log(level)
    confidence = _within_two(math.hypot(_rate_error(want if method == "tail" else expect, kk), level_log_sd))
    fewest = _fewest_backed(kk, float(counts.max()), level_log_sd)
    supported = max(fewest, 1.0) / days
    support = "ok" if confidence >= CONFIDENCE else "short"
    return Promise(
        threshold=float(th),
        row_rate=float(row_rate),
        episodes_per_day=float(per_day),
        upper_episodes_per_day=float(upper / days),
        supported_episodes_per_day=float(supported),
        support=support,
        method=method,
        calibration_rows=n,
        calibration_days=float(days),
        peaks=int(peaks),
        level_factor=float(level),
        confidence=float(round(confidence, 4)),
        target={"kind": target.kind, "value": float(target.value), "sample_period": float(target.period)},
    )


def residual_wanders(p: Promise) -> bool:
    """Do the calibration data hold too few stretches of a wander in the residuals that is the errors' own?

    A short history holds few stretches of the smoothing's memory too (800 rows: ~50 of ~16 samples); that
    is a short history (the promise's support says so), not errors that wander, which take several times
    the smoothing's memory to come and go.
    """
    if p.residual_stretches is None or p.residual_samples is None or p.residual_memory is None:
        return False  # a model trained before this was measured
    return p.residual_stretches < FEW_STRETCHES and p.residual_samples > SLOW_RESIDUAL * p.residual_memory


def inputs_uniform(p: Promise) -> bool:
    """Does the history span too few correlation times of its inputs' main variation (see .coverage)?"""
    return p.stretches is not None and p.stretches < FEW_STRETCHES


def _days(days: float) -> str:
    return f"{days * 24:.1f} hours" if days < 2 else f"{days:.1f} days"


def describe(p: Promise) -> list[str]:
    """What ``train`` tells the operator: the promise, and when the history cannot back it, what it can."""
    lines = [
        f"promise: expect about {p.episodes_per_day:.3g} false alarm episodes per day and "
        f"{100 * p.row_rate:.3g} % of samples flagged on normal operation "
        f"(calibrated on {p.calibration_rows} held-out samples, {_days(p.calibration_days)} of history; "
        f"within a factor of two with {100 * p.confidence:.0f} % confidence)"
    ]
    if p.clears_within is not None:
        lines[0] += f"; an alarm clears within {p.clears_within} samples of the process returning to normal"
    if math.isinf(p.supported_episodes_per_day):
        lines.append(
            f"warning: the history is too short to back any target within a factor of two: the score level the "
            f"model will have on new data is uncertain by a factor of {p.level_factor:.2g} in false alarms "
            f"(its {p.calibration_rows} held-out samples disagree that much from part to part); on normal "
            f"operation expect at most about {p.upper_episodes_per_day:.3g} episodes per day. Train on a longer history"
        )
    elif p.support != "ok":
        lines.append(
            f"warning: the history is too short to back this target within a factor of two "
            f"at {100 * CONFIDENCE:.0f} % confidence "
            f"({p.calibration_rows} held-out samples, {_days(p.calibration_days)}: the target lies beyond the "
            f"false alarms seen in it, so it is extrapolated); on normal operation expect at most about "
            f"{p.upper_episodes_per_day:.3g} episodes per day. A promise within a factor of two needs a longer "
            f"history or a target of about --false-alarms-per-day {p.supported_episodes_per_day:.2g} or more"
        )
    few = inputs_uniform(p)
    if residual_wanders(p) and not few:
        lines.append(
            f"warning: the model's errors wander slowly: a sensor's residual takes about "
            f"{p.residual_samples or 0:.0f} samples to come and go, so the {p.calibration_rows} calibration "
            f"samples hold only ~{p.residual_stretches:.0f} independent stretches of it (a sensor drifting, "
            f"fouling, a season); the promise holds while the errors stay within what the history saw, and new "
            f"data that drift further will raise more alarms than promised, by no bound the history can give. "
            f"Train on a history about {FEW_STRETCHES}x that long, or retrain as the plant drifts "
            f"(README: 'Input drift: when to retrain')"
        )
    if few:
        lines.append(
            f"warning: the history may be too uniform: its main variation takes about "
            f"{p.slow_samples or 0:.0f} samples to come and go, so the history holds only "
            f"~{p.stretches:.0f} independent stretches of it; operating states it has not seen will raise alarms "
            f"whatever the threshold, and the promise holds for operation like the history. Train on a history "
            f"that spans every operating state (about {FEW_STRETCHES}x that time or more)"
        )
    return lines
