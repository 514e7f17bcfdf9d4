"""One well-formed but poisonous message must never blind an asset (issue 14): a real monitor process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor import wire
from tests.monitor.conftest import MonitorProcess, Plant, sample, values, wait_until

POISON = (1e39, 1e20, -1e308, 1e100, 1e38)


def _send(plant: Plant, asset: str, seq: int, row: np.ndarray) -> Any:
    return plant.raw(wire.telemetry_topic("plant", asset), wire.encode_telemetry(1.7e9 + seq, seq, values(row)))


def test_the_same_fault_is_detected_after_a_poisoned_value_as_without_it(
    mosquitto: Any, model_dir: Path, plant: Plant, monitor_process: Callable[..., MonitorProcess]
) -> None:
    """boiler and pump get the same rows; pump also gets five messages with a value like 1e39 or -1e308.

    Each is rejected as out_of_range (never scored: no alarm, no NaN or Inf score), and a fault that
    follows raises the same alarm on pump as on boiler, with the same scores: the stream is as if the
    poison had never been sent.
    """
    mon = monitor_process(["--broker", mosquitto.url, "--model", str(model_dir)])
    mon.wait_ready(30)
    rows = plant.rows[:80].copy()
    rows[50:, 2] += 40.0  # P1 jumps far outside normal operation from row 50 on
    seq = {"boiler": 0, "pump": 0}

    def send(asset: str, row: np.ndarray) -> Any:
        info = _send(plant, asset, seq[asset], row)
        seq[asset] += 1
        return info

    info = None
    for i, row in enumerate(rows[:50]):
        send("boiler", row)
        info = send("pump", row)
        if i == 20:
            for v in POISON:
                poisoned = row.copy()
                poisoned[0] = v
                send("pump", poisoned)
    info.wait_for_publish(5)
    wait_until(lambda: sample(mon.port, "plantwatch_messages_total", {"asset": "boiler"}) == 50, 15, "normal rows")
    wait_until(lambda: sample(mon.port, "plantwatch_messages_total", {"asset": "pump"}) == 50, 15, "normal rows")
    for asset in ("boiler", "pump"):
        assert sample(mon.port, "plantwatch_alarms_total", {"asset": asset}) == 0, asset
        assert np.isfinite(sample(mon.port, "plantwatch_anomaly_score", {"asset": asset}) or np.nan), asset
    reject = {"reason": "out_of_range"}
    assert sample(mon.port, "plantwatch_messages_rejected_total", reject) == len(POISON)
    for row in rows[50:]:
        send("boiler", row)
        send("pump", row).wait_for_publish(5)
    wait_until(lambda: sample(mon.port, "plantwatch_messages_total", {"asset": "pump"}) == 80, 15, "fault rows")
    wait_until(lambda: sample(mon.port, "plantwatch_messages_total", {"asset": "boiler"}) == 80, 15, "fault rows")
    for name in ("plantwatch_alarms_total", "plantwatch_alarm"):
        assert sample(mon.port, name, {"asset": "pump"}) == sample(mon.port, name, {"asset": "boiler"}) == 1, name
    for name in ("plantwatch_anomaly_score", "plantwatch_threshold"):
        pump, boiler = (sample(mon.port, name, {"asset": a}) for a in ("pump", "boiler"))
        assert pump == pytest.approx(boiler, rel=1e-4), name
    lines = [e for e in mon.events() if e["event"] == "message_rejected" and e["reason"] == "out_of_range"]
    assert lines and lines[0]["source"] == "pump" and lines[0]["detail"].startswith("T1=1e+39 outside [")
