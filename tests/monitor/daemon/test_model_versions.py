"""Model versions end to end: a real mosquitto, the monitor as a process on a model store, the CLI as operators run it."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from monitor import cli
from monitor.detector import model_store
from tests.monitor.conftest import MonitorProcess, Plant, sample, wait_until


def config(tmp: Path, mosquitto: Any, store: Path) -> Path:
    path = tmp / "plantwatch.toml"
    path.write_text(
        f'instance = "mv"\nstate_dir = "{tmp / "state"}"\n'
        f'[broker]\nurl = "{mosquitto.url}"\nclient_id = "mv-{tmp.name}"\n'
        f'[models]\ndefault = "{store}"\n'
    )
    return path


def make_store(tmp: Path, *folders: Path) -> Path:
    store = tmp / "models" / "boiler"
    store.mkdir(parents=True)
    for i, f in enumerate(folders, 1):
        shutil.copytree(f, store / f"v{i:04d}")
    model_store.switch(store, "v0001", "initial", "test", "first")
    return store


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def metric(mon: MonitorProcess, name: str, **labels: str) -> float:
    return sample(mon.port, name, labels) or 0.0


def version(mon: MonitorProcess, v: str) -> Callable[[], bool]:
    return lambda: metric(mon, "plantwatch_model_info", asset="boiler", model="boiler", version=v) == 1


def test_a_promotion_and_a_rollback_are_picked_up_without_losing_a_message(
    tmp_path: Path,
    mosquitto: Any,
    model_dir: Path,
    second_model_dir: Path,
    plant: Plant,
    monitor_process: Callable[..., MonitorProcess],
    capsys: pytest.CaptureFixture[str],
    cli_logging: None,
) -> None:
    store = make_store(tmp_path, model_dir, second_model_dir, second_model_dir)
    (store / "v0003" / "weights.safetensors").write_bytes(b"broken")
    mon = monitor_process(["--config", str(config(tmp_path, mosquitto, store))])
    mon.wait_ready()
    plant.send_many("boiler", range(0, 40))
    wait_until(version(mon, "v0001"), 10, "v0001 scoring")

    code, out = run(capsys, "models", "promote", str(store), "v0002", "--reason", "test")
    assert code == 0, out
    plant.send_many("boiler", range(40, 80))  # sent while the monitor swaps
    wait_until(version(mon, "v0002"), 10, "v0002 picked up")
    wait_until(lambda: metric(mon, "plantwatch_messages_total", asset="boiler") == 80, 10, "80 scored")

    # a pointer moved by hand to a version that does not load: counted, logged, the running model stays
    model_store.set_pointer(store, "current", "v0003")
    wait_until(lambda: metric(mon, "plantwatch_config_reloads_total", result="failed") == 1, 10, "failed reload")
    assert version(mon, "v0002")()
    model_store.set_pointer(store, "current", "v0002")

    code, out = run(capsys, "models", "rollback", str(store))
    assert code == 0 and "v0002 -> v0001" in out, out
    plant.send_many("boiler", range(80, 120))
    wait_until(version(mon, "v0001"), 10, "rolled back")
    wait_until(lambda: metric(mon, "plantwatch_messages_total", asset="boiler") == 120, 10, "120 scored")
    assert metric(mon, "plantwatch_sequence_gaps_total", asset="boiler") == 0
    # promote, the broken pointer, rollback (moving back to the running v0002 is no change)
    assert sum(e.get("event") == "model_pointer_changed" for e in mon.events()) == 3
    assert mon.stop()[0] == 0
