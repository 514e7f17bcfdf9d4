"""Model versions end to end: a real mosquitto, the monitor as a process on a model store, the CLI as operators run it."""

from __future__ import annotations

import json
import math
import shutil
import time
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


def send(plant: Plant, asset: str, seqs: range, shift: float = 0.0) -> None:
    info = None
    for seq in seqs:
        row = plant.rows[seq % len(plant.rows)].copy()
        row[2] += shift
        info = plant.send(asset, seq, row=row)
    assert info is not None
    info.wait_for_publish(10)


def test_a_challenger_scored_in_shadow_compared_promoted_and_rolled_back_with_no_message_lost(
    tmp_path: Path,
    mosquitto: Any,
    model_dir: Path,
    second_model_dir: Path,
    plant: Plant,
    monitor_process: Callable[..., MonitorProcess],
    capsys: pytest.CaptureFixture[str],
    cli_logging: None,
) -> None:
    store = make_store(tmp_path, model_dir, second_model_dir)
    cfg = config(tmp_path, mosquitto, store)
    cfg.write_text(cfg.read_text() + "shadow_interval = 0.5\n")
    mon = monitor_process(["--config", str(cfg)])
    mon.wait_ready()
    code, out = run(capsys, "models", "shadow", str(store), "v0002")
    assert code == 0, out
    wait_until(lambda: any(e.get("event") == "config_reloaded" for e in mon.events()), 10, "the challenger loaded")

    # the same rows to both models: a real asset in normal operation, a drill copy with a fault from row 60
    send(plant, "boiler", range(0, 90))
    send(plant, "boiler-drill", range(0, 60))
    t_fault = time.time()
    send(plant, "boiler-drill", range(60, 90), shift=40.0)
    for asset in ("boiler", "boiler-drill"):
        wait_until(lambda a=asset: metric(mon, "plantwatch_messages_total", asset=a) == 90, 10, f"90 of {asset}")
        assert metric(mon, "plantwatch_challenger_info", asset=asset, model="boiler", version="v0002") == 1
    ch = metric(mon, "plantwatch_anomaly_score", asset="boiler-drill", model="challenger")
    champ = metric(mon, "plantwatch_anomaly_score", asset="boiler-drill")
    assert ch > metric(mon, "plantwatch_threshold", asset="boiler-drill", model="challenger")  # it would alarm
    assert ch != champ  # another model's score, not a copy
    # only the champion's episode reached the alarm counter and topic: the challenger raises none
    assert metric(mon, "plantwatch_alarms_total", asset="boiler-drill") == 1

    report = tmp_path / "drill.json"
    report.write_text(
        json.dumps({"injections": [{"asset": "boiler-drill", "start_ts": t_fault, "start": 0.0, "end": 40.0}]})
    )

    def compared() -> dict[str, Any]:
        args = ["models", "compare", str(store), "--state-dir", str(tmp_path / "state"), "--json"]
        code, out = run(capsys, *args, "--drill-report", str(report))
        return json.loads(out) if code == 0 else {}

    c = wait_until(lambda: (r := compared()) and r["rows"] == 180 and r, 10, "180 rows in the shadow records")
    assert (c["champion"]["version"], c["challenger"]["version"]) == ("v0001", "v0002")
    assert c["drills"] == 1 and c["champion"]["drills_detected"] == 1 and c["challenger"]["drills_detected"] == 1
    assert c["assets"] == ["boiler", "boiler-drill"]
    code, out = run(capsys, "models", "compare", str(store), "--state-dir", str(tmp_path / "state"))
    assert code == 0 and "champion v0001 vs challenger v0002 on the same 180 rows" in out, out

    # promotion while messages flow; then a rollback: every message scored, once
    code, out = run(capsys, "models", "promote", str(store), "v0002", "--reason", "shadow ok")
    assert code == 0, out
    send(plant, "boiler", range(90, 150))
    wait_until(version(mon, "v0002"), 10, "v0002 picked up")
    assert metric(mon, "plantwatch_challenger_info", asset="boiler", model="boiler", version="v0002") == 0
    taken = [e for e in mon.events() if e.get("event") == "challenger_stream_taken_over"]
    assert [e["asset"] for e in taken] == ["boiler"]  # warmed up in shadow; the drill copy's was in alarm
    code, out = run(capsys, "models", "rollback", str(store), "--reason", "test")
    assert code == 0 and "v0002 -> v0001" in out, out
    send(plant, "boiler", range(150, 200))
    wait_until(version(mon, "v0001"), 10, "rolled back")
    wait_until(lambda: metric(mon, "plantwatch_messages_total", asset="boiler") == 200, 10, "200 scored")
    assert metric(mon, "plantwatch_sequence_gaps_total", asset="boiler") == 0
    rejected = [e for e in mon.events() if e.get("event") == "message_rejected"]
    assert rejected == []
    assert mon.stop()[0] == 0


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two stream states differ: ints, flags and structure exactly, floats to 1e-6 relative (a forward
    pass over a batch of another size may round differently in the last float32 bits)."""
    import numpy as np

    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(a)} vs {sorted(b)}"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, float | list | np.ndarray) and isinstance(b, float | list | np.ndarray):
        x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        ok = x.shape == y.shape and np.allclose(x, y, rtol=1e-6, atol=1e-9, equal_nan=True)
        return [] if ok else [f"{path}: {a} vs {b}"[:300]]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def test_the_champion_scores_learns_and_alarms_exactly_as_it_would_without_a_challenger(
    tmp_path: Path, mosquitto: Any, model_dir: Path, second_model_dir: Path, plant: Plant
) -> None:
    """Two monitors on the same rows, the champion's folder the same: one also shadows a challenger. The
    champion's exported values and its whole stream state (threshold learning, alarm state) are equal."""
    from monitor import config as configuration
    from monitor.daemon import Monitor

    store = make_store(tmp_path, model_dir, second_model_dir)
    model_store.set_pointer(store, "challenger", "v0002")
    mons = []
    for name, model in (("with", str(store)), ("without", str(model_dir))):
        doc = {
            "instance": name,
            "broker": {"url": mosquitto.url, "client_id": f"t-{name}"},
            "metrics": {"port": 0},
            "models": {"default": model},
        }
        mon = Monitor(configuration.parse(doc))
        mon.start()
        mons.append(mon)
    try:
        for mon in mons:
            assert mon.wait_ready(10)
        send(plant, "boiler", range(0, 60))
        send(plant, "boiler", range(60, 100), shift=40.0)  # raises an alarm: threshold and alarm state at work
        send(plant, "boiler", range(100, 160))

        def value(mon: Monitor, name: str, **labels: str) -> float:
            v = mon.registry.get_sample_value(name, {"asset": "boiler", **labels})
            return math.nan if v is None else v

        for mon in mons:
            wait_until(lambda m=mon: value(m, "plantwatch_messages_total") == 160, 10, "160 scored")
        with_, without = mons
        assert value(with_, "plantwatch_anomaly_score", model="challenger") > 0  # it did shadow
        assert math.isnan(value(without, "plantwatch_anomaly_score", model="challenger"))
        for metric_name in ("plantwatch_anomaly_score", "plantwatch_threshold", "plantwatch_alarms_total"):
            assert value(with_, metric_name) == pytest.approx(value(without, metric_name), rel=1e-6), metric_name
        assert value(with_, "plantwatch_alarms_total") >= 1
        states = [m.worker._assets["boiler"].stream.to_state() for m in mons if m.worker is not None]
        assert len(states) == 2 and differences(states[0], states[1]) == []
    finally:
        for mon in mons:
            mon.stop()
