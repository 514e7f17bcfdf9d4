"""Drawing patterns from a trained GAN, and preparing them for injection.

:func:`generate` returns deviations in standard deviations of each sensor,
from the fault's onset (or any later offset), of any length. A generated
pattern, like the recorded episodes it imitates, carries the normal noise of
a process as well as the fault; added to a live stream, which has its own,
the noise would count twice and make a subtle fault look loud. :func:`denoise`
therefore takes the normal part out first (power spectral subtraction per
sensor against the normal spectrum stored in the GAN, with over-subtraction
so the estimate's own scatter does not leave noise behind): what remains is
what the fault adds. ``plantwatch gan sample`` writes the raw deviations;
``--denoise`` writes what an injection adds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from monitor import outputs
from monitor.errors import InputError

from .artefact import GAN
from .model import unsquash

DENOISE_SMOOTH = 9  # frequency bins averaged for the pattern's spectrum
DENOISE_OVERSUBTRACT = 2.0  # multiple of the normal spectrum taken out
MAX_SAMPLES = 1_000_000


def generate(
    gan: GAN, label: str, n: int, length: int, *, seed: int = 0, t0: int | np.ndarray = 0, batch: int = 256
) -> np.ndarray:
    """``n`` raw deviation patterns (n, length, sensors) of class ``label``, starting ``t0`` samples after onset."""
    if n < 1 or length < 1:
        raise InputError(f"need n >= 1 and length >= 1, got {n}, {length}")
    if n * length > MAX_SAMPLES * 10:
        raise InputError(f"{n} patterns of {length} samples is too many at once")
    c = gan.class_index(label)
    starts = np.broadcast_to(np.asarray(t0, dtype=np.float32), (n,))
    gen = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        for lo in range(0, n, batch):
            b = min(batch, n - lo)
            noise = gan.generator.noise(b, length, gen)
            y = gan.generator(
                torch.full((b,), c, dtype=torch.long), torch.from_numpy(starts[lo : lo + b].copy()), length, noise
            )
            out.append(unsquash(y, gan.config.squash).transpose(1, 2).numpy().astype(np.float64))
    return np.concatenate(out)


def noise_psd_at(gan: GAN, length: int) -> np.ndarray:
    """The normal noise spectrum on the rfft grid of ``length`` samples: (length // 2 + 1, sensors)."""
    ref = np.fft.rfftfreq(2 * (len(gan.noise_psd) - 1))
    grid = np.fft.rfftfreq(length)
    return np.stack([np.interp(grid, ref, gan.noise_psd[:, j]) for j in range(gan.noise_psd.shape[1])], axis=1)


def denoise(
    pattern: np.ndarray, noise_psd: np.ndarray, smooth: int = DENOISE_SMOOTH, oversubtract: float = DENOISE_OVERSUBTRACT
) -> np.ndarray:
    """Remove the normal noise from one (length, sensors) deviation pattern, keeping what the fault adds.

    Each sensor's spectrum is scaled by ``sqrt(max(0, 1 - k * N(f) / P(f)))``
    (``N`` normal, ``P`` the pattern's smoothed periodogram): power the normal
    process would have anyway is removed, the fault's own shifts and
    oscillations stay, and the phases (the timing) are untouched.
    """
    n = len(pattern)
    assert noise_psd.shape == (n // 2 + 1, pattern.shape[1]), "noise spectrum does not fit the pattern"
    spec = np.fft.rfft(pattern, axis=0)
    power = np.abs(spec) ** 2 / n
    half = smooth // 2
    padded = np.pad(power, ((half, half), (0, 0)), mode="edge")
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    smoothed = np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(power.shape[1])], axis=1)
    gain = np.sqrt(np.clip(1 - oversubtract * noise_psd / np.maximum(smoothed, 1e-12), 0.0, 1.0))
    return np.fft.irfft(gain * spec, n=n, axis=0)


def injection_pattern(gan: GAN, label: str, length: int, *, seed: int, scale: float = 1.0) -> np.ndarray:
    """What a ``gan:<class>`` injection adds: one generated pattern, denoised, times ``scale`` (std units)."""
    raw = generate(gan, label, 1, length, seed=seed)[0]
    return scale * denoise(raw, noise_psd_at(gan, length))


# ---------------------------------------------------------------- plantwatch gan sample


def sample_command(args: argparse.Namespace) -> int:
    from . import artefact

    out = Path(args.out)
    if out.suffix not in (".csv", ".npy"):
        raise InputError(f"--out {out}: must end in .csv or .npy")
    outputs.check_file(out, "--out")
    if args.offset < 0:
        raise InputError(f"--offset must be >= 0 samples, got {args.offset}")
    gan = artefact.load(args.gan)
    length = gan.config.window if args.length is None else args.length
    if args.n < 1 or length < 1:
        raise InputError(f"--n and --length must be >= 1, got {args.n}, {length}")
    if args.n * length > MAX_SAMPLES:
        raise InputError(f"--n x --length = {args.n * length:,} rows; at most {MAX_SAMPLES:,} at once")
    torch.set_num_threads(1)
    patterns = generate(gan, args.cls, args.n, length, seed=args.seed, t0=args.offset)
    if args.denoise:
        psd = noise_psd_at(gan, length)
        patterns = np.stack([denoise(p, psd) for p in patterns])
    if args.units == "sensor":
        patterns = patterns * gan.normaliser.std
    _write(out, patterns, gan.sensors)
    print(
        f"wrote {args.n} pattern(s) of class {args.cls}, {length} samples x {len(gan.sensors)} sensors "
        f"({'sensor units' if args.units == 'sensor' else 'standard deviations'}"
        f"{', denoised' if args.denoise else ''}) to {out}",
        file=sys.stderr,
    )
    return 0


def _write(out: Path, patterns: np.ndarray, sensors: list[str]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        if out.suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, patterns.astype(np.float32), allow_pickle=False)
        else:
            with open(tmp, "w", newline="") as f:
                f.write(",".join(["pattern", "step", *sensors]) + "\n")
                for i, p in enumerate(patterns):
                    f.writelines(f"{i},{t}," + ",".join(f"{v:.6g}" for v in row) + "\n" for t, row in enumerate(p))
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{out}: cannot write: {exc.strerror}") from None
