"""Does the history cover the process, or only a stretch of its slowest wander?

A history can be long in rows and still short for the process: if the plant
moves between operating states every few hours, a day of one-second samples
holds a handful of them, and a week-old state it never reached will alarm,
however well the threshold is calibrated on the history itself. The
calibration cannot see this (its held-out blocks are as narrow as the
history), so it is measured on the inputs: the integrated autocorrelation
time of the history's main directions of variation (the slowest of its
leading principal components; Geyer's initial positive sequence estimator)
says how many samples one independent stretch takes, and the history's
length in those stretches says how much of the process's range it can have
seen.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> stretches(rng.normal(0, 1, (2000, 3))) > 500
True

The inputs are not the whole story: each sensor's *error* can wander on its
own, slower than anything in the inputs' main directions (a sensor drifting
out of calibration, fouling, a seasonal bias), and the threshold is
calibrated on errors. :func:`residual_wander` measures that on the smoothed
residuals of the calibration data.
"""

from __future__ import annotations

import numpy as np

#: independent stretches of the slowest variation below which train warns
FEW_STRETCHES = 50


def correlation_time(x: np.ndarray) -> float:
    """Integrated autocorrelation time of a series, in samples (1 for white noise)."""
    x = np.asarray(x, dtype=np.float64) - np.mean(x)
    n = len(x)
    var = float(np.dot(x, x))
    if n < 4 or var <= 0:
        return 1.0
    f = np.fft.rfft(x, 2 * n)
    acf = np.fft.irfft(f * np.conj(f))[: n // 2] / var
    # Geyer: sum pairs of autocorrelations while the pair sums stay positive
    pairs = acf[: len(acf) // 2 * 2].reshape(-1, 2).sum(axis=1)
    stop = np.flatnonzero(pairs <= 0)
    m = int(stop[0]) if stop.size else len(pairs)
    return float(max(1.0, -1.0 + 2.0 * pairs[:m].sum()))


#: leading principal components whose correlation times are measured
COMPONENTS = 5
#: ... among those holding at least this share of the variance
MIN_SHARE = 0.02


def stretches(z: np.ndarray) -> float:
    """Length of the (standardised) history in correlation times of its slowest leading principal component."""
    z = np.asarray(z, dtype=np.float64)
    z = z[:, z.std(axis=0) > 0]
    if z.shape[1] == 0 or len(z) < 4:
        return float(len(z))
    z = z - z.mean(axis=0)
    _, sv, vt = np.linalg.svd(z[:: max(1, len(z) // 20000)], full_matrices=False)
    share = sv * sv / float(np.sum(sv * sv))
    keep = [k for k in range(min(COMPONENTS, len(sv))) if share[k] >= MIN_SHARE] or [0]
    return float(len(z) / max(correlation_time(z @ vt[k]) for k in keep))


def residual_wander(shift: np.ndarray) -> float:
    """Correlation time, in samples, of the typical sensor's smoothed signed residual (median over sensors).

    When the residuals wander slowly, the calibration data hold few independent stretches of their wander
    and new data will reach offsets the threshold was never set on: the simulator's assets at 30,000 rows
    span 100+ correlation times of their inputs' main variation, but only ~16 of their residuals' (each
    sensor drifts on its own, periods up to 30,000 samples), and raised 10-18x the promised false alarms.
    The median, not the slowest sensor: one quantised or nearly constant sensor's sticky residual would
    call a stationary process uniform (one such sensor: 3,000 samples, the median 67).
    """
    s = np.asarray(shift, dtype=np.float64)
    taus = [correlation_time(s[:, j]) for j in range(s.shape[1]) if np.ptp(s[:, j]) > 0] if s.ndim == 2 else []
    return float(np.median(taus)) if taus else 1.0
