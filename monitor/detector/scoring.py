"""From windows to a calibrated anomaly score and per-sensor contributions.

Two statistics on the autoencoder's residuals, both scaled per sensor by the
sensor's normal (out-of-fold) residual spread so one noisy sensor cannot drown
the rest:

* energy: smoothed mean squared residual over the window and the sensors. It
  sees faults that disturb many sensors or their correlations.
* shift: the smoothed *signed* residual of each sensor, worst sensor first. It
  sees a persistent offset on a single sensor (a sensor bias, a valve position
  moved by a controller), which averaging over all sensors would dilute.

The score is the larger of the two, each divided by its calibrated normal
level, so a score means the same on every asset. Per-sensor contributions
are kept for attribution (which sensors drive an alarm).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from .model import DenoisingAE, threads_for
from .smoothing import ewma
from .windows import stream_windows


@dataclass(frozen=True)
class Calibration:
    """Everything the score needs besides the weights; stored in the manifest."""

    resid_scale: np.ndarray  # (d,) normal RMS residual per sensor
    shift_scale: np.ndarray  # (d,) normal RMS of the smoothed signed residual
    energy_norm: float  # normal high quantile of the smoothed energy
    shift_norm: float  # normal high quantile of the worst scaled shift
    alpha: float  # EWMA smoothing factor of the score
    threshold: float  # calibrated threshold (see promise)
    target_rate: float  # expected share of normal samples in alarm
    reference: float  # 0.9 quantile of normal scores (rolling quantile)
    spot_level: float  # 0.98 quantile of normal scores (SPOT peaks level)
    spot_peaks: list[float] = field(default_factory=list)
    oof_rows: int = 0
    oof_exceed_rate: float = 0.0  # fraction of OOF samples in alarm at the threshold
    spot_risk: float = 0.0  # SPOT's risk reproducing the threshold on calibration data (0: target_rate)
    spot_rate: float = 0.0  # share of calibration scores above spot_level (0: from spot_peaks)
    promise: dict[str, Any] = field(default_factory=dict)  # what train promised (see promise.Promise)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["resid_scale"] = self.resid_scale.tolist()
        d["shift_scale"] = self.shift_scale.tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        d = dict(d)
        d["resid_scale"] = np.asarray(d["resid_scale"], dtype=np.float64)
        d["shift_scale"] = np.asarray(d["shift_scale"], dtype=np.float64)
        d["spot_peaks"] = [float(x) for x in d.get("spot_peaks", [])]
        return cls(**d)


def raw_components(
    model: DenoisingAE, windows: np.ndarray, n_sensors: int, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row, per-sensor mean squared and mean signed residual over the window (unscaled).

    ``valid`` (n,) says how many of each window's newest rows are real; the
    padded rows at the start of a stream are left out of the means, so the
    first rows of a stream are scored on what was really seen.
    """
    n = windows.shape[0]
    if n == 0:
        return np.zeros((0, n_sensors)), np.zeros((0, n_sensors))
    with torch.inference_mode():
        x = torch.from_numpy(windows)
        r = (x - _forward(model, x)).view(n, -1, n_sensors)
        if valid is None:
            energy = (r * r).mean(dim=1)
            shift = r.mean(dim=1)
        else:
            w = r.shape[1]
            v = torch.from_numpy(np.minimum(valid, w).astype(np.float32))
            keep = (torch.arange(w)[None, :] >= (w - v)[:, None]).to(r.dtype)[:, :, None]
            energy = (r * r * keep).sum(dim=1) / v[:, None]
            shift = (r * keep).sum(dim=1) / v[:, None]
    return energy.numpy().astype(np.float64), shift.numpy().astype(np.float64)


ROW_BUCKET = 64
ROW_CHUNK = 1024


def _forward(model: DenoisingAE, x: torch.Tensor) -> torch.Tensor:
    """The model on ``x`` in chunks of :data:`ROW_CHUNK` rows, each padded up to a multiple of :data:`ROW_BUCKET`.

    The CPU kernels cache a plan per input shape (oneDNN keeps up to 1024);
    the daemon's batches come in every size up to its ``batch_max_size``, and
    a cache entry per size grew the monitor by ~450 MB. Rows are scored
    independently, so padding and chunking change no result; they bound the
    shapes to 16 whatever the batch size.
    """
    n = x.shape[0]
    if n > ROW_CHUNK:
        return torch.cat([_forward(model, x[i : i + ROW_CHUNK]) for i in range(0, n, ROW_CHUNK)])
    pad = -n % ROW_BUCKET
    with threads_for(n):
        if pad == 0:
            return model(x)
        return model(torch.cat([x, x.new_zeros((pad, x.shape[1]))]))[:n]


@dataclass
class Smoothed:
    energy: np.ndarray  # (n, d) smoothed scaled squared residual
    shift: np.ndarray  # (n, d) smoothed scaled signed residual
    last_energy: np.ndarray  # (k, d) each stream's state after its rows
    last_shift: np.ndarray


