"""Artefact folders (detector models, GANs): safetensors weights + a JSON manifest.

One discipline for every folder plantwatch writes, so none can be half
written or silently swapped: the folder is built in a temporary sibling and
renamed into place; the manifest is fsynced and names its format, version
and the weights' SHA-256; reading checks all of that before a single tensor
is loaded, and tensors come from safetensors (never pickle).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import ArtefactError

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write(path: str | Path, weights: dict[str, torch.Tensor], manifest: dict[str, Any], force: bool = False) -> Path:
    """Write ``weights`` and ``manifest`` (plus the weights' hash) atomically; refuse to overwrite unless ``force``."""
    path = Path(path)
    if path.exists() and not force:
        raise ArtefactError(f"{path}: already exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_file({k: v.detach().contiguous() for k, v in weights.items()}, str(tmp / WEIGHTS))
        manifest = {**manifest, "weights": {"file": WEIGHTS, "sha256": sha256_file(tmp / WEIGHTS)}}
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


def read_manifest(
    path: str | Path,
    fmt: str,
    version: int,
    what: str,
    made_by: str,
    max_bytes: int,
    hints: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The manifest of a ``fmt`` folder, or an ArtefactError saying what the folder is instead.

    ``what`` names the kind in messages ("model", "GAN"), ``made_by`` the
    command that makes it; ``hints`` maps another format to advice.
    """
    path = Path(path)
    if not path.is_dir():
        raise ArtefactError(f"{path}: not a {what} folder (expected a folder made by '{made_by}')")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ArtefactError(f"{path}: no {MANIFEST}; not a plantwatch {what} folder")
    if mpath.stat().st_size > max_bytes:
        raise ArtefactError(f"{mpath}: manifest is implausibly large")
    try:
        manifest = json.loads(mpath.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtefactError(f"{mpath}: corrupted manifest ({exc})") from None
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if found != fmt:
        hint = (hints or {}).get(str(found), "")
        raise ArtefactError(f"{path}: not a plantwatch {what} (format {found!r}){hint}")
    if manifest.get("format_version") != version:
        raise ArtefactError(
            f"{path}: {what} format version {manifest.get('format_version')!r}; this plantwatch reads {version}"
        )
    return manifest


def read_weights(path: str | Path, manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The folder's tensors, once their SHA-256 matches the manifest's."""
    path = Path(path)
    try:
        expected = manifest["weights"]["sha256"]
    except (KeyError, TypeError):
        raise ArtefactError(f"{path}: manifest is missing or has a bad field: weights.sha256") from None
    wpath = path / WEIGHTS
    if not wpath.is_file():
        raise ArtefactError(f"{path}: {WEIGHTS} is missing")
    if sha256_file(wpath) != expected:
        raise ArtefactError(f"{wpath}: weights do not match the manifest's SHA-256 (corrupted or tampered with)")
    try:
        return load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtefactError(f"{wpath}: unreadable weights: {exc}") from None
