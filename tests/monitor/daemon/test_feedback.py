"""Operator feedback end to end: an alarm's episode id, 'plantwatch feedback' to a monitor process, the next train."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from monitor import wire
from tests.cli import PLANTWATCH
from tests.monitor.conftest import SENSORS, MonitorProcess, Plant, retained, sample, wait_until
from tests.monitor.daemon.test_suppression import ANOMALY, config, metric, run

T0 = 1.7e9  # payload time of seq 0: the history file below has the same clock


def test_feedback_is_checked_stored_counted_and_used_by_the_next_train(
    tmp_path: Path,
    mosquitto: Any,
    model_dir: Path,
    plant: Plant,
    monitor_process: Callable[..., MonitorProcess],
    capsys: pytest.CaptureFixture[str],
    cli_logging: None,
) -> None:
    mon = monitor_process(["--config", str(config(tmp_path, mosquitto, model_dir))])
    mon.wait_ready()
    info = None
    for seq in range(0, 60):
        row = plant.rows[seq].copy()
        row[2] += ANOMALY if seq >= 30 else 0.0
        info = plant.send("boiler", seq, ts=T0 + seq, row=row)
    assert info is not None
    info.wait_for_publish(10)

    # the tiny model may raise a false alarm on the normal rows before the fault: the fault's is the one here
    def fault_alarm() -> list[dict[str, Any]]:
        return [e for e in mon.events() if e["event"] == "alarm_raised" and e["started"] >= T0 + 30]

    wait_until(lambda: bool(fault_alarm()), 20, "an alarm")
    ev = wire.decode_alarm(retained(mosquitto.port, wire.alarm_topic("plant", "boiler")) or b"")
    assert isinstance(ev, wire.AlarmEvent) and ev.state == "raised" and ev.episode.startswith("e-")
    assert sample(mon.port, "plantwatch_alarm_episode", {"asset": "boiler", "episode": ev.episode}) == 1
    assert fault_alarm()[0]["episode"] == ev.episode

    broker = ("--broker", mosquitto.url)
    code, out = run(capsys, "feedback", "--asset", "boiler", "--episode", "e-000000000000", "--label", "confirmed",
                    *broker)  # fmt: skip
    assert code == 2 and "unknown_episode" in out and "no episode e-000000000000" in out, out
    code, out = run(capsys, "feedback", "--asset", "boil*", "--episode", ev.episode, "--label", "confirmed", *broker)
    assert code == 2 and "not a pattern" in out, out
    assert metric(mon, "plantwatch_feedback_total", asset="boiler", label="confirmed") == 0
    code, out = run(capsys, "feedback", "--asset", "boiler", "--episode", ev.episode, "--label", "false_alarm",
                    "--note", "P1 was recalibrated", "--by", "kim", *broker)  # fmt: skip
    assert code == 0 and "labelled false_alarm" in out, out
    assert metric(mon, "plantwatch_feedback_total", asset="boiler", label="false_alarm") == 1
    assert metric(mon, "plantwatch_control_requests_total", result="unknown_episode") == 1
    stored = [json.loads(line) for line in (tmp_path / "state" / "feedback-sup.jsonl").read_text().splitlines()]
    assert len(stored) == 1 and stored[0]["episode"] == ev.episode and stored[0]["note"] == "P1 was recalibrated"
    assert stored[0]["start"] == T0 + 30 and stored[0]["end"] == T0 + 59  # still active: to its last message
    assert stored[0]["by"] == "anonymous (kim)"

    # the labels of a restarted monitor are counted again; a confirmed label of another episode is left out
    assert mon.stop()[0] == 0
    with open(tmp_path / "state" / "feedback-sup.jsonl", "a") as f:
        f.write(json.dumps({"asset": "boiler", "episode": "e-other", "label": "confirmed",
                            "start": T0 + 100, "end": T0 + 119}) + "\n")  # fmt: skip
    history = tmp_path / "boiler.csv"
    with open(history, "w") as f:
        f.write("timestamp," + ",".join(SENSORS) + "\n")
        for seq in range(0, 300):
            f.write(f"{T0 + seq}," + ",".join(repr(float(v)) for v in plant.rows[seq]) + "\n")
    proc = subprocess.run(
        [*PLANTWATCH, "train", "--data", str(history), "--out", str(tmp_path / "m2"), "--epochs", "2",
         "--folds", "2", "--window", "4", "--feedback", str(tmp_path / "state" / "feedback-sup.jsonl"),
         "--fault-library", str(tmp_path / "faults.csv")],
        capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"false alarm {ev.episode}: " in proc.stderr and "row(s) kept as normal operation" in proc.stderr
    assert "confirmed fault e-other: 20 row(s) left out of training" in proc.stderr
    manifest = json.loads((tmp_path / "m2" / "manifest.json").read_text())
    assert manifest["training"]["rows"] == 280
    library = (tmp_path / "faults.csv").read_text().splitlines()  # the layout 'plantwatch gan train' reads
    assert library[0] == "timestamp," + ",".join(SENSORS) + ",fault" and len(library) == 301
    assert [line.rsplit(",", 1)[1] for line in library[1:]].count("1") == 20
    from simulator.gan.data import load_csv  # what 'plantwatch gan train --data faults.csv' reads

    faults = load_csv([tmp_path / "faults.csv"], "faults.csv")
    assert [len(e.values) for e in faults.episodes] == [20] and faults.sensors == SENSORS
