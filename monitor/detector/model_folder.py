"""Model folders: safetensors weights + a JSON manifest, written atomically, loaded without pickle.

A folder holds ``manifest.json`` and ``weights.safetensors``. The manifest
names the format, the package version, the sensors in order, the scaler, the
window and architecture, the calibration, the training-data fingerprint and
the weights' SHA-256, and is sealed by the SHA-256 of its own content (see
:mod:`.folder_format`), so a corrupted, truncated, tampered-with, edited,
mismatched or foreign folder is refused with a message instead of scoring garbage.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..errors import ArtefactError
from . import folder_format as folder
from .detector import Detector, DetectorSettings
from .folder_format import MANIFEST, WEIGHTS, sha256_file
from .model import DAEConfig, DenoisingAE, Scaler
from .scoring import Calibration
from .value_bounds import TrainingRange

__all__ = ["MANIFEST", "WEIGHTS", "fingerprint", "load", "read_manifest", "save", "sha256_file"]

FORMAT = "plantwatch-model"
FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = 64 * 1024 * 1024


def fingerprint(values: np.ndarray, sensors: list[str]) -> str:
    """Identifies the training data (values and column names) without storing it."""
    h = hashlib.sha256()
    h.update(json.dumps(sensors).encode())
    h.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    return h.hexdigest()


def save(path: str | Path, detector: Detector, extra: dict[str, Any], force: bool = False) -> Path:
    """Write the folder atomically (a temporary sibling renamed into place)."""
    weights = dict(detector.model.state_dict())
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "plantwatch_version": __version__,
        "sensors": list(detector.sensors),
        "architecture": detector.model.cfg.to_dict(),
        "scaler": {
            "mean": detector.scaler.mean.tolist(),
            "scale": detector.scaler.scale.tolist(),
            "constant": detector.scaler.constant.astype(bool).tolist(),
        },
        "calibration": detector.calib.to_dict(),
        "detector": detector.settings.to_dict(),
        **({"training_range": detector.training_range.to_dict()} if detector.training_range is not None else {}),
        **extra,
    }
    return folder.write(path, weights, manifest, force)


def read_manifest(path: str | Path) -> dict[str, Any]:
    return folder.read_manifest(
        path,
        FORMAT,
        FORMAT_VERSION,
        "model",
        "plantwatch train",
        MAX_MANIFEST_BYTES,
        {"plantwatch-gan": " (a GAN: use it with 'plantwatch simulate --gan' or a drill)"},
    )


def load(path: str | Path, settings: DetectorSettings | None = None) -> Detector:
    """Rebuild a detector from a folder; every inconsistency is an ArtefactError."""
    path = Path(path)
    manifest = read_manifest(path)
    try:
        sensors = [str(s) for s in manifest["sensors"]]
        cfg = DAEConfig(**manifest["architecture"])
        sc = manifest["scaler"]
        scaler = Scaler(
            np.asarray(sc["mean"], dtype=np.float64),
            np.asarray(sc["scale"], dtype=np.float64),
            np.asarray(sc["constant"], dtype=bool),
        )
        calib = Calibration.from_dict(manifest["calibration"])
        stored = DetectorSettings.from_dict(manifest["detector"])
        ranges = manifest.get("training_range")
        training_range = None if ranges is None else TrainingRange.from_dict(ranges, len(sensors))
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtefactError(f"{path}: manifest is missing or has a bad field: {exc}") from None
    d = len(sensors)
    for name, arr in (
        ("scaler.mean", scaler.mean),
        ("scaler.scale", scaler.scale),
        ("scaler.constant", scaler.constant),
        ("calibration.resid_scale", calib.resid_scale),
        ("calibration.shift_scale", calib.shift_scale),
    ):
        if arr.shape != (d,):
            raise ArtefactError(f"{path}: {name} has {arr.shape[0] if arr.ndim else 0} entries for {d} sensors")
    if cfg.n_sensors != d:
        raise ArtefactError(f"{path}: architecture has {cfg.n_sensors} sensors, manifest lists {d}")
    if not (np.isfinite(scaler.mean).all() and np.isfinite(scaler.scale).all() and (scaler.scale > 0).all()):
        raise ArtefactError(f"{path}: scaler holds non-finite or non-positive values")
    tensors = folder.read_weights(path, manifest)
    model = DenoisingAE(cfg)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if want != got:
        raise ArtefactError(f"{path / folder.WEIGHTS}: tensors do not fit the architecture in the manifest")
    model.load_state_dict({k: v.to(torch.float32) for k, v in tensors.items()})
    return Detector(model, scaler, calib, sensors, settings or stored, manifest, training_range)
