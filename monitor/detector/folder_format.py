"""Artefact folders (detector models, GANs): safetensors weights + a JSON manifest.

One discipline for every folder plantwatch writes, so none can be half
written or silently swapped: the folder is built in a temporary sibling and
renamed into place; the manifest is fsynced and names its format, version
and the weights' SHA-256, and carries the SHA-256 of its own content (which
includes the weights' hash, so one hash seals both): an edited manifest (a
threshold multiplied by 1000, a sensor renamed) is refused on load just like
edited weights. Reading checks all of that before a single tensor is loaded,
and tensors come from safetensors (never pickle).

The seal detects edits and corruption, not a forger who recomputes it: who
can write the folder can also write a new model. Keep model folders
writable by the trainer only (the systemd unit reads them read-only).

>>> m = seal({"format": "x", "weights": {"sha256": "ab"}})
>>> check_seal(m) is None, check_seal({**m, "format": "y"})
(True, 'does not match its SHA-256')
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
#: the manifest key holding the SHA-256 of the rest of the manifest
SEAL = "manifest_sha256"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _content_hash(manifest: dict[str, Any]) -> str:
    """SHA-256 of the manifest without its seal, in a canonical JSON form (sorted keys, no spaces).

    JSON floats round-trip exactly through Python's repr, so the hash of a
    manifest read back equals the hash of the one written.
    """
    body = {k: v for k, v in manifest.items() if k != SEAL}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def seal(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with :data:`SEAL` set to the hash of everything else in it."""
    return {**manifest, SEAL: _content_hash(manifest)}


def check_seal(manifest: dict[str, Any]) -> str | None:
    """None when the manifest's seal matches its content, else what is wrong with it."""
    found = manifest.get(SEAL)
    if found is None:
        return "has no content hash"
    try:
        expected = _content_hash(manifest)
    except (TypeError, ValueError):  # NaN or a non-JSON value smuggled in: it was not written by write()
        return "does not match its SHA-256"
    return None if found == expected else "does not match its SHA-256"


def write(path: str | Path, weights: dict[str, torch.Tensor], manifest: dict[str, Any], force: bool = False) -> Path:
    """Write ``weights`` and ``manifest`` (plus the weights' hash) atomically; refuse to overwrite unless ``force``."""
    path = Path(path)
    if path.exists() and not force:
        raise ArtefactError(f"{path}: already exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_file({k: v.detach().contiguous() for k, v in weights.items()}, str(tmp / WEIGHTS))
        manifest = seal({**manifest, "weights": {"file": WEIGHTS, "sha256": sha256_file(tmp / WEIGHTS)}})
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
    problem = check_seal(manifest)
    if problem == "has no content hash":
        made = manifest.get("plantwatch_version", "an unknown version")
        raise ArtefactError(
            f"{mpath}: written by plantwatch {made}, before manifests were hashed; "
            f"make the {what} again with '{made_by}' (this plantwatch refuses unhashed manifests)"
        )
    if problem is not None:
        raise ArtefactError(
            f"{mpath}: manifest {problem} (edited or corrupted); "
            f"restore the folder or make the {what} again with '{made_by}'"
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
