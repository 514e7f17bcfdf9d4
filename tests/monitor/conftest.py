"""Fixtures for the daemon tests: a tiny trained model, a telemetry publisher, monitor processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from monitor import wire
from simulator.local_broker import free_port

SENSORS = ["T1", "T2", "P1", "P2", "F1", "L1"]
_MIX = np.random.default_rng(99).normal(0, 1, (2, len(SENSORS)))


def history(n: int, seed: int) -> np.ndarray:
    """Normal operation: two AR(1) latents mixed into the sensors, plus noise."""
    rng = np.random.default_rng(seed)
    lat = np.zeros((n, 2))
    for t in range(1, n):
        lat[t] = 0.9 * lat[t - 1] + rng.normal(0, 0.3, 2)
    return lat @ _MIX + rng.normal(0, 0.1, (n, len(SENSORS))) + np.arange(len(SENSORS)) * 10.0


def train(tmp: Path, seed: int) -> Path:
    """``plantwatch train``'s code on 400 synthetic rows with the smallest settings (a second or two).

    In process and on one torch thread: training asks for two, which crawl (30 s instead of 2 s)
    when the two cores of the test host are busy with other work.
    """
    import torch

    from monitor import csvio
    from monitor.detector import TrainSettings, train_table

    csv = tmp / "history.csv"
    with open(csv, "w") as f:
        f.write("timestamp," + ",".join(SENSORS) + "\n")
        for i, row in enumerate(history(400, 0)):
            f.write(f"{1.7e9 + i}," + ",".join(repr(float(v)) for v in row) + "\n")
    out = tmp / f"model-{seed}"
    torch.set_num_threads(1)
    with mock.patch.object(torch, "set_num_threads"):
        # a strict target: these tests send a few dozen normal rows and expect no false alarm among them
        ts = TrainSettings(seed=seed, window=4, folds=2, max_epochs=3, false_alarm_rate=0.001)
        train_table(csvio.read_table(csv), ts, out)
    return out


@pytest.fixture
def cli_logging() -> Iterator[None]:
    """``cli.main`` configures structlog for the process (onto the test's stderr): undo it afterwards."""
    import structlog

    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(tmp_path_factory.mktemp("pw-model"), seed=0)


@pytest.fixture(scope="session")
def second_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same sensors, other seed: a different model (weights hash) for reload tests."""
    return train(tmp_path_factory.mktemp("pw-model2"), seed=1)


def values(row: np.ndarray) -> dict[str, float]:
    return {s: float(v) for s, v in zip(SENSORS, row)}


class Plant:
    """Publishes telemetry at QoS 1 and waits for the broker's acknowledgements."""

    def __init__(self, port: int, prefix: str = "plant") -> None:
        self.prefix = prefix
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-plant-{os.getpid()}-{id(self)}")
        self.client.max_inflight_messages_set(500)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.rows = history(5000, seed=7)

    def raw(self, topic: str, payload: bytes | str, retain: bool = False) -> paho.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=1, retain=retain)

    def send(
        self, asset: str, seq: int, ts: float | None = None, row: np.ndarray | None = None
    ) -> paho.MQTTMessageInfo:
        row = self.rows[seq % len(self.rows)] if row is None else row
        payload = wire.encode_telemetry(time.time() if ts is None else ts, seq, values(row))
        return self.raw(wire.telemetry_topic(self.prefix, asset), payload)

    def send_many(self, asset: str, seqs: range, ts0: float | None = None) -> None:
        """``ts0``: payload ts = ts0 + seq (a redelivery repeats it); default: the time of sending."""
        info = None
        for seq in seqs:
            info = self.send(asset, seq, None if ts0 is None else ts0 + seq)
        if info is not None:
            info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def plant(mosquitto: Any) -> Iterator[Plant]:
    p = Plant(mosquitto.port)
    yield p
    p.close()


def retained(port: int, topic: str, timeout: float = 5.0) -> bytes | None:
    """The retained message on ``topic`` (None if there is none)."""
    got: list[bytes] = []
    done = threading.Event()
    c = paho.Client(CallbackAPIVersion.VERSION2)
    c.on_connect = lambda cl, *a: cl.subscribe(topic, qos=1)
    c.on_message = lambda cl, u, m: (got.append(m.payload), done.set())
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(timeout)
    c.disconnect()
    c.loop_stop()
    return got[0] if got else None


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read().decode()
    except OSError:
        return 0, ""


def sample(port: int, name: str, labels: dict[str, str] | None = None) -> float | None:
    """One sample's value from /metrics of a monitor process."""
    from prometheus_client.parser import text_string_to_metric_families

    code, text = http_get(port, "/metrics")
    if code != 200:
        return None
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and s.labels == (labels or {}):
                return float(s.value)
    return None


class MonitorProcess:
    """``python -m monitor monitor ...`` as a real process, its JSON log lines kept."""

    def __init__(
        self, workdir: Path, args: list[str], env: dict[str, str] | None = None, name: str = "monitor"
    ) -> None:
        self.port = free_port()
        self.log_path = workdir / f"{name}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (the process writes to it)
        cmd = [
            sys.executable,
            "-m",
            "monitor",
            "--log-level",
            "debug",
            "--log-json",
            "monitor",
            "--metrics-port",
            str(self.port),
            *args,
        ]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=self._log, env={**os.environ, **(env or {})})

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            assert self.proc.poll() is None, f"monitor exited early: {self.log_path.read_text()[-2000:]}"
            return http_get(self.port, "/readyz")[0] == 200

        wait_until(ready, timeout, "/readyz 200")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - t0

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


@pytest.fixture
def monitor_process(tmp_path: Path) -> Iterator[Callable[..., MonitorProcess]]:
    """Start monitor processes; every one is ended by its pid at teardown."""
    started: list[MonitorProcess] = []

    def start(args: list[str], env: dict[str, str] | None = None, name: str = "monitor") -> MonitorProcess:
        p = MonitorProcess(tmp_path, args, env, name)
        started.append(p)
        return p

    yield start
    for p in started:
        p.close()
