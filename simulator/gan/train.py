"""Training the conditional GAN on deviation windows: moment matching first, then adversarial.

1. **Warm-up** (the first ``warmup`` share of the epochs): the generator alone
   learns, by moment matching (:func:`_moment_loss`), each fault's level,
   spread, roughness and trend over time since onset, and how much they vary
   from window to window. Cheap, and it puts the generator where an adversary
   can teach it something. A time budget too short for the adversarial phase
   to pay off is spent on this phase alone (:class:`Plan`).
2. **Adversarial**: each step the critic learns ``n_critic`` times to tell real
   windows from generated ones, then the generator learns to fool it while
   keeping the moments (TimeGAN-style, Yoon et al. 2019). The critic is
   spectrally normalised with the hinge loss by default (``loss="hinge"``:
   no double backward pass, three times cheaper per step than WGAN-GP's
   gradient penalty, so more steps fit the CPU budget); ``loss="wgan-gp"``
   is there too. A few recorded runs are easy to learn by heart, so the
   critic sees windows with instance noise and the onset offset blurred.

Windows are drawn class-balanced, a quarter of them at the onset so the
transients are learnt. Samples come from an exponential moving average of
the generator's weights; learning rates decay on a cosine. One *epoch* is as
many steps as it takes to draw every training window (stride
:data:`EPOCH_STRIDE`) once.
"""

from __future__ import annotations

import copy
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from monitor import logs
from monitor.errors import InputError

from .artefact import GAN
from .data import Deviations, FaultData, Normaliser, deviations, hold_periods, normal_psd, resolutions
from .model import Critic, GANConfig, Generator, squash, unsquash

log = logs.get("gan")

EPOCH_STRIDE = 8
DEFAULT_EPOCHS = 600


@dataclass(frozen=True)
class TrainOptions:
    """How long and how hard to train. The 600 epochs train the TEP GAN in about 9 minutes on 2 idle cores;
    ``max_seconds`` (the CLI's ``--max-minutes``, 3 by default) shortens them to fit a time budget.

    In 3 minutes on one core the TEP GAN gets ~215 epochs, too few for the
    adversarial phase to pay off (with it, 130 epochs gave discriminative
    accuracies 0.84-0.86 at seeds 0-2), so a plan shortened below
    ``min_adversarial_epochs`` of it is moment matching alone. Matching each
    statistic's spread over a group's windows too (``moment_spread``), not only
    its mean, is what brings that within the target: without it the generated
    windows are too alike (their spread's spread 0.3-0.4 of the real one's),
    0.766 at seed 0; with it 0.730/0.719/0.707 at seeds 0/1/2.
    """

    epochs: int = DEFAULT_EPOCHS
    warmup: float = 0.4  # share of the epochs spent on moment matching alone
    batch: int = 128
    n_critic: int = 1
    lr_generator: float = 1e-3
    lr_critic: float = 4e-4
    loss: str = "hinge"  # or "wgan-gp": a gradient penalty instead of spectral normalisation
    gradient_penalty: float = 10.0  # weight of the penalty, wgan-gp only
    instance_noise: float = 0.3  # std of noise added to every window the critic sees (against memorising)
    critic_jitter: int = 32  # the critic is told the onset offset only to within +- this many samples
    conditional_critic: bool = False  # True: the critic also judges class and time since onset (projection)
    moments: float = 50.0  # weight of the moment matching term of the generator loss
    moment_group: int = 16  # windows per group whose statistics are matched on average
    moment_spread: float = 1.0  # weight of matching each statistic's spread over a group's windows too
    min_adversarial_epochs: int = 300  # a budget-shortened plan with fewer adversarial epochs has none
    ema: float = 0.995
    onset_fraction: float = 0.25  # share of windows that start within one window of the onset
    seed: int = 0
    window: int = 64
    channels: int = 64
    critic_channels: int = 48
    checkpoint_every: int = 50  # epochs; 0 = never
    max_seconds: float | None = None  # time budget: the schedule is shortened to end within it (None = none)
    classes: tuple[str, ...] | None = None  # train on these classes only (default: every class found)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch", "n_critic", "window"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.onset_fraction <= 1 or not 0 <= self.ema < 1 or not 0 <= self.warmup <= 1:
            raise InputError("onset_fraction and warmup must be in [0, 1] and ema in [0, 1)")
        if self.loss not in ("hinge", "wgan-gp"):
            raise InputError(f"loss must be hinge or wgan-gp, got {self.loss!r}")


