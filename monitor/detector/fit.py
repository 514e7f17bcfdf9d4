"""Fitting the denoising autoencoder: corruption, early stopping, determinism, progress.

Early stopping watches a held-out contiguous tail (not a random split: plant
data is autocorrelated and a random split leaks the future into validation).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .. import logs
from .model import DAEConfig, DenoisingAE

log = logs.get("training")


@dataclass(frozen=True)
class FitOptions:
    """How to corrupt and how long to train."""

    max_epochs: int = 300
    batch_size: int = 64  # grows with the data so an epoch is at most max_steps batches
    max_steps: int = 40
    lr: float = 2e-3
    weight_decay: float = 1e-5
    noise: float = 0.2  # Gaussian corruption, standard deviations
    mask: float = 0.1  # fraction of inputs zeroed
    sensor_mask: float = 0.0  # fraction of whole sensors (all window steps) zeroed
    n_sensors: int = 0  # needed for sensor_mask
    patience: int = 30  # epochs without validation improvement
    val_fraction: float = 0.2  # contiguous tail held out for early stopping


@dataclass
class FitResult:
    model: DenoisingAE
    epochs: int  # epochs actually run
    best_epoch: int  # epoch of the kept weights (1-based)
    train_loss: float
    val_loss: float
    seconds: float


ProgressFn = Callable[[int, int, float, float], None]


def _corrupt(x: torch.Tensor, opts: FitOptions, gen: torch.Generator) -> torch.Tensor:
    noisy = x + opts.noise * torch.randn(x.shape, generator=gen)
    if opts.mask > 0:
        keep = torch.rand(x.shape, generator=gen) >= opts.mask
        noisy = noisy * keep
    if opts.sensor_mask > 0 and opts.n_sensors:
        b = x.shape[0]
        keep_s = (torch.rand((b, 1, opts.n_sensors), generator=gen) >= opts.sensor_mask).float()
        noisy = (noisy.view(b, -1, opts.n_sensors) * keep_s).view(b, -1)
    return noisy


def batch_size(n: int, opts: FitOptions) -> int:
    """Long histories get larger batches, so an epoch costs the same on 500 or 500,000 rows."""
    return max(opts.batch_size, -(-n // opts.max_steps))


def _epoch(
    model: DenoisingAE, opt: torch.optim.Optimizer, x: torch.Tensor, opts: FitOptions, gen: torch.Generator
) -> float:
    model.train()
    order = torch.randperm(len(x), generator=gen)
    total = 0.0
    size = batch_size(len(x), opts)
    for start in range(0, len(x), size):
        batch = x[order[start : start + size]]
        loss = torch.mean((model(_corrupt(batch, opts, gen)) - batch) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(batch)
    return total / len(x)


def _evaluate(model: DenoisingAE, x: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float(torch.mean((model(x) - x) ** 2))


def fit(
    windows: np.ndarray,
    cfg: DAEConfig,
    opts: FitOptions,
    seed: int,
    *,
    fixed_epochs: int | None = None,
    progress: ProgressFn | None = None,
) -> FitResult:
    """Train on (n, window*d) standardised windows.

    With ``fixed_epochs`` every window is used for exactly that many epochs
    (the deployed model after calibration); otherwise the tail is held out and
    the best validation epoch is kept.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = DenoisingAE(cfg)
    x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
    if fixed_epochs is None:
        n_val = max(1, round(len(x) * opts.val_fraction))
        if len(x) - n_val < 2:
            raise ValueError(f"too few windows ({len(x)}) to hold out a validation tail")
        train_x, val_x = x[:-n_val], x[-n_val:]
        max_epochs = opts.max_epochs
    else:
        train_x, val_x = x, x
        max_epochs = fixed_epochs
    opt = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    best = (math.inf, 0, {k: v.clone() for k, v in model.state_dict().items()})
    started = time.perf_counter()
    train_loss = val_loss = math.nan
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        train_loss = _epoch(model, opt, train_x, opts, gen)
        val_loss = _evaluate(model, val_x)
        if progress:
            progress(epoch, max_epochs, train_loss, val_loss)
        if fixed_epochs is None:
            if val_loss < best[0] - 1e-6:
                best = (val_loss, epoch, {k: v.clone() for k, v in model.state_dict().items()})
            elif epoch - best[1] >= opts.patience:
                break
    if fixed_epochs is None:
        model.load_state_dict(best[2])
        best_epoch, val_loss = best[1], best[0]
    else:
        best_epoch = epoch
    model.eval()
    return FitResult(model, epoch, best_epoch, train_loss, val_loss, time.perf_counter() - started)


class Progress:
    """A tqdm bar on a terminal, one structured log line every few seconds otherwise."""

    def __init__(self, desc: str, total: int, enabled: bool | None = None) -> None:
        self.desc = desc
        self.tty = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        self.last_log = 0.0
        self.total = total
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="epoch", leave=False, dynamic_ncols=True)

    def stage(self, desc: str, total: int) -> None:
        self.desc, self.total = desc, total
        if self.bar is not None:
            self.bar.reset(total=total)
            self.bar.set_description(desc)

    def __call__(self, epoch: int, total: int, loss: float, val: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", val=f"{val:.4f}")
        elif time.monotonic() - self.last_log > 5.0:
            self.last_log = time.monotonic()
            log.info(
                "training_progress",
                stage=self.desc,
                epoch=epoch,
                max_epochs=total,
                loss=round(loss, 5),
                val_loss=round(val, 5),
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
