"""Generator and critic: 1-D convolutions over time, conditioned on the fault class and time since onset.

Both work in a *squashed* space ``y = s * asinh(z / s)`` of the deviation
``z`` (linear for small deviations, logarithmic for the 100-sigma ones some
faults reach), which keeps the critic's gradients in range.

The generator is fully convolutional: it is trained on windows of
``cfg.window`` samples but draws a pattern of any length. Its output is the
sum of three parts:

- a *trend*: the class's typical course, a function of the class and the
  time since onset alone;
- *slow variation*: a coarse latent sequence (one vector per :data:`STRIDE`
  samples) upsampled through FiLM-conditioned convolutions, plus per-sample
  noise channels in the last layer;
- the sensors' *own noise*: white noise mixed across sensors (correlated),
  filtered per sensor (coloured) and scaled per sample.

Then the recording is imitated: analyser sensors hold each value for their
period (:func:`hold`) and coarsely recorded ones land on their lattice
(:func:`quantise`), as the data's normal rows show. Time since onset enters
both networks as two channels (:func:`time_features`), so a pattern starts
with the fault's transient and settles as the recorded ones did.

Class conditioning: FiLM (per-class scale and shift of every hidden layer) in
the generator, a projection term in the critic (Miyato & Koyama, 2018). The
critic is trained with a gradient penalty (WGAN-GP) or, spectrally
normalised, with the hinge loss.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

STRIDE = 8  # samples per coarse latent vector (three x2 upsamplings)
TIME_FEATURES = 2
NOISE_TAPS = 5  # length of each sensor's noise filter (its colour)
Noise = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class GANConfig:
    """Shapes of both networks; saved in the manifest so a folder rebuilds them alone."""

    n_sensors: int
    n_classes: int
    window: int = 64  # training window, samples
    noise_dim: int = 32  # coarse latent channels
    fine_noise: int = 16  # per-sample noise channels into the last layer (coloured, shared noise)
    channels: int = 96  # generator width
    critic_channels: int = 64  # critic width (doubles after the second layer)
    embed: int = 32  # class embedding size
    time_scale: float = 480.0  # onset-relative time normalisation, samples
    squash: float = 4.0  # s of the asinh squashing
    hold: tuple[int, ...] = ()  # per sensor: samples each value is held (analysers), () = none held
    resolution: tuple[float, ...] = ()  # per sensor: step between recorded values, std units (0 = continuous)
    lattice: tuple[float, ...] = ()  # per sensor: where those steps fall (offset), std units
    spectral_norm: bool = False  # critic layers spectrally normalised (hinge loss) instead of a gradient penalty
    conditional_critic: bool = True  # False: the critic judges realism alone, not class and time since onset

    def __post_init__(self) -> None:
        object.__setattr__(self, "hold", tuple(int(h) for h in self.hold))
        object.__setattr__(self, "resolution", tuple(float(r) for r in self.resolution))
        object.__setattr__(self, "lattice", tuple(float(r) for r in self.lattice))
        if len(self.resolution) != len(self.lattice) or (self.resolution and len(self.resolution) != self.n_sensors):
            raise ValueError("resolution and lattice need one value per sensor (or none)")
        if self.hold and (len(self.hold) != self.n_sensors or min(self.hold) < 1):
            raise ValueError(f"hold needs one period >= 1 per sensor, got {len(self.hold)} for {self.n_sensors}")
        if self.n_sensors < 1 or self.n_classes < 1:
            raise ValueError(f"need >= 1 sensor and class, got {self.n_sensors}, {self.n_classes}")
        if self.window < 2 * STRIDE or self.window % STRIDE:
            raise ValueError(f"window must be a multiple of {STRIDE} and >= {2 * STRIDE}, got {self.window}")
        if self.squash <= 0 or self.time_scale <= 0:
            raise ValueError("squash and time_scale must be > 0")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("hold", "resolution", "lattice"):
            d[k] = list(getattr(self, k))
        return d


def squash(z: torch.Tensor, s: float) -> torch.Tensor:
    return s * torch.asinh(z / s)


def unsquash(y: torch.Tensor, s: float) -> torch.Tensor:
    return s * torch.sinh(torch.clamp(y / s, -8.0, 8.0))


def time_features(t: torch.Tensor, scale: float) -> torch.Tensor:
    """(B, L) samples since onset -> (B, 2, L): log time, and an onset-transient indicator."""
    t = t.clamp(min=0).float()
    return torch.stack([torch.log1p(t) / math.log1p(scale), torch.exp(-t / 8.0)], dim=1)


class FiLMConv(nn.Module):
    """conv -> per-class scale and shift -> LeakyReLU."""

    def __init__(self, c_in: int, c_out: int, k: int, embed: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, k, padding=k // 2)
        self.film = nn.Linear(embed, 2 * c_out)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(e).unsqueeze(-1).chunk(2, dim=1)
        return nn.functional.leaky_relu(self.conv(x) * (1 + gamma) + beta, 0.2)


class Generator(nn.Module):
    """(class, time since onset, noise) -> squashed deviation (B, n_sensors, L)."""

    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, e = cfg.channels, cfg.embed
        self.embed = nn.Embedding(cfg.n_classes, e)
        self.inp = FiLMConv(cfg.noise_dim + TIME_FEATURES, c, 3, e)
        self.coarse = FiLMConv(c, c, 3, e)
        self.up = nn.ModuleList([FiLMConv(c, c, 5, e) for _ in range(3)])
        self.fine = FiLMConv(c + cfg.fine_noise + TIME_FEATURES, c, 3, e)
        self.out = nn.Conv1d(c, cfg.n_sensors, 1)
        # the class's typical course over time since onset, straight from the class and the time
        self.trend = nn.Sequential(
            nn.Conv1d(e + TIME_FEATURES, c, 1), nn.LeakyReLU(0.2), nn.Conv1d(c, cfg.n_sensors, 1)
        )
        # the noise of the sensors: white noise mixed across sensors (correlated), filtered per sensor
        # (coloured), scaled per sample
        self.noise_scale = nn.Conv1d(c, cfg.n_sensors, 1)
        self.noise_mix = nn.Conv1d(cfg.n_sensors, cfg.n_sensors, 1, bias=False)  # correlated across sensors
        self.noise_filter = nn.Conv1d(
            cfg.n_sensors, cfg.n_sensors, NOISE_TAPS, padding=NOISE_TAPS // 2, groups=cfg.n_sensors, bias=False
        )
        with torch.no_grad():
            self.noise_mix.weight.copy_(torch.eye(cfg.n_sensors)[:, :, None])
            self.noise_filter.weight.zero_()
            self.noise_filter.weight[:, 0, NOISE_TAPS // 2] = 1.0

    def noise(self, batch: int, length: int, gen: torch.Generator | None = None) -> Noise:
        """Standard normal noise: coarse (B, noise_dim, ceil(L/8)), fine (B, fine_noise, L), own (B, d, L)."""
        coarse = -(-length // STRIDE)
        return (
            torch.randn((batch, self.cfg.noise_dim, coarse), generator=gen),
            torch.randn((batch, self.cfg.fine_noise, length), generator=gen),
            torch.randn((batch, self.cfg.n_sensors, length), generator=gen),
        )

    def forward(self, labels: torch.Tensor, t0: torch.Tensor, length: int, noise: Noise | None = None) -> torch.Tensor:
        """``t0`` (B,) samples since onset of the first output sample."""
        b = labels.shape[0]
        zc, zf, own = noise if noise is not None else self.noise(b, length)
        lc = zc.shape[-1]
        assert zf.shape == (b, self.cfg.fine_noise, length) and lc * STRIDE >= length, "noise does not fit length"
        e = self.embed(labels)
        t_coarse = t0[:, None] + torch.arange(lc) * STRIDE + (STRIDE - 1) / 2
        h = self.inp(torch.cat([zc, time_features(t_coarse, self.cfg.time_scale)], 1), e)
        h = self.coarse(h, e) + h
        for layer in self.up:
            h = nn.functional.interpolate(h, scale_factor=2, mode="linear", align_corners=False)
            h = layer(h, e) + h
        h = h[..., :length]  # (B, C, L)
        t = t0[:, None] + torch.arange(length)
        tf = time_features(t, self.cfg.time_scale)
        h = self.fine(torch.cat([h, zf, tf], 1), e) + h
        trend = self.trend(torch.cat([e[:, :, None].expand(-1, -1, length), tf], 1))
        y = trend + self.out(h) + torch.exp(self.noise_scale(h).clamp(max=1.5)) * self.noise_filter(self.noise_mix(own))
        return quantise(hold(y, t0, self.cfg.hold), self.cfg)


def quantise(y: torch.Tensor, cfg: GANConfig) -> torch.Tensor:
    """Sensors recorded with few decimals take values on their lattice only (gradient passed straight through)."""
    cols = [j for j, r in enumerate(cfg.resolution) if r > 0]
    if not cols:
        return y
    res = torch.tensor([cfg.resolution[j] for j in cols])[None, :, None]
    off = torch.tensor([cfg.lattice[j] for j in cols])[None, :, None]
    z = unsquash(y[:, cols], cfg.squash)
    zq = torch.round((z - off) / res) * res + off
    out = y.clone()
    out[:, cols] = squash(z + (zq - z).detach(), cfg.squash)
    return out


def hold(y: torch.Tensor, t0: torch.Tensor, periods: tuple[int, ...]) -> torch.Tensor:
    """Sensors updated every p samples keep their value in between (updates at the onset, then every p).

    Analysers that report every few samples look like steps in the data; the
    generator's smooth output is sampled and held the same way.
    """
    if not periods or max(periods) == 1:
        return y
    b, _d, length = y.shape
    out = y.clone()
    t = t0[:, None].long() + torch.arange(length)  # (B, L) samples since onset
    for p in sorted(set(periods) - {1}):
        cols = [j for j, q in enumerate(periods) if q == p]
        src = ((t // p) * p - t0[:, None].long()).clamp(0, length - 1)  # where each sample's value was taken
        idx = src[:, None, :].expand(b, len(cols), length)
        out[:, cols, :] = torch.gather(y[:, cols, :], 2, idx)
    return out


class Critic(nn.Module):
    """Squashed deviation window (B, n_sensors, T) with its class and onset time -> realness score (B,)."""

    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.critic_channels
        act = nn.LeakyReLU(0.2)
        sn = nn.utils.parametrizations.spectral_norm if cfg.spectral_norm else (lambda m: m)
        self.body = nn.Sequential(
            sn(nn.Conv1d(cfg.n_sensors + TIME_FEATURES, c, 5, padding=2)),
            act,
            sn(nn.Conv1d(c, c, 5, stride=2, padding=2)),
            act,
            sn(nn.Conv1d(c, 2 * c, 5, stride=2, padding=2)),
            act,
            sn(nn.Conv1d(2 * c, 2 * c, 5, stride=2, padding=2)),
            act,
        )
        self.head = sn(nn.Linear(4 * c, 1))
        embedding = nn.Embedding(cfg.n_classes, 4 * c)
        nn.init.normal_(embedding.weight, std=0.02)
        self.project: nn.Module = embedding
        if cfg.spectral_norm:
            self.project = sn(self.project)

    def forward(self, y: torch.Tensor, labels: torch.Tensor, t0: torch.Tensor) -> torch.Tensor:
        _b, d, length = y.shape
        assert d == self.cfg.n_sensors, f"expected {self.cfg.n_sensors} sensors, got {d}"
        t = t0[:, None] + torch.arange(length)
        tf = time_features(t, self.cfg.time_scale)
        h = self.body(torch.cat([y, tf if self.cfg.conditional_critic else torch.zeros_like(tf)], 1))
        phi = torch.cat([h.mean(-1), h.amax(-1)], 1)  # (B, 4C)
        if not self.cfg.conditional_critic:
            return self.head(phi).squeeze(1)
        return self.head(phi).squeeze(1) + (self.project(labels) * phi).sum(1)
