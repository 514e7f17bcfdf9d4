"""GAN folders: safetensors weights + a JSON manifest, written atomically, loaded without pickle.

Same discipline as :mod:`monitor.artefact`: the folder holds ``manifest.json``
and ``weights.safetensors`` (generator, its moving average and the critic);
the manifest names the format, the sensors in order, the fault classes, the
normal mean/std and noise spectrum, the architecture, the training record
and the weights' SHA-256, so a corrupted, tampered-with or foreign folder is
refused with a message instead of generating garbage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monitor import __version__
from monitor.detector import folder_format as folder
from monitor.errors import ArtefactError

from .data import Normaliser
from .model import Critic, GANConfig, Generator

FORMAT = "plantwatch-gan"
FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


@dataclass
class GAN:
    """A trained GAN: the networks and everything needed to turn samples into sensor deviations."""

    config: GANConfig
    generator: Generator  # the moving average of the generator weights: what samples come from
    critic: Critic
    sensors: list[str]
    classes: list[str]
    normaliser: Normaliser
    noise_psd: np.ndarray  # (segment // 2 + 1, n_sensors) normal noise spectrum, standardised units
    manifest: dict[str, Any]
    trained_generator: Generator | None = None  # the raw (non-averaged) weights, for resuming

    def class_index(self, label: str) -> int:
        try:
            return self.classes.index(label)
        except ValueError:
            raise ArtefactError(f"the GAN has no class {label!r}; its classes: {', '.join(self.classes)}") from None


def save(path: str | Path, gan: GAN, extra: dict[str, Any], force: bool = False) -> Path:
    """Write the folder atomically (a temporary sibling renamed into place)."""
    nets = {"generator": gan.trained_generator or gan.generator, "generator_ema": gan.generator, "critic": gan.critic}
    weights = {
        f"{part}.{k}": v.detach().clone()  # clone: safetensors refuses shared storage
        for part, net in nets.items()
        for k, v in net.state_dict().items()
    }
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "plantwatch_version": __version__,
        "sensors": list(gan.sensors),
        "classes": list(gan.classes),
        "architecture": gan.config.to_dict(),
        "normaliser": gan.normaliser.to_dict(),
        "noise_psd": np.asarray(gan.noise_psd).tolist(),
        **extra,
    }
    return folder.write(path, weights, manifest, force)


def read_manifest(path: str | Path) -> dict[str, Any]:
    return folder.read_manifest(
        path,
        FORMAT,
        FORMAT_VERSION,
        "GAN",
        "plantwatch gan train",
        MAX_MANIFEST_BYTES,
        {"plantwatch-model": " (a detector model: use it with 'plantwatch monitor' or 'score')"},
    )


def load(path: str | Path) -> GAN:
    """Rebuild a GAN from a folder; every inconsistency is an ArtefactError."""
    path = Path(path)
    manifest = read_manifest(path)
    try:
        sensors = [str(s) for s in manifest["sensors"]]
        classes = [str(c) for c in manifest["classes"]]
        cfg = GANConfig(**manifest["architecture"])
        normaliser = Normaliser.from_dict(manifest["normaliser"])
        psd = np.asarray(manifest["noise_psd"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtefactError(f"{path}: manifest is missing or has a bad field: {exc}") from None
    d = len(sensors)
    if cfg.n_sensors != d or cfg.n_classes != len(classes) or len(set(classes)) != len(classes):
        raise ArtefactError(
            f"{path}: architecture ({cfg.n_sensors} sensors, {cfg.n_classes} classes) does not "
            f"match the manifest ({d} sensors, {len(classes)} distinct classes)"
        )
    if normaliser.mean.shape != (d,) or normaliser.std.shape != (d,) or psd.ndim != 2 or psd.shape[1] != d:
        raise ArtefactError(f"{path}: normaliser or noise spectrum does not have {d} sensors")
    if not (np.isfinite(normaliser.mean).all() and (normaliser.std > 0).all() and np.isfinite(psd).all()):
        raise ArtefactError(f"{path}: normaliser or noise spectrum holds non-finite or non-positive values")
    tensors = folder.read_weights(path, manifest)
    nets = {"generator": Generator(cfg), "generator_ema": Generator(cfg), "critic": Critic(cfg)}
    for part, net in nets.items():
        state = {k[len(part) + 1 :]: v for k, v in tensors.items() if k.startswith(part + ".")}
        if {k: tuple(v.shape) for k, v in state.items()} != {k: tuple(v.shape) for k, v in net.state_dict().items()}:
            raise ArtefactError(f"{path / folder.WEIGHTS}: {part} tensors do not fit the architecture in the manifest")
        net.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
        net.eval()
    generator, generator_ema, critic = nets["generator"], nets["generator_ema"], nets["critic"]
    assert isinstance(generator, Generator) and isinstance(generator_ema, Generator) and isinstance(critic, Critic)
    return GAN(
        cfg,
        generator_ema,
        critic,
        sensors,
        classes,
        normaliser,
        psd,
        manifest,
        trained_generator=generator,
    )
