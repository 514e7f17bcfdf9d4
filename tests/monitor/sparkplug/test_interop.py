"""A Sparkplug plant simulated by pysparkplug (not our code), monitored end to end through real mosquitto.

The edge node runs as its own process from the virtual environment ``tests/run`` creates
(``spb_edge.py``); the monitor is ``python -m monitor monitor`` with ``[source] format = "sparkplug"``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor import wire
from tests.monitor.conftest import SENSORS, MonitorProcess, history, retained, sample, wait_until

HERE = Path(__file__).resolve().parent
VENV = Path(os.environ.get("PLANTWATCH_SPARKPLUG_VENV", Path.home() / ".cache" / "plantwatch" / "sparkplug-interop"))
ASSET = "gw1/dev1"
NORMAL = history(3000, seed=7)[300:1500]  # rows on which the tiny test model raises no alarm
T1_STD = float(NORMAL[:, 0].std())


class Edge:
    """spb_edge.py as a process: one JSON command a line in, one answer a line out."""

    def __init__(self, port: int, node: str = "gw1", device: str = "dev1") -> None:
        python = VENV / "bin" / "python"
        if not python.exists():
            pytest.fail(
                f"no Sparkplug interop venv at {VENV}: run the tests through 'bash tests/run', which creates it"
            )
        self.proc = subprocess.Popen(
            [str(python), str(HERE / "spb_edge.py"), str(port), "g1", node, device, ",".join(SENSORS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def __call__(self, op: str, **kw: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the pysparkplug edge node exited ({self.proc.poll()})"
        return dict(json.loads(line))

    def rows(self, rows: np.ndarray, **kw: Any) -> dict[str, Any]:
        return self("rows", rows=rows.tolist(), **kw)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def edges(mosquitto: Any) -> Iterator[Callable[..., Edge]]:
    started: list[Edge] = []

    def start(**kw: Any) -> Edge:
        e = Edge(mosquitto.port, **kw)
        started.append(e)
        return e

    yield start
    for e in started:
        e.close()


def sparkplug_monitor(
    start: Callable[..., MonitorProcess], url: str, model: Path, rebirth: bool = True
) -> MonitorProcess:
    env = {
        "PLANTWATCH_SOURCE_FORMAT": "sparkplug",
        "PLANTWATCH_SOURCE_GROUP_IDS": "g1",
        "PLANTWATCH_SOURCE_REBIRTH": "true" if rebirth else "false",
        "PLANTWATCH_SOURCE_REBIRTH_INTERVAL": "1",
    }
    mon = start(["--broker", url, "--model", str(model)], env=env)
    mon.wait_ready()
    return mon


def value(mon: MonitorProcess, name: str, **labels: str) -> float:
    v = sample(mon.port, name, labels or None)
    return -1.0 if v is None else v


def alarm_state(port: int) -> dict[str, Any]:
    raw = retained(port, wire.alarm_topic("plant", ASSET))
    assert raw is not None, "no retained alarm state"
    return dict(json.loads(raw))


@pytest.mark.slow
def test_a_pysparkplug_plant_is_scored_alarms_on_a_fault_goes_offline_when_killed_and_returns_on_rebirth(
    mosquitto: Any, model_dir: Path, monitor_process: Callable[..., MonitorProcess], edges: Callable[..., Edge]
) -> None:
    mon = sparkplug_monitor(monitor_process, mosquitto.url, model_dir)
    edge = edges()
    assert edge("connect", values=NORMAL[0].tolist())["connected"]
    # normal operation, report-by-exception by alias only, past seq 255 (it wraps)
    assert edge.rows(NORMAL[1:300], rate=200)["sent"] == 299
    wait_until(lambda: value(mon, "plantwatch_messages_total", asset=ASSET) >= 300, 20, "300 rows scored")
    assert value(mon, "plantwatch_anomaly_score", asset=ASSET) >= 0
    assert value(mon, "plantwatch_asset_online", asset=ASSET) == 1
    assert value(mon, "plantwatch_sequence_gaps_total", asset=ASSET) == 0
    assert value(mon, "plantwatch_alarms_total", asset=ASSET) == 0
    # a fault: T1 biased by 8 standard deviations
    fault = NORMAL[300:360].copy()
    fault[:, 0] += 8 * T1_STD
    edge.rows(fault, rate=200)
    wait_until(lambda: value(mon, "plantwatch_alarms_total", asset=ASSET) >= 1, 20, "the fault's alarm")
    assert alarm_state(mosquitto.port)["state"] == "raised"
    edge.rows(NORMAL[360:560], rate=200)
    wait_until(lambda: value(mon, "plantwatch_alarm", asset=ASSET) == 0, 20, "the alarm to clear")
    alarms = value(mon, "plantwatch_alarms_total", asset=ASSET)
    # killed: the broker publishes the will (NDEATH, this session's bdSeq); the asset goes offline, no alarm
    edge.kill()
    wait_until(lambda: value(mon, "plantwatch_asset_online", asset=ASSET) == 0, 20, "the asset offline")
    state = alarm_state(mosquitto.port)
    assert (state["state"], state["reason"]) == ("offline", "node_death")
    assert value(mon, "plantwatch_alarm", asset=ASSET) == 0
    # a new session of the same edge node: births restart the stream (warm-up visible), no false alarm
    edge = edges()
    assert edge("connect", values=NORMAL[700].tolist())["connected"]
    wait_until(lambda: value(mon, "plantwatch_asset_online", asset=ASSET) == 1, 20, "the asset back online")
    assert value(mon, "plantwatch_asset_warming_up", asset=ASSET) == 1
    assert alarm_state(mosquitto.port)["state"] == "online"
    scored = value(mon, "plantwatch_messages_total", asset=ASSET)
    edge.rows(NORMAL[701:900], rate=200)
    wait_until(lambda: value(mon, "plantwatch_messages_total", asset=ASSET) >= scored + 199, 20, "rows after rebirth")
    assert value(mon, "plantwatch_asset_warming_up", asset=ASSET) == 0
    assert value(mon, "plantwatch_alarms_total", asset=ASSET) == alarms
    # a lost message (seq gap): counted, and the monitor asks for a rebirth, which pysparkplug answers
    edge("ddata", metrics=[{"alias": 2, "value": float(NORMAL[900, 1])}], seq="skip")
    wait_until(lambda: value(mon, "plantwatch_sequence_gaps_total", asset=ASSET) == 1, 10, "the gap counted")
    wait_until(lambda: edge("commands")["rebirths"] == 1, 10, "the rebirth request")
    assert value(mon, "plantwatch_sparkplug_rebirth_requests_total") == 1
    edge.rows(NORMAL[901:950], rate=200)
    wait_until(lambda: value(mon, "plantwatch_messages_total", asset=ASSET) >= scored + 249, 20, "rows after it")
    assert value(mon, "plantwatch_alarms_total", asset=ASSET) == alarms
    assert value(mon, "plantwatch_messages_rejected_total", reason="data_before_birth") == 0
    assert mon.stop()[0] == 0


@pytest.mark.slow
def test_every_bad_sparkplug_message_from_pysparkplug_is_counted_under_its_reason_and_the_rest_still_scores(
    mosquitto: Any, model_dir: Path, monitor_process: Callable[..., MonitorProcess], edges: Callable[..., Edge]
) -> None:
    mon = sparkplug_monitor(monitor_process, mosquitto.url, model_dir, rebirth=False)  # no births in between
    edge = edges()
    bd_seq = edge("connect", values=NORMAL[0].tolist())["bd_seq"]
    edge.rows(NORMAL[1:20], rate=200)

    def rejected(reason: str) -> float:
        return value(mon, "plantwatch_messages_rejected_total", reason=reason)

    t1 = {"alias": 1, "value": float(NORMAL[20, 0])}
    cases = [
        ("undecodable", lambda: edge("raw", topic="spBv1.0/g1/DDATA/gw1/dev1", hex="ffffffff")),
        ("data_before_birth", lambda: edge("ddata", metrics=[t1], device="ghost")),
        ("unknown_alias", lambda: edge("ddata", metrics=[{"alias": 99, "value": 1.0}])),
        ("datatype_changed", lambda: edge("ddata", metrics=[{"alias": 1, "datatype": 9, "value": 1.5}], dtypes=True)),
        ("duplicate", lambda: edge("ddata", metrics=[t1], seq="again")),
        ("out_of_order", lambda: edge("ddata", metrics=[t1], seq="back")),
        ("stale_death", lambda: edge("ndeath", bd_seq=(bd_seq + 100) % 256)),
        ("unknown_sensor", lambda: edge("dbirth", device="dev2", metrics=[[s, 1.0] for s in [*SENSORS, "extra"]])),
        ("missing_sensor", lambda: edge("dbirth", device="dev3", metrics=[[s, 1.0] for s in SENSORS[:-1]])),
    ]
    for reason, send in cases:
        before = rejected(reason)
        send()
        wait_until(lambda r=reason, b=before: rejected(r) == b + 1, 10, f"{reason} counted")
    scored = value(mon, "plantwatch_messages_total", asset=ASSET)
    edge.rows(NORMAL[21:60], rate=200)
    wait_until(lambda: value(mon, "plantwatch_messages_total", asset=ASSET) >= scored + 39, 10, "rows after them")
    assert value(mon, "plantwatch_asset_online", asset=ASSET) == 1
    assert mon.stop()[0] == 0
    assert sys.executable != str(VENV / "bin" / "python")  # the publisher really ran in the other environment
