"""The denoising autoencoder and the scaler it needs, as plain data plus a small module.

The config and scaler travel with the weights in the model folder, so a
folder rebuilds the detector alone. torch is imported only under
``monitor/detector/`` and ``simulator/gan/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class DAEConfig:
    """Shape of the autoencoder over a causal window of ``window`` samples x ``n_sensors``."""

    n_sensors: int
    window: int = 10
    hidden: int = 128
    latent: int = 24
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.n_sensors < 1:
            raise ValueError(f"n_sensors must be >= 1, got {self.n_sensors}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if self.latent < 1 or self.hidden < self.latent:
            raise ValueError(f"need 1 <= latent <= hidden, got latent={self.latent} hidden={self.hidden}")

    @property
    def n_inputs(self) -> int:
        return self.n_sensors * self.window

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


class DenoisingAE(nn.Module):
    """MLP encoder/decoder: (batch, window*sensors) -> same shape, reconstructing the clean window."""

    def __init__(self, cfg: DAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n = cfg.n_inputs
        self.encoder = nn.Sequential(
            nn.Linear(n, cfg.hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.latent),
        )
        self.decoder = nn.Sequential(
            nn.GELU(),
            nn.Linear(cfg.latent, cfg.hidden),
            nn.GELU(),
            nn.Linear(cfg.hidden, n),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 2 and x.shape[1] == self.cfg.n_inputs, (
            f"expected (batch, {self.cfg.n_inputs}) got {tuple(x.shape)}"
        )
        return self.decoder(self.encoder(x))


#: rows standardised at a time (10^6 rows x 52 sensors in one go took a 416 MB float64 temporary)
TRANSFORM_ROWS = 65536


@dataclass(frozen=True)
class Scaler:
    """Per-sensor standardisation; sensors constant in training are zeroed, not divided by."""

    mean: np.ndarray
    scale: np.ndarray
    constant: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @classmethod
    def fit(cls, x: np.ndarray) -> Scaler:
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        constant = std <= 1e-9 * np.maximum(np.abs(mean), 1.0)
        scale = np.where(constant, 1.0, std)
        return cls(mean.astype(np.float64), scale.astype(np.float64), constant)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Standardised float32 rows; a long history a block of rows at a time (no float64 copy of all of it)."""
        if len(x) <= TRANSFORM_ROWS:
            return self._transform(x)
        z = np.empty(x.shape, dtype=np.float32)
        for a in range(0, len(x), TRANSFORM_ROWS):
            z[a : a + TRANSFORM_ROWS] = self._transform(x[a : a + TRANSFORM_ROWS])
        return z

    def _transform(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.scale
        if self.constant.any():
            z[:, self.constant] = 0.0
        return z.astype(np.float32)


def single_thread() -> None:
    """One intra-op torch thread for the calling OS thread.

    These MLPs are small: a second thread costs more in synchronisation than
    it gains, badly so on a shared 2-core host. torch's thread count is per
    OS thread, so the daemon's worker calls this itself; a forward pass in a
    thread that did not spins up a thread team per call (~20 ms instead of ~50 us).
    """
    torch.set_num_threads(1)


ROWS_PER_THREAD = 128
MAX_THREADS = 4
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextmanager
def threads_for(rows: int) -> Iterator[None]:
    """More intra-op threads for one big forward pass of a caller in :func:`single_thread` mode.

    A backlog drains in batches of hundreds of rows, where a second thread
    halves the forward pass (1,024 rows of a 52-sensor model: 2.8 -> 1.4 us a
    row on 2 cores); paced load comes in batches of a few rows, where one
    thread is faster. Switching costs well under a microsecond. A caller that
    chose its own thread count (training) is left alone.
    """
    n = min(_CORES, rows // ROWS_PER_THREAD, MAX_THREADS)
    if n < 2 or torch.get_num_threads() != 1:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(1)