#: An adversarial step's cost in warm-up steps, assumed until one has been timed (measured 2.0-2.3 on 2 cores).
ADVERSARIAL_COST = 2.2


class Plan:
    """How many steps training takes: the epochs asked for, or fewer when they would not end within the budget.

    Warm-up share and learning-rate decay are laid over the planned steps, so
    a shortened run still warms up, learns adversarially and cools down, only
    in fewer steps (a run cut off in the middle of its schedule would stop
    with its learning rates high and, in a long warm-up, without ever having
    met the critic). A plan shortened so far that fewer than
    ``min_adversarial`` epochs of adversarial learning would remain is spent
    on moment matching alone: the adversarial phase first makes windows
    easier to tell from real ones and only pays off over hundreds of epochs
    (see :class:`TrainOptions`). After every epoch the plan is checked against the
    measured cost of each kind of step; a run that fits is never changed and
    so stays reproducible for its seed.
    """

    def __init__(
        self, steps: int, per_epoch: int, warmup_share: float, budget: float | None, min_adversarial: int = 0
    ) -> None:
        self.per_epoch, self.share, self.budget = per_epoch, warmup_share, budget
        self.min_adversarial = min_adversarial
        self.asked = self.steps = steps
        self.warmup = self._warmup(steps)
        self.shortened = False
        self._cost: dict[bool, list[float]] = {True: [], False: []}

    @property
    def epochs(self) -> int:
        return self.steps // self.per_epoch

    def _warmup(self, steps: int) -> int:
        warmup = round(self.share * steps / self.per_epoch) * self.per_epoch
        if steps < self.asked and steps - warmup < self.min_adversarial * self.per_epoch:
            return steps  # too short an adversarial phase only hurts: moment matching throughout
        return warmup

    @property
    def adversarial(self) -> bool:
        """Whether the plan still holds an adversarial phase."""
        return self.warmup < self.steps

    def record(self, warm: bool, seconds: float) -> None:
        """One step of the given kind took ``seconds``."""
        self._cost[warm].append(seconds)

    def _median(self, warm: bool) -> float | None:
        times = self._cost[warm][1:][-50:] or self._cost[warm][-1:]  # the first, slower step left out
        return float(np.median(times)) if times else None

    def step_cost(self, warm: bool) -> float | None:
        """Median seconds per step of the kind over the last 50 (a burst of load elsewhere moves it little)."""
        own = self._median(warm)
        if own is not None:
            return own
        other = self._median(not warm)
        if other is None:
            return None
        return other / ADVERSARIAL_COST if warm else other * ADVERSARIAL_COST

    def cost(self, steps: int, done: int) -> float:
        """Seconds that the steps after ``done`` of a plan of ``steps`` steps would take."""
        warmup = max(done, self._warmup(steps)) if done < self.warmup else self.warmup
        warm_left = max(0, warmup - done)
        adversarial_left = steps - max(warmup, done)
        return warm_left * (self.step_cost(True) or 0.0) + adversarial_left * (self.step_cost(False) or 0.0)

    def fit(self, done: int, elapsed: float) -> bool:
        """Re-plan at an epoch's end: the most steps (up to those asked) that end within the budget.

        True the first time the plan is shortened. A plan shortened under a
        burst of load grows back when the steps get cheaper again.
        """
        if self.budget is None or self.step_cost(True) is None:
            return False
        left = self.budget - elapsed
        lo, hi = done // self.per_epoch, self.asked // self.per_epoch  # epochs; the cost grows with them
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if self.cost(mid * self.per_epoch, done) <= left else (lo, mid - 1)
        steps = lo * self.per_epoch
        if steps == self.steps or (
            steps > self.steps and self.cost(self.steps, done) <= left and steps < 1.02 * self.steps
        ):
            return False  # a plan that fits grows only by more than rounding (no back and forth by an epoch)
        if done < self.warmup:
            self.warmup = max(done, self._warmup(steps))
        self.steps = steps
        first = steps < self.asked and not self.shortened
        self.shortened = self.shortened or steps < self.asked
        return first


