"""Model folders: safetensors weights + a JSON manifest, written atomically, loaded without pickle.

A folder holds ``manifest.json`` and ``weights.safetensors``. The manifest
names the format, the package version, the sensors in order, the scaler, the
window and architecture, the calibration, the training-data fingerprint and
the weights' SHA-256, so a corrupted, truncated, tampered-with, mismatched or
foreign folder is refused with a message instead of scoring garbage.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .detector import Detector, DetectorSettings
from .errors import ArtefactError
from .model import DAEConfig, DenoisingAE, Scaler
from .scoring import Calibration

FORMAT = "plantwatch-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(values: np.ndarray, sensors: list[str]) -> str:
    """Identifies the training data (values and column names) without storing it."""
    h = hashlib.sha256()
    h.update(json.dumps(sensors).encode())
    h.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    return h.hexdigest()


def save(path: str | Path, detector: Detector, extra: dict[str, Any], force: bool = False) -> Path:
    """Write the folder atomically (a temporary sibling renamed into place)."""
    path = Path(path)
    if path.exists() and not force:
        raise ArtefactError(f"{path}: already exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        weights = {k: v.detach().contiguous() for k, v in detector.model.state_dict().items()}
        save_file(weights, str(tmp / WEIGHTS))
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "plantwatch_version": __version__,
            "sensors": list(detector.sensors),
            "architecture": detector.model.cfg.to_dict(),
            "scaler": {"mean": detector.scaler.mean.tolist(), "scale": detector.scaler.scale.tolist(),
                       "constant": detector.scaler.constant.astype(bool).tolist()},
            "calibration": detector.calib.to_dict(),
            "detector": detector.settings.to_dict(),
            "weights": {"file": WEIGHTS, "sha256": sha256_file(tmp / WEIGHTS)},
            **extra,
        }
        with open(tmp / MANIFEST, "w") as f:
            json.dump(manifest, f, indent=1, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_dir():
        raise ArtefactError(f"{path}: not a model folder (expected a folder made by 'plantwatch train')")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ArtefactError(f"{path}: no {MANIFEST}; not a plantwatch model folder")
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise ArtefactError(f"{mpath}: manifest is implausibly large")
    try:
        manifest = json.loads(mpath.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtefactError(f"{mpath}: corrupted manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtefactError(f"{path}: not a plantwatch model (format {manifest.get('format') if isinstance(manifest, dict) else None!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtefactError(f"{path}: model format version {manifest.get('format_version')!r}; this plantwatch reads {FORMAT_VERSION}")
    return manifest


def load(path: str | Path, settings: DetectorSettings | None = None) -> Detector:
    """Rebuild a detector from a folder; every inconsistency is an ArtefactError."""
    path = Path(path)
    manifest = read_manifest(path)
    try:
        sensors = [str(s) for s in manifest["sensors"]]
        cfg = DAEConfig(**manifest["architecture"])
        sc = manifest["scaler"]
        scaler = Scaler(np.asarray(sc["mean"], dtype=np.float64), np.asarray(sc["scale"], dtype=np.float64),
                        np.asarray(sc["constant"], dtype=bool))
        calib = Calibration.from_dict(manifest["calibration"])
        stored = DetectorSettings.from_dict(manifest["detector"])
        expected_hash = manifest["weights"]["sha256"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtefactError(f"{path}: manifest is missing or has a bad field: {exc}") from None
    d = len(sensors)
    for name, arr in (("scaler.mean", scaler.mean), ("scaler.scale", scaler.scale),
                      ("scaler.constant", scaler.constant), ("calibration.resid_scale", calib.resid_scale),
                      ("calibration.shift_scale", calib.shift_scale)):
        if arr.shape != (d,):
            raise ArtefactError(f"{path}: {name} has {arr.shape[0] if arr.ndim else 0} entries for {d} sensors")
    if cfg.n_sensors != d:
        raise ArtefactError(f"{path}: architecture has {cfg.n_sensors} sensors, manifest lists {d}")
    if not (np.isfinite(scaler.mean).all() and np.isfinite(scaler.scale).all() and (scaler.scale > 0).all()):
        raise ArtefactError(f"{path}: scaler holds non-finite or non-positive values")
    wpath = path / WEIGHTS
    if not wpath.is_file():
        raise ArtefactError(f"{path}: {WEIGHTS} is missing")
    if sha256_file(wpath) != expected_hash:
        raise ArtefactError(f"{wpath}: weights do not match the manifest's SHA-256 (corrupted or tampered with)")
    try:
        tensors = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtefactError(f"{wpath}: unreadable weights: {exc}") from None
    model = DenoisingAE(cfg)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if want != got:
        raise ArtefactError(f"{wpath}: tensors do not fit the architecture in the manifest")
    model.load_state_dict({k: v.to(torch.float32) for k, v in tensors.items()})
    return Detector(model, scaler, calib, sensors, settings or stored, manifest)
