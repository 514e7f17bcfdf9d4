"""Model folders round-trip exactly and refuse anything corrupted, tampered with or foreign."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from monitor.detector import folder_format
from monitor.detector import model_folder as artefact
from monitor.errors import ArtefactError
from tests.monitor.detector.fixtures import history, tiny_model  # noqa: F401


@pytest.fixture
def copy(tiny_model: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "m"
    shutil.copytree(tiny_model, dst)
    return dst


def test_round_trip_gives_identical_scores(tiny_model: Path, tmp_path: Path) -> None:
    """Saving a loaded model and loading it again scores exactly the same."""
    det = artefact.load(tiny_model)
    artefact.save(tmp_path / "again", det, {})
    det2 = artefact.load(tmp_path / "again")
    x = history(120, seed=4)
    np.testing.assert_array_equal(det.score(det.new_stream(), x).score, det2.score(det2.new_stream(), x).score)


def test_manifest_records_what_a_maintainer_needs(tiny_model: Path) -> None:
    m = json.loads((tiny_model / "manifest.json").read_text())
    for key in (
        "sensors",
        "scaler",
        "architecture",
        "calibration",
        "data_fingerprint",
        "plantwatch_version",
        "weights",
    ):
        assert key in m
    assert m["architecture"]["window"] == 4


def test_tampered_weights_are_refused(copy: Path) -> None:
    data = bytearray((copy / "weights.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (copy / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(ArtefactError, match="SHA-256"):
        artefact.load(copy)


def test_truncated_weights_are_refused(copy: Path) -> None:
    w = copy / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(ArtefactError):
        artefact.load(copy)


def write_manifest(folder: Path, m: dict[str, object], reseal: bool) -> None:
    (folder / "manifest.json").write_text(json.dumps(folder_format.seal(m) if reseal else m))


def test_weights_swapped_with_their_hash_are_still_checked_against_the_architecture(copy: Path, tmp_path: Path) -> None:
    """Weights of another shape, even with a matching (resealed) hash, do not load."""
    import torch
    from safetensors.torch import save_file

    save_file({"encoder.0.weight": torch.zeros(3, 3)}, str(copy / "weights.safetensors"))
    m = json.loads((copy / "manifest.json").read_text())
    m["weights"]["sha256"] = artefact.sha256_file(copy / "weights.safetensors")
    write_manifest(copy, m, reseal=True)
    with pytest.raises(ArtefactError, match="architecture"):
        artefact.load(copy)


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["calibration"].update(threshold=m["calibration"]["threshold"] * 1000),
        lambda m: m["sensors"].reverse(),
        lambda m: m["detector"]["alarm"].update(on_delay=10**6),
        lambda m: m.update(data_fingerprint="0" * 64),
    ],
)
def test_any_edit_of_the_manifest_is_refused(copy: Path, edit: object) -> None:
    """The manifest is sealed with the weights: a threshold x1000 (or any other edit) does not load."""
    m = json.loads((copy / "manifest.json").read_text())
    edit(m)  # type: ignore[operator]
    write_manifest(copy, m, reseal=False)
    with pytest.raises(ArtefactError, match=r"manifest does not match its SHA-256 \(edited or corrupted\)"):
        artefact.load(copy)


def test_reformatting_the_manifest_without_changing_a_value_still_loads(copy: Path) -> None:
    """The seal covers the content, not the bytes: re-indenting the JSON is not an edit."""
    m = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps(m, indent=4, sort_keys=True))
    assert artefact.load(copy).sensors


def test_a_folder_from_before_manifests_were_hashed_says_to_retrain(copy: Path) -> None:
    m = json.loads((copy / "manifest.json").read_text())
    del m[folder_format.SEAL]
    write_manifest(copy, m, reseal=False)
    with pytest.raises(
        ArtefactError, match=r"before manifests were hashed; make the model again with 'plantwatch train'"
    ):
        artefact.load(copy)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(format="something-else"), "not a plantwatch model"),
        (lambda m: m.update(format_version=99), "format version"),
        (lambda m: m["scaler"].update(mean=[0.0]), "scaler.mean"),
        (lambda m: m.pop("sensors"), "missing or has a bad field"),
    ],
)
def test_foreign_or_mismatched_manifests_are_refused(copy: Path, edit: object, message: str) -> None:
    """Resealed after the edit, so each structural check is reached (a plain edit stops at the seal)."""
    m = json.loads((copy / "manifest.json").read_text())
    edit(m)  # type: ignore[operator]
    write_manifest(copy, m, reseal=True)
    with pytest.raises(ArtefactError, match=message):
        artefact.load(copy)


def test_corrupted_manifest_and_missing_folder(copy: Path, tmp_path: Path) -> None:
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(ArtefactError, match="corrupted manifest"):
        artefact.load(copy)
    with pytest.raises(ArtefactError, match="not a model folder"):
        artefact.load(tmp_path / "nowhere")


def test_existing_folder_is_not_overwritten_without_force(tiny_model: Path, copy: Path) -> None:
    det = artefact.load(tiny_model)
    with pytest.raises(ArtefactError, match="already exists"):
        artefact.save(copy, det, {})
