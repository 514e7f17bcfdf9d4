"""Generator and critic: 1-D convolutions over time, conditioned on the fault class and time since onset.

Both work in a *squashed* space ``y = s * asinh(z / s)`` of the deviation
``z`` (linear for small deviations, logarithmic for the 100-sigma ones some
faults reach), which keeps the critic's gradients in range.

The generator is fully convolutional: it is trained on windows of
``cfg.window`` samples but draws a pattern of any length from a coarse latent
sequence (one vector per :data:`STRIDE` samples, for slow structure) and
per-sample noise (for the fault's own fast variability). Time since onset
enters both networks as two channels (:func:`time_features`), so a pattern
starts with the fault's transient and settles as the recorded ones did.

Class conditioning: FiLM (per-class scale and shift of every hidden layer) in
the generator, a projection term in the critic (Miyato & Koyama, 2018).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

STRIDE = 8            # samples per coarse latent vector (three x2 upsamplings)
TIME_FEATURES = 2


@dataclass(frozen=True)
class GANConfig:
    """Shapes of both networks; saved in the manifest so a folder rebuilds them alone."""

    n_sensors: int
    n_classes: int
    window: int = 64                # training window, samples
    noise_dim: int = 32             # coarse latent channels
    fine_noise: int = 8             # per-sample noise channels
    channels: int = 96              # generator width
    critic_channels: int = 64       # critic width (doubles after the second layer)
    embed: int = 32                 # class embedding size
    time_scale: float = 480.0       # onset-relative time normalisation, samples
    squash: float = 4.0             # s of the asinh squashing

    def __post_init__(self) -> None:
        if self.n_sensors < 1 or self.n_classes < 1:
            raise ValueError(f"need >= 1 sensor and class, got {self.n_sensors}, {self.n_classes}")
        if self.window < 2 * STRIDE or self.window % STRIDE:
            raise ValueError(f"window must be a multiple of {STRIDE} and >= {2 * STRIDE}, got {self.window}")
        if self.squash <= 0 or self.time_scale <= 0:
            raise ValueError("squash and time_scale must be > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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

    def noise(self, batch: int, length: int, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Coarse (B, noise_dim, ceil(L/8)) and fine (B, fine_noise, L) standard normal noise."""
        coarse = -(-length // STRIDE)
        return (torch.randn((batch, self.cfg.noise_dim, coarse), generator=gen),
                torch.randn((batch, self.cfg.fine_noise, length), generator=gen))

    def forward(self, labels: torch.Tensor, t0: torch.Tensor, length: int,
                noise: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``t0`` (B,) samples since onset of the first output sample."""
        b = labels.shape[0]
        zc, zf = noise if noise is not None else self.noise(b, length)
        lc = zc.shape[-1]
        assert zf.shape == (b, self.cfg.fine_noise, length) and lc * STRIDE >= length, "noise does not fit length"
        e = self.embed(labels)
        t_coarse = t0[:, None] + torch.arange(lc) * STRIDE + (STRIDE - 1) / 2
        h = self.inp(torch.cat([zc, time_features(t_coarse, self.cfg.time_scale)], 1), e)
        h = self.coarse(h, e) + h
        for layer in self.up:
            h = nn.functional.interpolate(h, scale_factor=2, mode="nearest")
            h = layer(h, e) + h
        h = h[..., :length]                                        # (B, C, L)
        t = t0[:, None] + torch.arange(length)
        h = self.fine(torch.cat([h, zf, time_features(t, self.cfg.time_scale)], 1), e) + h
        return self.out(h)


class Critic(nn.Module):
    """Squashed deviation window (B, n_sensors, T) with its class and onset time -> realness score (B,)."""

    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.critic_channels
        act = nn.LeakyReLU(0.2)
        self.body = nn.Sequential(
            nn.Conv1d(cfg.n_sensors + TIME_FEATURES, c, 5, padding=2), act,
            nn.Conv1d(c, c, 5, stride=2, padding=2), act,
            nn.Conv1d(c, 2 * c, 5, stride=2, padding=2), act,
            nn.Conv1d(2 * c, 2 * c, 5, stride=2, padding=2), act,
        )
        self.head = nn.Linear(4 * c, 1)
        self.project = nn.Embedding(cfg.n_classes, 4 * c)
        nn.init.normal_(self.project.weight, std=0.02)

    def forward(self, y: torch.Tensor, labels: torch.Tensor, t0: torch.Tensor) -> torch.Tensor:
        b, d, length = y.shape
        assert d == self.cfg.n_sensors, f"expected {self.cfg.n_sensors} sensors, got {d}"
        t = t0[:, None] + torch.arange(length)
        h = self.body(torch.cat([y, time_features(t, self.cfg.time_scale)], 1))
        phi = torch.cat([h.mean(-1), h.amax(-1)], 1)               # (B, 4C)
        return self.head(phi).squeeze(1) + (self.project(labels) * phi).sum(1)
