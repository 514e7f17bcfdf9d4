"""Fitting the denoising autoencoder: corruption, early stopping, budgets, determinism, progress.

Early stopping watches a held-out contiguous tail (not a random split: plant
data is autocorrelated and a random split leaks the future into validation).

Training costs the same on 10^4 or 10^6 rows: an epoch is at most
``max_steps`` batches of at most ``max_batch`` windows, drawn from a running
shuffle of all the training windows (a long history is not walked in full
every epoch, it is sampled), and windows are gathered per batch from the
rows (:class:`~monitor.detector.windows.WindowSet`), never all built at once.
The validation loss is taken over at most ``max_val_windows`` windows spread
over the tail. Short histories (up to ``max_steps`` x 64 windows) train
exactly as before these bounds existed. A wall-clock budget (``Budget``) and
the epoch limit end training early; the result says which one stopped it.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import logs
from ..errors import InputError
from .model import DAEConfig, DenoisingAE
from .windows import WindowSet

log = logs.get("training")

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` is the GPU when torch sees one, else the CPU; ``cuda`` without a GPU is a clear error."""
    if name not in DEVICES:
        raise InputError(f"--device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise InputError(
            f"--device cuda: torch {torch.__version__} ({build}) sees no CUDA GPU; "
            "use --device cpu, or --device auto to take a GPU only when there is one"
        )
    return torch.device("cuda")


class Budget:
    """Wall-clock seconds for a whole training run, shared out among its fits.

    Each fit, when it starts, gets an equal share of what is left for the fits
    still to come, so a fold that ends early leaves its time to the next.
    """

    def __init__(self, seconds: float | None, fits: int = 1) -> None:
        if seconds is not None and seconds <= 0:
            raise InputError(f"--max-seconds must be > 0, got {seconds:g}")
        self.seconds = seconds
        self.fits_left = max(1, fits)
        self.started = time.monotonic()
        self.exhausted = 0  # fits the budget stopped

    def deadline(self) -> float | None:
        """Monotonic time at which the fit starting now must stop (None: no budget)."""
        if self.seconds is None:
            return None
        now = time.monotonic()
        share = max(0.0, self.started + self.seconds - now) / self.fits_left
        self.fits_left = max(1, self.fits_left - 1)
        return now + share


@dataclass(frozen=True)
class FitOptions:
    """How to corrupt and how long to train."""

    max_epochs: int = 300
    batch_size: int = 64  # grows with the data so an epoch is at most max_steps batches ...
    max_batch: int = 512  # ... up to this; longer histories are sampled, not walked in full, each epoch
    max_steps: int = 40
    max_val_windows: int = 8192  # validation loss over at most this many windows spread over the tail
    lr: float = 2e-3
    weight_decay: float = 1e-5
    noise: float = 0.2  # Gaussian corruption, standard deviations
    mask: float = 0.1  # fraction of inputs zeroed
    sensor_mask: float = 0.0  # fraction of whole sensors (all window steps) zeroed
    n_sensors: int = 0  # needed for sensor_mask
    patience: int = 30  # epochs without validation improvement
    val_fraction: float = 0.2  # contiguous tail held out for early stopping
    device: str = "cpu"  # auto | cpu | cuda (see resolve_device)
    budget: Budget | None = field(default=None, compare=False)  # wall-clock limit shared by the run's fits


#: why a fit ended
STOP_EARLY, STOP_EPOCHS, STOP_BUDGET = "early stopping", "epoch limit", "time budget"


@dataclass
class FitResult:
    model: DenoisingAE
    epochs: int  # epochs actually run
    best_epoch: int  # epoch of the kept weights (1-based)
    train_loss: float
    val_loss: float
    seconds: float
    stopped: str = STOP_EPOCHS  # STOP_EARLY, STOP_EPOCHS or STOP_BUDGET


ProgressFn = Callable[[int, int, float, float], None]


