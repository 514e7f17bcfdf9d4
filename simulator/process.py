"""Simulated plant assets whose normal data looks like a real process, not white noise.

Each asset is a seeded dynamic system: a few latent AR(2) factors (slow ones and
damped oscillations) around an operating-mode setpoint, mixed into K sensors in
engineering units with a mild tanh nonlinearity, slow drift and sensor noise.
Modes change rarely (every 500-2000 samples) with first-order transitions, so
normal data is correlated, autocorrelated and non-stationary, as a detector
will meet it in a plant; modes cycle in a fixed order so any few thousand
samples of history contain all of them.

Every random stream has its own generator, so ``generate(100)`` equals
``generate(30)`` then ``generate(70)``: block sizes (the publisher's catch-up
batches) never change the data. Process faults re-run the latent dynamics of a
block from :attr:`AssetProcess.trace` with :meth:`AssetProcess.coefficients`
and :meth:`AssetProcess.render`, without touching the process itself.

>>> p = AssetProcess(seed=0, asset_index=1, n_sensors=10)
>>> p.name, len(p.sensors), p.generate(5).shape
('asset01', 10, (5, 10))
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

MIN_SENSORS = 8
MAX_SENSORS = 60
DEFAULT_SENSOR_RANGE = (12, 40)
#: Instrument tag prefix, plausible range of the nominal value, and how often it is drawn.
SENSOR_KINDS: tuple[tuple[str, float, float, float], ...] = (
    ("TI", 50.0, 400.0, 0.35),  # temperature, degC
    ("PI", 1.0, 30.0, 0.25),  # pressure, bar
    ("FI", 10.0, 1000.0, 0.30),  # flow, m3/h
    ("LI", 20.0, 80.0, 0.10),  # level, %
)
DWELL_RANGE = (500, 2000)  # samples between operating-mode changes
STD_SAMPLES = 6000  # samples used to measure each sensor's normal spread
BURN_IN = 300


def _ar2_gain(a1: np.ndarray, a2: np.ndarray) -> np.ndarray:
    """Innovation scale giving each AR(2) latent unit stationary variance."""
    return np.sqrt((1 + a2) * ((1 - a2) ** 2 - a1**2) / (1 - a2))


@dataclass
class LatentTrace:
    """How the last block was made, so a process fault can re-make it differently."""

    first_index: int
    setpoint: np.ndarray  # (n, L) operating-mode setpoint of the latents
    z: np.ndarray  # (n + 2, L) latent deviations; the first two rows precede the block
    innov: np.ndarray  # (n, L) innovation added at each step (already scaled)
    noise: np.ndarray  # (n, K) standard-normal sensor noise


class AssetProcess:
    """One simulated asset; ``seed`` and ``asset_index`` fix its structure and data."""

    def __init__(self, seed: int, asset_index: int, n_sensors: int | None = None, realization: int = 0) -> None:
        """``realization`` > 0 draws another run of the same plant (same structure,
        other noise and mode changes): training history that is not the live stream."""
        if asset_index < 1:
            raise ValueError(f"asset_index must be >= 1, got {asset_index}")
        if n_sensors is not None and not MIN_SENSORS <= n_sensors <= MAX_SENSORS:
            raise ValueError(f"n_sensors must be {MIN_SENSORS}-{MAX_SENSORS}, got {n_sensors}")
        self.seed = seed
        self.asset_index = asset_index
        self.name = f"asset{asset_index:02d}"
        structure, innov, noise, modes = (
            np.random.default_rng(s) for s in np.random.SeedSequence([seed, asset_index]).spawn(4)
        )
        if realization:
            innov, noise, modes = (
                np.random.default_rng(s) for s in np.random.SeedSequence([seed, asset_index, realization]).spawn(3)
            )
        self._innov_rng, self._noise_rng, self._mode_rng = innov, noise, modes
        lo, hi = DEFAULT_SENSOR_RANGE
        k = int(n_sensors if n_sensors is not None else structure.integers(lo, hi + 1))
        self._build_latents(structure)
        self._build_sensors(structure, k)
        self._build_modes(structure)
        self.index = 0
        self.trace: LatentTrace | None = None
        self._z_hist = np.zeros((2, self.n_latent))
        self._burn_in(structure)

    # ------------------------------------------------------------ structure

    def _build_latents(self, rng: np.random.Generator) -> None:
        n = int(rng.integers(3, 7))
        oscillating = np.arange(n) % 2 == 1  # half slow, half damped oscillations
        radius = np.where(oscillating, rng.uniform(0.93, 0.99, n), rng.uniform(0.95, 0.995, n))
        angle = np.where(oscillating, 2 * np.pi / rng.uniform(20, 200, n), 0.0)
        second = np.where(oscillating, 0.0, rng.uniform(0.3, 0.8, n))  # second real pole
        self._poles = np.stack(
            [radius * np.exp(1j * angle), np.where(oscillating, radius * np.exp(-1j * angle), second)]
        )
        self.n_latent = n
        self._a1, self._a2 = self.coefficients()
        self._gain = _ar2_gain(self._a1, self._a2)

    def _build_sensors(self, rng: np.random.Generator, k: int) -> None:
        L = self.n_latent
        probs = np.array([p for *_, p in SENSOR_KINDS])
        kinds = rng.choice(len(SENSOR_KINDS), size=k, p=probs / probs.sum())
        self.sensors = [f"{SENSOR_KINDS[c][0]}{101 + j}" for j, c in enumerate(kinds)]
        lo = np.array([SENSOR_KINDS[c][1] for c in kinds])
        hi = np.array([SENSOR_KINDS[c][2] for c in kinds])
        self._offset = np.exp(rng.uniform(np.log(lo * 1.3), np.log(hi * 0.8)))
        self._scale = self._offset * rng.uniform(0.02, 0.05, k)
        mix = np.zeros((k, L))
        for j in range(k):  # each sensor follows 1-3 latents
            used = rng.choice(L, size=int(rng.integers(1, min(3, L) + 1)), replace=False)
            mix[j, used] = rng.normal(0, 1, used.size)
        self._mix = mix / np.linalg.norm(mix, axis=1, keepdims=True)
        nl_dir = rng.normal(0, 1, (k, L))
        self._nl_dir = nl_dir / np.linalg.norm(nl_dir, axis=1, keepdims=True)
        self._nl_gain = np.where(rng.random(k) < 0.35, rng.choice([-1, 1], k) * rng.uniform(0.3, 0.7, k), 0.0)
        self._drift_amp = rng.uniform(0.05, 0.25, k)
        self._drift_period = rng.uniform(4000, 30000, k)
        self._drift_phase = rng.uniform(0, 2 * np.pi, k)
        self._noise_std = rng.uniform(0.05, 0.15, k)

    def _build_modes(self, rng: np.random.Generator) -> None:
        n = int(rng.integers(2, 4))
        self._mode_setpoints = np.vstack([np.zeros(self.n_latent), rng.normal(0, 1.5, (n - 1, self.n_latent))])
        self._alpha = 1.0 / rng.uniform(15, 60)  # first-order transition between setpoints
        self._mode = 0
        self._switched = 0  # when the current mode began
        self._from = self._mode_setpoints[0].copy()  # setpoint just before that
        self._next_switch = int(self._mode_rng.integers(*DWELL_RANGE))

    def _burn_in(self, rng: np.random.Generator) -> None:
        z = np.zeros((2, self.n_latent))
        for e in rng.standard_normal((BURN_IN, self.n_latent)) * self._gain:
            z = np.array([z[1], self._a1 * z[1] + self._a2 * z[0] + e])
        self._z_hist = z

    # ------------------------------------------------------------ public

    @property
    def n_sensors(self) -> int:
        return len(self.sensors)

    @property
    def n_modes(self) -> int:
        return int(self._mode_setpoints.shape[0])

    def coefficients(self, slowdown: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """AR(2) coefficients (a1, a2) per latent; ``slowdown`` > 0 moves the poles towards 1.

        Each pole radius r becomes ``1 - (1 - r) / (1 + slowdown)``: less damped,
        slower and larger swings, still stable. This is the ``coefficient`` fault.
        """
        if slowdown <= -1:
            raise ValueError(f"slowdown must be > -1, got {slowdown}")
        radius = np.abs(self._poles)
        poles = self._poles * (1 - (1 - radius) / (1 + slowdown)) / radius
        return (poles[0] + poles[1]).real, -(poles[0] * poles[1]).real

    @property
    def gain(self) -> np.ndarray:
        """Scale of each latent's innovations (gives unit variance with normal coefficients)."""
        return self._gain

    def generate(self, n: int) -> np.ndarray:
        """The next ``n`` samples, shape (n, K); records :attr:`trace` for process faults."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        innov = self._innov_rng.standard_normal((n, self.n_latent)) * self._gain
        noise = self._noise_rng.standard_normal((n, self.n_sensors))
        setpoint = self._setpoints(n)
        z = run_ar2(self._z_hist, self._a1, self._a2, innov)
        self._z_hist = z[-2:].copy()
        self.trace = LatentTrace(self.index, setpoint, z, innov, noise)
        out = self.render(setpoint + z[2:], self.index, noise)
        self.index += n
        return out

    def read(self, n: int) -> np.ndarray:
        """Same as :meth:`generate`: a simulated asset never runs out (the publisher's Source)."""
        return self.generate(n)

    def step(self) -> np.ndarray:
        """One sample, shape (K,)."""
        return self.generate(1)[0]

    def render(self, latent: np.ndarray, first_index: int, noise: np.ndarray) -> np.ndarray:
        """Sensor values (n, K) for latent states (n, L) at rows first_index.., in engineering units."""
        t = np.arange(first_index, first_index + latent.shape[0], dtype=np.float64)[:, None]
        signal = (
            _combine(latent, self._mix)
            + self._nl_gain * np.tanh(_combine(latent, self._nl_dir))
            + self._drift_amp * np.sin(2 * np.pi * t / self._drift_period + self._drift_phase)
        )
        return self._offset + self._scale * (signal + self._noise_std * noise)

    @cached_property
    def sensor_std(self) -> np.ndarray:
        """Normal standard deviation of each sensor (over all modes): the unit of fault magnitudes."""
        fresh = AssetProcess(self.seed, self.asset_index, self.n_sensors)
        return fresh.generate(STD_SAMPLES).std(axis=0)

    # ------------------------------------------------------------ internals

    def _setpoints(self, n: int) -> np.ndarray:
        """Setpoint trajectory (n, L): first-order approach to the current mode's target.

        Computed from the setpoint at the last switch and the time since it, so
        the values do not depend on how the rows are split into blocks.
        """
        out = np.empty((n, self.n_latent))
        done = 0
        while done < n:
            t = self.index + done
            if t == self._next_switch:
                self._from = self._setpoint_at(t - 1)
                self._switched, self._mode = t, (self._mode + 1) % self.n_modes
                self._next_switch += int(self._mode_rng.integers(*DWELL_RANGE))
            seg = min(n - done, self._next_switch - t)
            out[done : done + seg] = self._setpoint_at(np.arange(t, t + seg)[:, None])
            done += seg
        return out

    def _setpoint_at(self, t: np.ndarray | int) -> np.ndarray:
        target = self._mode_setpoints[self._mode]
        return target + (self._from - target) * (1 - self._alpha) ** (np.asarray(t) - self._switched + 1)


def _combine(latent: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``latent @ weights.T`` term by term: unlike BLAS, each row's result is the
    same whatever the number of rows, so block sizes never change a value."""
    out = latent[:, :1] * weights[:, 0]
    for j in range(1, latent.shape[1]):
        out += latent[:, j : j + 1] * weights[:, j]
    return out


def run_ar2(history: np.ndarray, a1: np.ndarray, a2: np.ndarray, innov: np.ndarray) -> np.ndarray:
    """AR(2) recursion from two rows of history; returns (n + 2, L) with the history first."""
    z = np.empty((innov.shape[0] + 2, innov.shape[1]))
    z[:2] = history
    for t in range(innov.shape[0]):
        z[t + 2] = a1 * z[t + 1] + a2 * z[t] + innov[t]
    return z


def make_assets(n_assets: int, seed: int, n_sensors: int | None = None) -> list[AssetProcess]:
    """asset01..assetNN; each asset's data depends only on (seed, its index, n_sensors)."""
    if n_assets < 1:
        raise ValueError(f"n_assets must be >= 1, got {n_assets}")
    return [AssetProcess(seed, i, n_sensors) for i in range(1, n_assets + 1)]