@dataclass
class TrainResult:
    gan: GAN
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    epochs: int = 0  # epochs trained: fewer than asked when the time budget shortened the schedule
    skipped_updates: int = 0  # optimiser updates (critic or generator) left out for a non-finite gradient


class WindowSampler:
    """Class-balanced random windows of the squashed deviations, with their onset offsets."""

    def __init__(
        self, dev: Deviations, window: int, squash_s: float, onset_fraction: float, gen: torch.Generator
    ) -> None:
        self.window, self.onset_fraction, self.gen = window, onset_fraction, gen
        self.series = [squash(torch.from_numpy(s.T.astype(np.float32)), squash_s) for s in dev.series]
        self.by_class = [np.flatnonzero(dev.class_index == c) for c in range(len(dev.classes))]
        self.present = np.array([c for c, idx in enumerate(self.by_class) if idx.size], dtype=np.int64)

    def n_windows(self, stride: int) -> int:
        return sum((s.shape[1] - self.window) // stride + 1 for s in self.series)

    def labels(self, batch: int, group: int = 1) -> tuple[torch.Tensor, torch.Tensor, list[int], torch.Tensor]:
        """Class, onset offset, episode and group of ``batch`` draws.

        Draws come in groups of ``group`` windows of one episode whose offsets
        lie within half a window of each other, so statistics averaged over a
        group describe one stretch of one fault (see :func:`_moment_loss`).
        """
        n = -(-batch // group)
        pick = torch.randint(len(self.present), (n,), generator=self.gen).numpy()
        labels, episodes, t0, groups = [], [], [], []
        for k, c in enumerate(self.present[pick]):
            idx = self.by_class[c]
            e = int(idx[torch.randint(len(idx), (1,), generator=self.gen).item()])
            room = self.series[e].shape[1] - self.window
            near = float(torch.rand(1, generator=self.gen)) < self.onset_fraction
            hi = min(room, self.window) if near else room
            centre = int(torch.randint(hi + 1, (1,), generator=self.gen).item())
            spread = self.window // 2 if group > 1 else 0
            for jitter in torch.randint(-spread, spread + 1, (group,), generator=self.gen).tolist():
                labels.append(int(c))
                episodes.append(e)
                t0.append(min(max(centre + jitter, 0), room))
                groups.append(k)
        return (
            torch.tensor(labels[:batch]),
            torch.tensor(t0[:batch], dtype=torch.float32),
            episodes[:batch],
            torch.tensor(groups[:batch]),
        )

    def sample(self, batch: int, group: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, d, window) real squashed windows, their classes, onset offsets and groups."""
        labels, t0, episodes, groups = self.labels(batch, group)
        y = torch.stack([self.series[e][:, int(t) : int(t) + self.window] for e, t in zip(episodes, t0.tolist())])
        return y, labels, t0, groups


def _gradient_penalty(
    critic: Critic, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor, t0: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    a = torch.rand((real.shape[0], 1, 1), generator=gen)
    mix = (a * real + (1 - a) * fake).requires_grad_(True)
    out = critic(mix, labels, t0)
    (grad,) = torch.autograd.grad(out.sum(), mix, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


#: (epoch, epochs, running statistics, phase: "warm-up" or "adversarial")
ProgressFn = Callable[[int, int, dict[str, float], str], None]
CheckpointFn = Callable[[GAN, int, int], None]


def prepare(data: FaultData, opts: TrainOptions) -> tuple[Normaliser, np.ndarray, Deviations]:
    """Normaliser and noise spectrum from the normal rows, deviation series of the usable episodes."""
    normaliser = Normaliser.fit(data.normal)
    psd = normal_psd(normaliser.deviation(data.normal))
    classes = list(opts.classes) if opts.classes else data.classes
    missing = [c for c in classes if c not in data.classes]
    if missing:
        raise InputError(f"{data.source}: no episodes of class {missing[0]!r}; classes: {', '.join(data.classes)}")
    dev = deviations(data, normaliser, classes, opts.window)
    short = [c for i, c in enumerate(classes) if not (dev.class_index == i).any()]
    if short:
        longest = max(len(e) for e in data.episodes if e.label == short[0])
        raise InputError(
            f"{data.source}: every episode of class {short[0]!r} is shorter than the window "
            f"({longest} < {opts.window} rows); use a smaller --window (a multiple of 8)"
        )
    dropped = len([e for e in data.episodes if e.label in classes]) - len(dev.series)
    if dropped:
        log.warning("short_episodes_skipped", episodes=dropped, window=opts.window)
    return normaliser, psd, dev


def train(
    data: FaultData, opts: TrainOptions, *, progress: ProgressFn | None = None, checkpoint: CheckpointFn | None = None
) -> TrainResult:
    """Fit a GAN to the episodes of ``data``; deterministic for a seed on one thread."""
    torch.manual_seed(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed)
    normaliser, psd, dev = prepare(data, opts)
    longest = max(len(s) for s in dev.series)
    res, lattice = resolutions(data.normal, normaliser)
    cfg = GANConfig(
        n_sensors=len(data.sensors),
        n_classes=len(dev.classes),
        window=opts.window,
        channels=opts.channels,
        critic_channels=opts.critic_channels,
        time_scale=float(longest),
        hold=tuple(int(p) for p in hold_periods(data.normal)),
        resolution=tuple(res.tolist()),
        lattice=tuple(lattice.tolist()),
        spectral_norm=opts.loss == "hinge",
        conditional_critic=opts.conditional_critic,
    )
    generator, critic = Generator(cfg), Critic(cfg)
    ema = copy.deepcopy(generator)
    opt_g = torch.optim.Adam(generator.parameters(), lr=opts.lr_generator, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(critic.parameters(), lr=opts.lr_critic, betas=(0.0, 0.9))
    sampler = WindowSampler(dev, opts.window, cfg.squash, opts.onset_fraction, gen)
    per_epoch = max(1, math.ceil(sampler.n_windows(EPOCH_STRIDE) / opts.batch))
    steps = opts.epochs * per_epoch
    log.info(
        "gan_training_started",
        source=data.source,
        classes=dev.classes,
        episodes=len(dev.series),
        sensors=cfg.n_sensors,
        window=cfg.window,
        epochs=opts.epochs,
        steps=steps,
        steps_per_epoch=per_epoch,
    )
    started = time.perf_counter()
    history: list[dict[str, float]] = []
    running: dict[str, float] = {}
    plan = Plan(steps, per_epoch, opts.warmup, opts.max_seconds, opts.min_adversarial_epochs)
    decay = lambda step: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(step, plan.steps) / plan.steps))  # noqa: E731
    schedules = [torch.optim.lr_scheduler.LambdaLR(o, decay) for o in (opt_g, opt_d)]
    step = skipped = 0
    while step < plan.steps:
        step += 1
        warm = step <= plan.warmup
        tick = time.perf_counter()
        if warm:
            stats = _warmup_step(generator, opt_g, sampler, opts, gen)
        else:
            stats = _step(generator, critic, opt_g, opt_d, sampler, opts, gen)
        for schedule in schedules[:1] if warm else schedules:  # the critic rests in warm-up
            schedule.step()
        with torch.no_grad():
            for pe, pg in zip(ema.parameters(), generator.parameters()):
                pe.lerp_(pg, 1 - opts.ema)
        plan.record(warm, time.perf_counter() - tick)
        left_out = int(stats.pop("skipped"))  # a step updates the critic n_critic times, then the generator
        if left_out:
            skipped += left_out
            log.warning(
                "gan_update_skipped", step=step, updates=left_out, reason="a non-finite gradient", total=skipped
            )
        if step == plan.warmup + 1:
            running = {}  # the adversarial statistics start from their own first values, not warm-up zeros
        # a left-out update's losses may be NaN: the averages (the progress bar, the manifest's JSON) keep theirs
        running = {
            k: 0.9 * running.get(k, v) + 0.1 * v if math.isfinite(v) else running.get(k, 0.0) for k, v in stats.items()
        }
        if step % per_epoch == 0:
            epoch = step // per_epoch
            if plan.fit(step, time.perf_counter() - started):
                log.warning(
                    "gan_time_budget",
                    max_minutes=round((opts.max_seconds or 0) / 60, 2),
                    epochs=plan.epochs,
                    planned_epochs=opts.epochs,
                    adversarial=plan.adversarial,
                    note="the schedule is shortened to end within the time budget (--max-minutes)"
                    + ("" if plan.adversarial else "; too short to pay off adversarially: moment matching throughout"),
                )
            history.append({"epoch": epoch, **{k: round(v, 5) for k, v in running.items()}})
            if progress:
                progress(epoch, plan.epochs, running, "warm-up" if warm else "adversarial")
            if checkpoint and opts.checkpoint_every and epoch % opts.checkpoint_every == 0 and step < plan.steps:
                checkpoint(_gan(cfg, ema, generator, critic, data, dev, normaliser, psd), epoch, step)
    seconds = time.perf_counter() - started
    ema.eval()
    return TrainResult(
        _gan(cfg, ema, generator, critic, data, dev, normaliser, psd),
        plan.steps,
        seconds,
        history,
        plan.epochs,
        skipped,
    )


def _step(
    g: Generator,
    d: Critic,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    sampler: WindowSampler,
    opts: TrainOptions,
    gen: torch.Generator,
) -> dict[str, float]:
    w = opts.window
    skipped = 0
    for _ in range(opts.n_critic):
        real, labels, t0, _ = sampler.sample(opts.batch)
        with torch.no_grad():
            fake = g(labels, t0, w, g.noise(opts.batch, w, gen))
        real, fake = _blur(real, opts, gen), _blur(fake, opts, gen)
        d_real, d_fake = d(real, labels, _jitter(t0, opts, gen)), d(fake, labels, _jitter(t0, opts, gen))
        if opts.loss == "hinge":
            gp = torch.zeros(())
            loss_d = nn.functional.relu(1 - d_real).mean() + nn.functional.relu(1 + d_fake).mean()
        else:
            gp = _gradient_penalty(d, real, fake, labels, t0, gen)
            loss_d = d_fake.mean() - d_real.mean() + opts.gradient_penalty * gp + 1e-3 * (d_real**2).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        skipped += not _step_if_finite(opt_d)
    real, labels, t0, groups = sampler.sample(opts.batch, opts.moment_group)
    fake = g(labels, t0, w, g.noise(opts.batch, w, gen))
    adversarial = -d(_blur(fake, opts, gen), labels, _jitter(t0, opts, gen)).mean()
    moments = _moment_loss(real, fake, groups, g.cfg.squash, opts.moment_spread) if opts.moments else torch.zeros(())
    loss_g = adversarial + opts.moments * moments
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    skipped += not _step_if_finite(opt_g)
    return {
        "skipped": float(skipped),
        "wasserstein": (d_real.mean() - d_fake.mean()).item(),
        "gradient_penalty": gp.item(),
        "critic_loss": loss_d.item(),
        "generator_loss": adversarial.item(),
        "moments": moments.item(),
    }


def _step_if_finite(opt: torch.optim.Optimizer) -> bool:
    """Update only on finite gradients: one non-finite gradient would turn every weight into NaN for good
    (and the GAN written at the end with them); a skipped update is counted and logged instead.

    The total gradient norm is finite exactly when every gradient is (torch's fused norm: 55 us a check on
    the TEP generator's 94,081 weights, against 300 us for an isfinite per tensor)."""
    grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
    if grads and not bool(torch.isfinite(torch.nn.utils.get_total_norm(grads))):
        opt.zero_grad(set_to_none=True)
        return False
    opt.step()
    return True


def _blur(y: torch.Tensor, opts: TrainOptions, gen: torch.Generator) -> torch.Tensor:
    """Instance noise: with 21 recorded runs a critic can learn them by heart; noisy copies it cannot."""
    if not opts.instance_noise:
        return y
    return y + opts.instance_noise * torch.randn(y.shape, generator=gen)


def _jitter(t0: torch.Tensor, opts: TrainOptions, gen: torch.Generator) -> torch.Tensor:
    """Blur the onset offset for the critic: with one recorded run per class, the exact offset would
    name the one real window there is, and the generator would be pushed to copy it."""
    if not opts.critic_jitter:
        return t0
    j = torch.randint(-opts.critic_jitter, opts.critic_jitter + 1, t0.shape, generator=gen)
    return (t0 + j).clamp(min=0)


def _warmup_step(
    g: Generator, opt_g: torch.optim.Optimizer, sampler: WindowSampler, opts: TrainOptions, gen: torch.Generator
) -> dict[str, float]:
    """Moment matching alone: the generator learns each class's levels, spreads and noise cheaply."""
    real, labels, t0, groups = sampler.sample(opts.batch, opts.moment_group)
    fake = g(labels, t0, opts.window, g.noise(opts.batch, opts.window, gen))
    loss = _moment_loss(real, fake, groups, g.cfg.squash, opts.moment_spread)
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    skipped = not _step_if_finite(opt_g)
    return {
        "skipped": float(skipped),
        "wasserstein": 0.0,
        "gradient_penalty": 0.0,
        "critic_loss": 0.0,
        "generator_loss": 0.0,
        "moments": loss.item(),
    }


def _statistics(y: torch.Tensor, s: float) -> torch.Tensor:
    """(B, d, T) squashed windows -> (B, 4, d): level, log spread, log roughness and trend of each sensor.

    Spread and roughness are taken on the deviations themselves (not squashed)
    and logged, so a fault 100 standard deviations out must still have the
    right noise, without its level drowning every other sensor's statistics.
    """
    z = unsquash(y, s)
    n = y.shape[-1]
    t = torch.arange(n, dtype=y.dtype) - (n - 1) / 2
    trend = (y * t).sum(-1) / (t**2).sum() * n / 2
    rough = (z[..., 1:] - z[..., :-1]).abs().mean(-1)
    # = z.std(-1), 2-3x faster on CPU; the tiny floor keeps the gradient finite where a generated sensor is
    # flat over a window (sqrt'(0) is infinite): without it the full schedule's warm-up turned NaN at step 1739
    spread = ((z - z.mean(-1, keepdim=True)) ** 2).sum(-1).div(n - 1).add(1e-12).sqrt()
    return torch.stack([y.mean(-1), torch.log(spread + 0.02), torch.log(rough + 0.02), trend], 1)


def _moment_loss(
    real: torch.Tensor, fake: torch.Tensor, groups: torch.Tensor, s: float, spread: float = 0.0
) -> torch.Tensor:
    """Squared gap between real and generated window statistics, averaged per group of windows.

    A group is a few windows of one class close in time since onset: the
    generated ones must match the recorded fault there on average, while
    each generated window is free to vary as the process does. Gaps count
    as they are and in units of each statistic's spread over the batch, so a
    fault's large transient does not drown the noise level of a quiet sensor.
    With ``spread`` > 0 the statistics' standard deviations over each group's
    windows are matched too (weighted by ``spread``): matching means alone
    lets every generated window be the average one, which a classifier of
    window statistics tells apart from real windows at once.

    The moment term of TimeGAN-style training (Yoon et al., 2019): the critic
    teaches shape and correlation, this keeps each class's levels, spreads,
    noise and trends right, and alone fits them quickly in the warm-up.
    """
    onehot = nn.functional.one_hot(groups).float()  # (B, groups)
    count = onehot.sum(0).clamp(min=1)

    def per_group(st: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bc,bkd->ckd", onehot, st) / count[:, None, None]

    stats_real, stats_fake = _statistics(real, s), _statistics(fake, s)
    scale = stats_real.std(0).detach() + 0.05  # each statistic in units of its spread
    used = onehot.sum(0) > 0
    mean_real, mean_fake = per_group(stats_real), per_group(stats_fake)
    gap = (mean_real - mean_fake)[used]
    loss = (gap**2).mean() + ((gap / scale) ** 2).mean()
    if spread:
        sd_real = (per_group(stats_real**2) - mean_real**2).clamp(min=0).add(1e-4).sqrt()
        sd_fake = (per_group(stats_fake**2) - mean_fake**2).clamp(min=0).add(1e-4).sqrt()
        gap_sd = (sd_real - sd_fake)[used]
        loss = loss + spread * ((gap_sd**2).mean() + ((gap_sd / scale) ** 2).mean())
    return loss


def _gan(
    cfg: GANConfig,
    ema: Generator,
    raw: Generator,
    critic: Critic,
    data: FaultData,
    dev: Deviations,
    normaliser: Normaliser,
    psd: np.ndarray,
) -> GAN:
    return GAN(
        cfg,
        copy.deepcopy(ema).eval(),
        copy.deepcopy(critic).eval(),
        list(data.sensors),
        list(dev.classes),
        normaliser,
        psd,
        {},
        trained_generator=copy.deepcopy(raw).eval(),
    )


def training_record(data: FaultData, dev_classes: list[str], opts: TrainOptions, result: TrainResult) -> dict[str, Any]:
    """What the manifest says about how the GAN was made."""
    from monitor.detector import fingerprint

    counts = {c: len(data.of_class(c)) for c in dev_classes}
    values = np.concatenate([data.normal] + [e.values for e in data.episodes])
    return {
        "training": {
            "data": data.source,
            "layout": data.layout,
            "episodes": counts,
            "normal_rows": len(data.normal),
            "steps": result.steps,
            "epochs": result.epochs,
            "shortened_by_time_budget": result.epochs < opts.epochs,
            "skipped_updates": result.skipped_updates,
            "seconds": round(result.seconds, 1),
            "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(opts).items()},
            "final": result.history[-1] if result.history else {},
            "torch_version": torch.__version__,
            "episode_sources": [e.source for e in data.episodes if e.label in dev_classes],
        },
        "data_fingerprint": fingerprint(values, data.sensors),
    }


class Progress:
    """A tqdm bar on a terminal, one structured log line every few seconds otherwise."""

    def __init__(self, total: int, enabled: bool | None = None) -> None:
        self.tty = sys.stderr.isatty() if enabled is None else enabled
        self.last_log = 0.0
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="gan", unit="epoch", leave=False, dynamic_ncols=True)

    def __call__(self, epoch: int, total: int, stats: dict[str, float], phase: str = "adversarial") -> None:
        """One epoch done: the bar shows what this phase learns (warm-up: moments only; then the critic's
        Wasserstein estimate and the generator's adversarial loss too)."""
        shown = shown_stats(stats, phase)
        if self.bar is not None:
            if self.bar.total != total:  # the time budget shortened the plan: the ETA follows it
                self.bar.total = total
            self.bar.update(1)
            self.bar.set_description(f"gan {phase}")
            self.bar.set_postfix(shown)
        if (self.bar is None and time.monotonic() - self.last_log > 5.0) or epoch == total:
            self.last_log = time.monotonic()
            log.info("gan_progress", epoch=epoch, epochs=total, phase=phase, **shown)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def shown_stats(stats: dict[str, float], phase: str) -> dict[str, float]:
    """The statistics that mean something in ``phase`` (the critic's are 0 during the warm-up), rounded.

    >>> shown_stats({"wasserstein": 0.0, "generator_loss": 0.0, "moments": 0.123456, "critic_loss": 0.0}, "warm-up")
    {'moments': 0.1235}
    """
    keys = ("moments",) if phase == "warm-up" else ("wasserstein", "generator_loss", "critic_loss", "moments")
    return {k: round(stats[k], 4) for k in keys if k in stats}


def checkpoint_dir(out: Path) -> Path:
    """Where periodic checkpoints of ``out`` go while it is trained: a sibling folder."""
    return out.with_name(out.name + ".checkpoints")


def prune_checkpoints(folder: Path, keep: int = 2) -> None:
    for old in sorted(folder.glob("epoch-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
