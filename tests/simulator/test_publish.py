"""Publishing to a real mosquitto: exact payloads, steady sequence, ground truth, clean stops."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from monitor import wire
from monitor.cli import main
from monitor.errors import InputError
from monitor.mqtt import connect, make_client, settings_from_url
from simulator.faults import FaultTarget, bind_faults, parse_fault
from simulator.process import AssetProcess, make_assets
from simulator.publish import Publisher
from tests.conftest import Mosquitto


class Subscriber:
    """Collects every telemetry and drill message of the broker, subscribed before publishing starts."""

    def __init__(self, url: str, prefix: str = "plant") -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        settings = settings_from_url(url)
        self.client = make_client(settings)
        filters = [(wire.telemetry_filter(prefix), 1), (wire.drill_filter(prefix), 1)]
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(filters)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message
        connect(self.client, settings)
        self.client.loop_start()
        assert self._subscribed.wait(5), "subscriber never got SUBACK"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def wait_for(self, done: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            time.sleep(0.02)

    def telemetry(self, asset: str) -> list[wire.Telemetry]:
        topic = wire.telemetry_topic("plant", asset)
        with self._lock:
            out = [wire.decode_telemetry(p) for t, p in self.messages if t == topic]
        assert all(isinstance(m, wire.Telemetry) for m in out)
        return out  # type: ignore[return-value]

    def drills(self, asset: str) -> list[wire.DrillTruth]:
        topic = wire.drill_topic("plant", asset)
        with self._lock:
            out = [wire.decode_drill(p) for t, p in self.messages if t == topic]
        assert all(isinstance(m, wire.DrillTruth) for m in out)
        return out  # type: ignore[return-value]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_each_asset_publishes_its_process_samples_with_contiguous_seq_and_steady_ts(
    mosquitto: Mosquitto, subscriber: Subscriber
) -> None:
    began = time.time()
    with capture_logs() as events:
        summary = Publisher(
            settings_from_url(mosquitto.url), make_assets(3, seed=2, n_sensors=9), rate=20, duration=1.0
        ).run()
    assert summary.messages == {"asset01": 20, "asset02": 20, "asset03": 20} and summary.unconfirmed == 0
    assert [e["event"] for e in events] == ["publish_started", "publish_finished"]  # none per message
    assert events[1]["messages"] == summary.messages
    subscriber.wait_for(lambda: len(subscriber.messages) >= 60)
    for i in (1, 2, 3):
        p = AssetProcess(2, i, 9)
        got = subscriber.telemetry(p.name)
        assert [m.seq for m in got] == list(range(20))
        assert np.allclose(np.diff([m.ts for m in got]), 1 / 20) and abs(got[0].ts - began) < 1.0
        assert all(list(m.values) == p.sensors for m in got)
        assert np.array_equal(np.array([list(m.values.values()) for m in got]), p.generate(20))  # exact


def test_setting_the_stop_event_ends_a_run_cleanly_with_everything_delivered(
    mosquitto: Mosquitto, subscriber: Subscriber
) -> None:
    stop = threading.Event()
    publisher = Publisher(
        settings_from_url(mosquitto.url), make_assets(2, seed=0, n_sensors=8), rate=50, stop_event=stop
    )
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(publisher.run()))
    thread.start()
    time.sleep(0.6)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    (summary,) = result
    assert summary.unconfirmed == 0 and min(summary.messages.values()) >= 10
    subscriber.wait_for(lambda: len(subscriber.messages) >= sum(summary.messages.values()))
    for asset, n in summary.messages.items():
        assert [m.seq for m in subscriber.telemetry(asset)] == list(range(n))


def test_a_fault_announces_its_truth_with_the_ts_of_its_first_and_last_samples(
    mosquitto: Mosquitto, subscriber: Subscriber
) -> None:
    assets = make_assets(2, seed=1, n_sensors=10)
    (inj,) = bind_faults([parse_fault("bias@5+10:asset=asset02,magnitude=4")], [FaultTarget.of(a) for a in assets], 1)
    summary = Publisher(settings_from_url(mosquitto.url), assets, rate=50, duration=0.6, injections=[inj]).run()
    assert summary.faults == [inj.injection_id] and summary.truths == 2
    subscriber.wait_for(lambda: len(subscriber.messages) >= 62)
    got = subscriber.telemetry("asset02")
    start, end = subscriber.drills("asset02")
    assert (start.phase, end.phase) == ("start", "end") and start.sensors == inj.sensors
    assert start.start == end.start == got[5].ts and start.end == end.end == got[14].ts
    clean = AssetProcess(1, 2, 10)
    values = np.array([list(m.values.values()) for m in got])
    shift = values - clean.generate(30)
    assert np.allclose(shift[5:15][:, inj.columns], 4 * clean.sensor_std[inj.columns])
    assert not shift[:5].any() and not shift[15:].any() and subscriber.drills("asset01") == []


def test_a_fault_cut_short_by_the_end_of_the_run_gets_an_end_truth_at_the_last_sample(
    mosquitto: Mosquitto, subscriber: Subscriber
) -> None:
    (asset,) = make_assets(1, seed=0, n_sensors=8)
    injections = bind_faults([parse_fault("noise@3+1000")], [FaultTarget.of(asset)], 0)
    Publisher(settings_from_url(mosquitto.url), [asset], rate=50, duration=0.2, injections=injections).run()
    subscriber.wait_for(lambda: len(subscriber.messages) >= 12)
    got = subscriber.telemetry("asset01")
    start, end = subscriber.drills("asset01")
    assert len(got) == 10 and start.end > got[-1].ts and end.phase == "end" and end.end == got[-1].ts
    assert end.params == {"truncated": True} and start.params == {}


def test_a_dead_broker_holds_at_most_max_inflight_messages_and_stop_still_works(mosquitto: Mosquitto) -> None:
    stop = threading.Event()
    publisher = Publisher(
        settings_from_url(mosquitto.url),
        make_assets(1, seed=0, n_sensors=8),
        rate=100,
        stop_event=stop,
        max_inflight=10,
        drain_timeout=0.5,
    )
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(publisher.run()))
    thread.start()
    time.sleep(0.3)
    mosquitto.stop()
    time.sleep(0.5)
    began = time.monotonic()
    stop.set()
    thread.join(5)
    # drain_timeout (0.5 s) + paho's reconnect back-off sleep (at most 1 s) + slack for a busy machine
    assert not thread.is_alive() and time.monotonic() - began < 3.0
    (summary,) = result
    assert 0 < summary.unconfirmed <= 10


def test_sigterm_stops_the_simulate_command_cleanly(mosquitto: Mosquitto, subscriber: Subscriber) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "monitor",
            "--log-json",
            "simulate",
            "--broker",
            mosquitto.url,
            "--assets",
            "2",
            "--sensors",
            "8",
            "--rate",
            "20",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        subscriber.wait_for(lambda: len(subscriber.messages) >= 10, timeout=10)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err.decode()
    assert b'"publish_finished"' in err and b'"unconfirmed": 0' in err
    seqs = [m.seq for m in subscriber.telemetry("asset01")]
    assert len(seqs) >= 5 and seqs == list(range(len(seqs)))


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "nothing to do"),
        (["--to-csv", "x.csv"], "--to-csv needs --samples"),
        (["--to-csv", "x.csv", "--samples", "0"], "--samples must be >= 1"),
        (["--to-csv", "x.csv", "--samples", "5", "--broker", "mqtt://127.0.0.1:1"], "--broker does not apply"),
        (["--to-csv", "x.csv", "--samples", "5", "--replay", "d.csv"], "--replay does not apply"),
        (["--broker", "mqtt://127.0.0.1:1", "--samples", "5"], "--samples only applies to --to-csv"),
        (["--broker", "mqtt://127.0.0.1:1", "--loop"], "--loop only applies to --replay"),
        (["--broker", "mqtt://127.0.0.1:1", "--sensors", "7"], "--sensors must be 8-60"),
        (["--broker", "mqtt://127.0.0.1:1", "--sensors", "61"], "--sensors must be 8-60"),
        (["--broker", "mqtt://127.0.0.1:1", "--rate", "0"], "--rate must be > 0"),
        (["--broker", "mqtt://127.0.0.1:1", "--rate", "nan"], "--rate must be > 0"),
        (["--broker", "mqtt://127.0.0.1:1", "--assets", "0"], "--assets must be >= 1"),
        (["--broker", "mqtt://127.0.0.1:1", "--seed", "-1"], "--seed must be >= 0"),
        (["--broker", "mqtt://127.0.0.1:1", "--asset-index", "2"], "--asset-index only applies to --to-csv"),
        (["--broker", "mqtt://127.0.0.1:1", "--asset", "x"], "--asset only applies to --replay"),
        (["--broker", "mqtt://127.0.0.1:1", "--duration", "-1"], "--duration must be > 0"),
        (["--broker", "mqtt://127.0.0.1:1", "--prefix", "a/+"], "--prefix: invalid topic prefix"),
        (["--broker", "mqtt://127.0.0.1:1", "--fault", "bias@1"], "expected START\\+DURATION"),
        (["--broker", "mqtt://127.0.0.1:1", "--sensors", "T*"], "column patterns only apply to --replay"),
        (["--broker", "mqtt://127.0.0.1:1", "--missing", "drop"], "--missing only applies to --replay"),
    ],
)
def test_bad_option_combinations_exit_2_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("plantwatch simulate: error: ")
    assert __import__("re").search(message, err), err


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rate": 0.0}, "rate must be > 0"),
        ({"rate": 1.0, "duration": 0.0}, "duration must be > 0"),
        ({"rate": 1.0, "prefix": "a/#"}, "invalid topic prefix"),
        ({"rate": 1.0, "qos": 3}, "qos must be 0, 1 or 2"),
    ],
)
def test_publisher_refuses_bad_settings_at_construction(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        Publisher(settings_from_url("mqtt://127.0.0.1:1"), make_assets(1, 0, 8), **kwargs)


def test_publisher_refuses_two_sources_with_the_same_asset_name() -> None:
    with pytest.raises(InputError, match="distinct asset names"):
        Publisher(settings_from_url("mqtt://127.0.0.1:1"), [AssetProcess(0, 1, 8), AssetProcess(1, 1, 8)], rate=1)