def smooth(
    energy: np.ndarray,
    shift: np.ndarray,
    resid_scale: np.ndarray,
    alpha: float,
    prev_energy: np.ndarray,
    prev_shift: np.ndarray,
    sizes: Sequence[int],
) -> Smoothed:
    """Scale by the normal residual spread and smooth each stream causally.

    ``sizes`` rows of each stream lie end to end; ``prev_*`` (k, d) are each
    stream's smoothed state before them (see :func:`initial_state`).
    """
    e = energy / (resid_scale * resid_scale)
    s = shift / resid_scale
    se, le = ewma(e, alpha, prev_energy, sizes)
    ss, ls = ewma(s, alpha, prev_shift, sizes)
    return Smoothed(se, ss, le, ls)


#: the score saturates at this multiple of the calibrated threshold (see :func:`saturate`)
SATURATION = 100.0


def saturate(energy: np.ndarray, shift: np.ndarray, calib: Calibration) -> tuple[np.ndarray, np.ndarray]:
    """Per-row residual components clipped (in place) so no row can push the score past
    :data:`SATURATION` x the threshold.

    An alarm must end once the process is back to normal, within a time that
    does not depend on how large the fault was. The smoothed score forgets at
    a rate of ``1 - alpha`` per sample, so a score of 1e12 (a sensor reading
    1e6 standard deviations off) would keep the alarm for 200 samples after
    the fault, one of 100 x the threshold for ``ln(100 / deadband) / -ln(1 - alpha)``
    (37 at the default alpha). Scores that far above the threshold raise the
    same alarm, so nothing is lost by the clip.
    """
    cap = SATURATION * calib.threshold
    scale2 = calib.resid_scale * calib.resid_scale
    np.minimum(energy, cap * calib.energy_norm * scale2, out=energy)
    limit = cap * calib.shift_norm * calib.shift_scale * calib.resid_scale
    np.clip(shift, -limit, limit, out=shift)
    return energy, shift


def clear_within(calib: Calibration, window: int, off_delay: int, deadband: float) -> int:
    """Samples after the last abnormal row by which an alarm has cleared, if the rows after it are normal:
    the window still holding abnormal rows, the smoothed score falling from saturation to the clear level,
    then the off-delay. Normal rows are taken to score below half the threshold."""
    decay = math.log(SATURATION / (deadband - 0.5)) / -math.log(1.0 - calib.alpha)
    return int(window - 1 + math.ceil(decay) + off_delay)


def initial_state(n_sensors: int) -> tuple[np.ndarray, np.ndarray]:
    """A new stream starts from the normal expectation (scaled energy 1, shift 0), not from its first row:
    one noisy first sample must not look like a fault."""
    return np.ones(n_sensors), np.zeros(n_sensors)


def combine(
    sm: Smoothed, shift_scale: np.ndarray, energy_norm: float, shift_norm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Score (n,) and per-sensor contributions (n, d) on one scale (1 = normal high level)."""
    d = sm.energy.shape[1]
    energy_part = sm.energy / (d * energy_norm)
    shift_part = np.abs(sm.shift) / (shift_scale * shift_norm)
    score = np.maximum(energy_part.sum(axis=1), shift_part.max(axis=1))
    contrib = np.maximum(energy_part, shift_part)
    return score, contrib


def top_k(contrib: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest contributions per row, largest first."""
    k = min(k, contrib.shape[1])
    if k <= 0:
        return np.zeros((contrib.shape[0], 0), dtype=np.int64)
    part = np.argpartition(-contrib, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(contrib, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


#: rows per chunk when a long stretch of history is scored (bounds memory: ~35 MB of windows for 52 sensors x 10)
SCORE_CHUNK_ROWS = 16384


def stream_components(
    model: DenoisingAE, z: np.ndarray, start: int, stop: int, window: int, chunk: int = SCORE_CHUNK_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`raw_components` of rows ``start:stop`` of the stream ``z``, its earlier rows as their past.

    Windows are built ``chunk`` rows at a time, so scoring 10^6 rows of
    history holds one chunk's windows, not all of them (2 GB at 52 sensors
    and a window of 10). Rows score independently; a stretch of at most
    ``chunk`` rows is one call, exactly as before.
    """
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    for a in range(start, stop, chunk):
        b = min(a + chunk, stop)
        tail = z[max(0, a - window + 1) : a] if a > 0 else None
        w, seen, _ = stream_windows(z[a:b], [b - a], [tail], window, rows_before=[a])
        parts.append(raw_components(model, w, z.shape[1], seen if seen.min() < window else None))
    if not parts:
        return np.zeros((0, z.shape[1])), np.zeros((0, z.shape[1]))
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([e for e, _ in parts]), np.concatenate([s for _, s in parts])
