"""``plantwatch models``: a store's versions, promotion checked to load, rollback along the history."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from monitor import cli
from monitor.detector import model_store
from monitor.errors import ArtefactError


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def make_store(tmp: Path, *folders: Path) -> Path:
    store = tmp / "models" / "boiler"
    store.mkdir(parents=True)
    for i, f in enumerate(folders, 1):
        shutil.copytree(f, store / f"v{i:04d}")
    model_store.switch(store, "v0001", "initial", "test", "first")
    return store


def test_promote_rollback_and_a_version_that_does_not_load(
    tmp_path: Path,
    model_dir: Path,
    second_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    cli_logging: None,
) -> None:
    store = make_store(tmp_path, model_dir, second_model_dir, second_model_dir)
    bad = store / "v0003" / "manifest.json"
    doc = json.loads(bad.read_text())
    doc["calibration"]["threshold"] *= 1000  # edited: the seal no longer matches
    bad.write_text(json.dumps(doc))
    assert model_store.resolve(store) == store / "current"
    assert model_store.name_and_version(store) == ("boiler", "v0001", store)

    code, out = run(capsys, "models", "promote", str(store), "v0003")
    assert code == 2 and out.count("\n") == 1 and "v0003 does not load, nothing changed" in out, out
    assert model_store.pointer(store) == "v0001" and len(model_store.history(store)) == 1
    code, out = run(capsys, "models", "promote", str(store), "v0009")
    assert code == 2 and "no version v0009" in out

    code, out = run(capsys, "models", "shadow", str(store), "v0002")
    assert code == 0 and model_store.pointer(store, "challenger") == "v0002"
    code, out = run(capsys, "models", "promote", str(store), "v0002", "--reason", "better", "--by", "ann")
    assert code == 0 and "promoted v0001 -> v0002" in out, out
    assert model_store.pointer(store) == "v0002" and model_store.pointer(store, "challenger") is None
    assert os.readlink(store / "current") == "v0002"  # relative: the store can move

    code, out = run(capsys, "models", "list", str(tmp_path / "models"))
    assert code == 0 and "boiler: current v0002, challenger -, 3 version(s)" in out, out
    code, out = run(capsys, "models", "list", str(store))
    assert "v0002    current" in out and "UNREADABLE" in out, out
    code, out = run(capsys, "models", "show", str(store))
    assert code == 0 and "promote: v0001 -> v0002 by ann: better" in out, out

    code, out = run(capsys, "models", "rollback", str(store), "--reason", "night alarms")
    assert code == 0 and "rolled back v0002 -> v0001" in out, out
    assert model_store.pointer(store) == "v0001"
    code, out = run(capsys, "models", "rollback", str(store))  # v0001 was the first: nothing before it
    assert code == 2 and "nothing to roll back to" in out, out
    assert [c["action"] for c in model_store.history(store)] == ["initial", "promote", "rollback"]


def test_lineage_rolls_back_step_by_step(tmp_path: Path) -> None:
    store = tmp_path / "s"
    for v in ("v0001", "v0002", "v0003"):
        (store / v).mkdir(parents=True)
    model_store.switch(store, "v0001", "initial", "", "")
    model_store.switch(store, "v0002", "promote", "", "")
    model_store.switch(store, "v0003", "promote", "", "")
    assert model_store.rollback_target(store) == "v0002"
    model_store.switch(store, "v0002", "rollback", "", "")
    assert model_store.rollback_target(store) == "v0001"  # not back to v0003
    model_store.switch(store, "v0001", "rollback", "", "")
    with pytest.raises(ArtefactError, match="nothing to roll back to"):
        model_store.rollback_target(store)
    assert model_store.next_version(store) == "v0004"
    with pytest.raises(ArtefactError, match="no version v0007"):
        model_store.set_pointer(store, "current", "v0007")


def test_train_into_a_store_then_as_challenger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_logging: None
) -> None:
    from tests.monitor.conftest import SENSORS, history

    csv = tmp_path / "h.csv"
    rows = history(300, 0)
    csv.write_text(
        "timestamp,"
        + ",".join(SENSORS)
        + "\n"
        + "".join(f"{1.7e9 + i}," + ",".join(repr(float(v)) for v in r) + "\n" for i, r in enumerate(rows))
    )
    store = tmp_path / "boiler"
    small = ("--window", "4", "--folds", "2", "--epochs", "2")
    code, out = run(capsys, "train", "--data", str(csv), "--store", str(store), *small)
    assert code == 0 and "v0001 is the current version" in out, out
    code, out = run(capsys, "train", "--data", str(csv), "--store", str(store), "--challenger", *small)
    assert code == 0 and "v0002 is the challenger" in out, out
    assert model_store.versions(store) == ["v0001", "v0002"]
    assert (model_store.pointer(store), model_store.pointer(store, "challenger")) == ("v0001", "v0002")
    code, out = run(capsys, "score", "--model", str(store), "--data", str(csv), "--out", str(tmp_path / "s.csv"))
    assert code == 0 and len((tmp_path / "s.csv").read_text().splitlines()) == 301, out  # the current version
    code, out = run(capsys, "train", "--data", str(csv), "--store", str(store), "--exclude", "L1", *small)
    assert code == 0 and "v0003 added" in out, out
    code, out = run(capsys, "models", "shadow", str(store), "v0003")
    assert code == 2 and "reads other sensors than v0001 (5 vs 6)" in out, out
    assert model_store.pointer(store, "challenger") == "v0002"
    code, out = run(capsys, "train", "--data", str(csv), "--out", str(tmp_path / "m"), "--challenger", *small)
    assert code == 2 and "--challenger needs --store" in out