def _corrupt(x: torch.Tensor, opts: FitOptions, gen: torch.Generator) -> torch.Tensor:
    noisy = x + opts.noise * torch.randn(x.shape, generator=gen, device=x.device)
    if opts.mask > 0:
        keep = torch.rand(x.shape, generator=gen, device=x.device) >= opts.mask
        noisy = noisy * keep
    if opts.sensor_mask > 0 and opts.n_sensors:
        b = x.shape[0]
        keep_s = (torch.rand((b, 1, opts.n_sensors), generator=gen, device=x.device) >= opts.sensor_mask).float()
        noisy = (noisy.view(b, -1, opts.n_sensors) * keep_s).view(b, -1)
    return noisy


def batch_size(n: int, opts: FitOptions) -> int:
    """Long histories get larger batches, so an epoch costs the same on 500 or 500,000 rows."""
    return max(opts.batch_size, min(-(-n // opts.max_steps), opts.max_batch))


def steps_per_epoch(n: int, opts: FitOptions) -> int:
    """Batches per epoch: one pass over a short history, ``max_steps`` batches of a long one."""
    return min(-(-n // batch_size(n, opts)), opts.max_steps)


class _Windows:
    """A window set's rows and end rows as tensors on the training device; batches gathered there."""

    def __init__(self, ws: WindowSet, device: torch.device) -> None:
        self.z = torch.from_numpy(np.ascontiguousarray(ws.z, dtype=np.float32)).to(device)
        self.ends = torch.from_numpy(ws.ends).to(device)
        self.offsets = torch.from_numpy(ws.offsets()).to(device)
        self.width = ws.width

    def __len__(self) -> int:
        return len(self.ends)

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        rows = self.ends[idx.to(self.ends.device)][:, None] + self.offsets
        return self.z[rows].reshape(len(rows), self.width)

    def all(self) -> torch.Tensor:
        return self.batch(torch.arange(len(self.ends)))


class _Shuffle:
    """Batches from a running shuffle: a new permutation each time the last one is used up."""

    def __init__(self, n: int, size: int, gen: torch.Generator) -> None:
        self.n, self.size, self.gen = n, size, gen
        self.order = torch.zeros(0, dtype=torch.int64)
        self.pos = 0

    def next(self) -> torch.Tensor:
        if self.pos >= len(self.order):
            self.order = torch.randperm(self.n, generator=self.gen)
            self.pos = 0
        idx = self.order[self.pos : self.pos + self.size]
        self.pos += self.size
        return idx


def _epoch(
    model: DenoisingAE,
    opt: torch.optim.Optimizer,
    data: _Windows,
    shuffle: _Shuffle,
    steps: int,
    opts: FitOptions,
    gen: torch.Generator,
) -> tuple[float, int]:
    """One epoch of ``steps`` batches; the mean loss per window and the windows drawn."""
    model.train()
    total = 0.0
    seen = 0
    for _ in range(steps):
        batch = data.batch(shuffle.next())
        loss = torch.mean((model(_corrupt(batch, opts, gen)) - batch) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(batch)
        seen += len(batch)
    return total / seen, seen


def _evaluate(model: DenoisingAE, x: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float(torch.mean((model(x) - x) ** 2))


def _horizon(
    epoch: int,
    max_epochs: int,
    best_epoch: int,
    fixed_epochs: int | None,
    opts: FitOptions,
    started: float,
    deadline: float | None,
) -> int:
    """The last epoch as things stand, for the progress bar's ETA.

    Early stopping ends a fit ``patience`` epochs after its best one unless the
    validation loss improves again, and a time budget ends it when its share
    is spent; either comes long before ``max_epochs`` on most histories.
    """
    last = max_epochs if fixed_epochs is not None else min(max_epochs, best_epoch + opts.patience)
    if deadline is not None:
        per_epoch = (time.perf_counter() - started) / epoch
        left = max(0.0, deadline - time.monotonic())
        last = min(last, epoch + int(left / per_epoch) + 1)
    return max(epoch, last)


def fit(
    windows: np.ndarray | WindowSet,
    cfg: DAEConfig,
    opts: FitOptions,
    seed: int,
    *,
    fixed_epochs: int | None = None,
    progress: ProgressFn | None = None,
) -> FitResult:
    """Train on standardised windows: a :class:`WindowSet`, or an (n, window*d) array of them.

    With ``fixed_epochs`` every window is used for exactly that many epochs
    (the deployed model after calibration); otherwise the tail is held out and
    the best validation epoch is kept. The model comes back on the CPU.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    device = resolve_device(opts.device)
    noise_gen = gen if device.type == "cpu" else torch.Generator(device).manual_seed(seed)
    model = DenoisingAE(cfg).to(device)  # initialised on the CPU: the same weights on every device
    ws = windows if isinstance(windows, WindowSet) else WindowSet.of_windows(windows)
    if fixed_epochs is None:
        n_val = max(1, round(len(ws) * opts.val_fraction))
        if len(ws) - n_val < 2:
            raise ValueError(f"too few windows ({len(ws)}) to hold out a validation tail")
        train_ws, val_ws = ws.split_tail(n_val)
        max_epochs = opts.max_epochs
    else:
        train_ws, val_ws = ws, ws
        max_epochs = fixed_epochs
    train_x = _Windows(train_ws, device)
    val_x = _Windows(val_ws.spread(opts.max_val_windows), device).all()
    steps = steps_per_epoch(len(train_x), opts)
    shuffle = _Shuffle(len(train_x), batch_size(len(train_x), opts), gen)
    opt = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    best = (math.inf, 0, {k: v.clone() for k, v in model.state_dict().items()})
    deadline = opts.budget.deadline() if opts.budget is not None else None
    started = time.perf_counter()
    train_loss = val_loss = math.nan
    epoch = seen = 0
    stopped = STOP_EPOCHS
    for epoch in range(1, max_epochs + 1):
        train_loss, drawn = _epoch(model, opt, train_x, shuffle, steps, opts, noise_gen)
        seen += drawn
        val_loss = _evaluate(model, val_x)
        losses = (train_loss, val_loss)
        if fixed_epochs is None:
            if val_loss < best[0] - 1e-6:
                best = (val_loss, epoch, {k: v.clone() for k, v in model.state_dict().items()})
            elif epoch - best[1] >= opts.patience:
                stopped = STOP_EARLY
        if progress:
            progress(epoch, _horizon(epoch, max_epochs, best[1], fixed_epochs, opts, started, deadline), *losses)
        if stopped == STOP_EARLY:
            break
        if deadline is not None and epoch < max_epochs and time.monotonic() >= deadline:
            stopped = STOP_BUDGET
            break
    if fixed_epochs is None:
        model.load_state_dict(best[2])
        best_epoch, val_loss = best[1], best[0]
    else:
        best_epoch = epoch
    if stopped == STOP_BUDGET:
        assert opts.budget is not None
        opts.budget.exhausted += 1
        log.warning("training_budget_reached", epochs=epoch, max_epochs=max_epochs, best_epoch=best_epoch)
    model.to("cpu").eval()
    seconds = time.perf_counter() - started
    log.debug(
        "fit_done",
        epochs=epoch,
        best_epoch=best_epoch,
        stopped=stopped,
        windows=len(ws),
        windows_drawn=seen,
        batch=shuffle.size,
        device=device.type,
        seconds=round(seconds, 2),
    )
    return FitResult(model, epoch, best_epoch, train_loss, val_loss, seconds, stopped)


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
        """``total``: the epoch the fit expects to end at now (early stopping and the budget move it)."""
        self.total = total
        if self.bar is not None:
            if self.bar.total != total:
                self.bar.total = total  # the ETA follows early stopping's horizon, not max_epochs
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", val=f"{val:.4f}")
        elif time.monotonic() - self.last_log > 5.0:
            self.last_log = time.monotonic()
            log.info(
                "training_progress",
                stage=self.desc,
                epoch=epoch,
                expected_epochs=total,
                loss=round(loss, 5),
                val_loss=round(val, 5),
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
