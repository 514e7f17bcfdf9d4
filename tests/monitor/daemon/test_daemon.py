"""The monitor end to end, in process, against a real mosquitto: scoring, rejections, probes, reconnects, reload."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from structlog.testing import capture_logs

from monitor import config, wire
from monitor.daemon import Monitor
from tests.monitor.conftest import SENSORS, Plant, http_get, retained, values, wait_until


def make(mosquitto: Any, model: Path, **over: Any) -> Monitor:
    doc: dict[str, Any] = {
        "instance": "t",
        "broker": {"url": mosquitto.url, "client_id": f"t-{time.monotonic_ns()}"},
        "metrics": {"port": 0},
        "models": {"default": str(model)},
    }
    for key, value in over.items():
        section, _, name = key.partition("__")
        if name:
            doc.setdefault(section, {})[name] = value
        else:
            doc[section] = value
    return Monitor(config.parse(doc))


@pytest.fixture
def started(mosquitto: Any, model_dir: Path) -> Iterator[Monitor]:
    mon = make(mosquitto, model_dir)
    mon.start()
    assert mon.wait_ready(10), mon.readiness_problems()
    yield mon
    mon.stop()


def value(mon: Monitor, name: str, **labels: str) -> float:
    v = mon.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def scored(mon: Monitor, asset: str) -> float:
    return value(mon, "plantwatch_messages_total", asset=asset)


def rejected(mon: Monitor, reason: str) -> float:
    return value(mon, "plantwatch_messages_rejected_total", reason=reason)


def test_valid_telemetry_is_scored_and_the_endpoints_answer(started: Monitor, plant: Plant) -> None:
    """Every published sample is scored once; /metrics, /healthz and /readyz answer 200."""
    plant.send_many("boiler", range(40))
    plant.send_many("pump", range(25))
    wait_until(lambda: scored(started, "boiler") == 40 and scored(started, "pump") == 25, 10, "scoring")
    port = started.metrics_port
    code, text = http_get(port, "/metrics")
    assert code == 200 and 'plantwatch_messages_total{asset="boiler"} 40.0' in text
    for reason in wire.REJECTION_REASONS:
        assert f'plantwatch_messages_rejected_total{{reason="{reason}"}} 0.0' in text
    assert http_get(port, "/healthz") == (200, "ok\n") and http_get(port, "/readyz") == (200, "ok\n")
    assert http_get(port, "/nope")[0] == 404
    assert value(started, "plantwatch_sequence_gaps_total", asset="boiler") == 0
    assert value(started, "plantwatch_broker_connected") == 1
    assert value(started, "plantwatch_asset_warming_up", asset="boiler") == 0
    assert value(started, "plantwatch_scoring_lag_seconds_count", stage="receive") == 65
    snap = {a.asset: a for a in started.snapshot().assets}
    assert snap["boiler"].messages == 40 and snap["boiler"].threshold > 0 and len(snap["boiler"].top_sensors) == 3


def test_gaps_are_counted_by_missed_numbers_and_redeliveries_are_not_scored_twice(
    started: Monitor, plant: Plant
) -> None:
    plant.send_many("boiler", range(0, 10), ts0=1.7e9)
    plant.send_many("boiler", range(15, 20), ts0=1.7e9)  # 10-14 never sent: 5 missed
    plant.send_many("boiler", range(17, 19), ts0=1.7e9)  # a redelivery of 17 and 18
    wait_until(lambda: rejected(started, "duplicate") == 2, 10, "duplicates counted")
    assert scored(started, "boiler") == 15
    assert value(started, "plantwatch_sequence_gaps_total", asset="boiler") == 5


def test_a_restarted_publisher_with_newer_timestamps_is_scored_not_dropped(started: Monitor, plant: Plant) -> None:
    plant.send_many("boiler", range(100, 110))
    with capture_logs() as logs:
        plant.send_many("boiler", range(0, 5))  # seq restarts, ts moves on
        wait_until(lambda: scored(started, "boiler") == 15, 10, "scoring after restart")
    assert any(e["event"] == "sequence_restarted" for e in logs)
    assert rejected(started, "duplicate") == 0


def test_no_single_seq_or_ts_makes_the_following_valid_messages_unscorable(started: Monitor, plant: Plant) -> None:
    """The recipes of issue 14, each on its own asset; before, each was counted as duplicate and dropped."""
    now = time.time()

    def wait_scored(asset: str, n: int) -> None:
        wait_until(lambda: scored(started, asset) == n, 10, f"{n} of {asset} scored")

    # seq 60 arriving before 50-59 (separate batches): 50-59 are late, not duplicates
    plant.send_many("boiler", range(0, 50), ts0=now - 100)
    plant.send_many("boiler", range(60, 61), ts0=now - 100)
    wait_scored("boiler", 51)
    plant.send_many("boiler", range(50, 60), ts0=now - 100)
    wait_scored("boiler", 61)
    assert value(started, "plantwatch_late_messages_total", asset="boiler") == 10
    # seq 50 with ts +10 years, then the publisher restarts at 0: the restarted stream is scored
    plant.send_many("pump", range(0, 50), ts0=now - 100)
    plant.send("pump", 50, ts=now + 10 * 365 * 86400)
    plant.send_many("pump", range(0, 20), ts0=now - 40)
    wait_scored("pump", 70)
    # the same with a ts just inside the skew window: one message cannot hold the restart detection hostage
    plant.send_many("fan", range(0, 50), ts0=now - 100)
    plant.send("fan", 50, ts=now + 200)
    plant.send_many("fan", range(0, 20), ts0=now - 40)
    wait_scored("fan", 71)
    # seq 1,000,000: the next 300 valid messages are scored, and no gaps of 999,959
    plant.send_many("valve", range(0, 41), ts0=now - 400)
    plant.send("valve", 1_000_000, ts=now - 358)
    plant.send_many("valve", range(41, 341), ts0=now - 400)
    wait_scored("valve", 341)
    assert value(started, "plantwatch_sequence_gaps_total", asset="valve") == 0
    assert rejected(started, "ts_out_of_range") == 1 and rejected(started, "seq_jump") == 1
    assert rejected(started, "duplicate") == 0


def test_retained_telemetry_is_scored_only_when_fresh_and_junk_is_counted_once(
    mosquitto: Any, model_dir: Path, plant: Plant, tmp_path: Path
) -> None:
    """Gateways that publish with the retain flag leave a sample at the broker, handed to every new
    subscription: a stale one (or junk) is counted once as retained_stale, never scored, and not again at
    the next start; a fresh one is scored once."""
    now = time.time()
    topic = wire.telemetry_topic
    plant.raw(topic("plant", "boiler"), wire.encode_telemetry(now - 3600, 7, values(plant.rows[0])), retain=True)
    plant.raw(topic("plant", "pump"), b"{not json", retain=True)
    plant.raw(topic("plant", "fan"), wire.encode_telemetry(now - 1, 3, values(plant.rows[1])), retain=True)
    plant.raw(topic("plant", "fan"), wire.encode_telemetry(now, 4, values(plant.rows[2]))).wait_for_publish(5)
    for run in range(2):
        mon = make(mosquitto, model_dir, state_dir=str(tmp_path / "state"), instance="retain")
        mon.start()
        try:
            assert mon.wait_ready(10)
            plant.send_many("fan", range(10 + run * 10, 20 + run * 10))
            expected = 11 if run == 0 else 10  # the fresh retained sample once, then the ten live ones

            def fan_scored(m: Monitor = mon, n: int = expected) -> bool:
                return scored(m, "fan") == n

            wait_until(fan_scored, 10, "fan scored")
            time.sleep(0.3)
            assert rejected(mon, "retained_stale") == (2 if run == 0 else 0), run
            assert rejected(mon, "not_json") == 0 and rejected(mon, "duplicate") == 0
            assert scored(mon, "boiler") == 0 and scored(mon, "pump") == 0
        finally:
            mon.stop()


def test_a_restart_continues_each_stream_from_the_state_directory_unless_its_model_changed(
    mosquitto: Any, model_dir: Path, second_model_dir: Path, plant: Plant, tmp_path: Path
) -> None:
    """Same model: redeliveries are duplicates and the stream goes on (no warm-up). Other weights: the
    stream starts afresh (said in the log), the seq bookkeeping is kept all the same."""
    state = {"state_dir": str(tmp_path / "state"), "instance": "cont"}
    outcomes = []
    for model in (model_dir, model_dir, second_model_dir):
        mon = make(mosquitto, model, **state)
        with capture_logs() as logs:
            mon.start()
            try:
                assert mon.wait_ready(10)
                base = len(outcomes) * 10
                plant.send_many("boiler", range(base, base + 20), ts0=1.7e9)  # 10 seen before, 10 new
                wait_until(lambda m=mon: scored(m, "boiler") + rejected(m, "duplicate") == 20, 10, "all handled")
                outcomes.append((scored(mon, "boiler"), rejected(mon, "duplicate")))
            finally:
                mon.stop()
        restored = [e for e in logs if e["event"] == "asset_restored"]
        refused = [e for e in logs if e["event"] == "stream_not_restored"]
        if len(outcomes) == 1:
            assert not restored
        elif len(outcomes) == 2:
            assert restored[0]["stream"] is True and restored[0]["last_seq"] == 19 and not refused
        else:
            assert restored[0]["stream"] is False and "another model" in refused[0]["reason"]
    assert outcomes == [(20, 0), (10, 10), (10, 10)]


def test_an_alarm_is_published_retained_as_an_alarm_event(started: Monitor, plant: Plant, mosquitto: Any) -> None:
    plant.send_many("boiler", range(0, 30))
    wait_until(lambda: scored(started, "boiler") == 30, 10, "warm-up")
    rows = plant.rows[30:60].copy()
    rows[:, 2] += 40.0  # P1 jumps far outside normal operation
    info = None
    with capture_logs() as logs:
        for i, row in enumerate(rows):
            info = plant.send("boiler", 30 + i, row=row)
        assert info is not None
        info.wait_for_publish(5)
        wait_until(lambda: value(started, "plantwatch_alarms_total", asset="boiler") >= 1, 10, "an alarm")
    assert value(started, "plantwatch_alarm", asset="boiler") == 1
    assert value(started, "plantwatch_top_sensor_contribution", asset="boiler", sensor="P1") > 0
    raised = [e for e in logs if e["event"] == "alarm_raised"]
    assert raised and "P1" in raised[-1]["top_sensors"]
    event = wire.decode_alarm(retained(mosquitto.port, wire.alarm_topic("plant", "boiler")) or b"")
    assert isinstance(event, wire.AlarmEvent) and event.asset == "boiler" and event.state == "raised"
    assert "P1" in event.top_sensors and event.score > event.threshold


def fuzz_cases() -> list[tuple[str, str, bytes]]:
    """(expected reason, topic, payload): one or more per reason the wire can carry."""
    good = values(np.arange(len(SENSORS), dtype=float))
    body = {"ts": 1.7e9, "seq": 1, "values": good}

    def j(**kw: Any) -> bytes:
        return orjson.dumps({k: v for k, v in {**body, **kw}.items() if v is not ...})

    t = wire.telemetry_topic("plant", "pump-1")
    return [
        ("bad_topic", "plant/_monitor/telemetry", j()),
        ("bad_topic", "plant/ pump-1/telemetry", j()),
        ("too_large", t, b" " * (wire.MAX_PAYLOAD_BYTES + 1)),
        ("not_json", t, b"{"),
        ("not_json", t, b"\xff\xfe"),
        ("not_json", t, b""),
        ("not_json", t, b'{"ts":1,"seq":1,"values":{"T1":NaN}}'),
        ("not_object", t, b"[1,2]"),
        ("not_object", t, j(values=[1, 2])),
        ("missing_field", t, j(ts=...)),
        ("missing_field", t, j(values=...)),
        ("bad_ts", t, j(ts=-1)),
        ("bad_ts", t, j(ts="now")),
        ("bad_seq", t, j(seq=1.5)),
        ("bad_seq", t, j(seq=True)),
        ("bad_seq", t, j(seq=2**64 - 1)),  # was scored, with gaps of 1.8e19 and a float seq in the log
        ("ts_out_of_range", t, j(ts=time.time() + 10 * 365 * 86400)),  # held restarts hostage
        ("seq_jump", t, j(seq=10**12)),  # made the next valid messages look like redeliveries
        ("non_numeric", t, j(values={**good, "T1": "1.0"})),
        ("non_numeric", t, j(values={**good, "T2": None})),
        ("out_of_range", t, j(values={**good, "T1": 1e39})),  # blinded the asset for good (issue 14)
        ("out_of_range", t, j(values={**good, "T2": -1e308})),
        ("out_of_range", t, j(values={**good, "L1": 500.0})),  # within the model's bounds, above [sensors.L1] max
        ("unknown_sensor", t, j(values={**good, "X9": 1.0})),
        ("missing_sensor", t, j(values={k: v for k, v in good.items() if k != "L1"})),
        ("unknown_asset", wire.telemetry_topic("plant", "boiler"), j()),
        ("too_many_assets", wire.telemetry_topic("plant", "pump-9"), j()),
    ]


def test_fuzzed_payloads_interleaved_with_valid_ones_are_each_counted_by_reason(
    mosquitto: Any, model_dir: Path
) -> None:
    """The monitor stays alive, every bad message is counted under its reason, every valid one is scored."""
    mon = make(
        mosquitto,
        model_dir,
        models={"assets": {"pump-*": str(model_dir)}, "unknown_asset": "reject"},
        max_assets=2,
        sensors={"L1": {"max": 100.0}},
    )
    mon.start()
    plant = Plant(mosquitto.port)
    try:
        assert mon.wait_ready(10)
        cases = fuzz_cases()
        rng = np.random.default_rng(3)
        garbage = [bytes(rng.integers(0, 256, int(n))) for n in rng.integers(1, 300, 40)]
        seq = {"pump-1": 0, "pump-2": 0}
        with capture_logs() as logs:
            info = None
            for i, (_, topic, payload) in enumerate(cases + [("", "", g) for g in garbage]):
                asset = "pump-1" if i % 2 else "pump-2"
                plant.send(asset, seq[asset])
                seq[asset] += 1
                info = plant.raw(topic or wire.telemetry_topic("plant", asset), payload)
            assert info is not None
            info.wait_for_publish(10)
            total = len(cases) + len(garbage) + sum(seq.values())
            wait_until(
                lambda: (
                    sum(rejected(mon, r) for r in wire.REJECTION_REASONS)
                    + scored(mon, "pump-1")
                    + scored(mon, "pump-2")
                    >= total
                ),
                15,
                "every message counted",
            )
        assert mon.ready() and not mon.health_problems()
        assert scored(mon, "pump-1") == seq["pump-1"] and scored(mon, "pump-2") == seq["pump-2"]
        expected: dict[str, int] = {}
        for reason, _, _ in cases:
            expected[reason] = expected.get(reason, 0) + 1
        for reason, n in expected.items():
            assert rejected(mon, reason) >= n, reason
        assert rejected(mon, "non_finite") == 0 and rejected(mon, "duplicate") == 0
        random_bad = sum(rejected(mon, r) for r in wire.REJECTION_REASONS) - len(cases)
        assert random_bad == len(garbage)
        sampled = [e for e in logs if e["event"] == "message_rejected"]
        assert {e["reason"] for e in sampled} >= set(expected)
        assert len(sampled) <= len(wire.REJECTION_REASONS)  # rate-limited: one line per reason
        assert value(mon, "plantwatch_callback_errors_total", callback="message") == 0
    finally:
        plant.close()
        mon.stop()


def test_broker_killed_and_restarted_on_the_same_port_reconnects_and_scores_again(
    started: Monitor, mosquitto: Any
) -> None:
    plant = Plant(mosquitto.port)
    plant.send_many("boiler", range(10))
    wait_until(lambda: scored(started, "boiler") == 10, 10, "first scores")
    plant.close()
    mosquitto.stop()
    wait_until(lambda: value(started, "plantwatch_broker_connected") == 0, 10, "disconnect noticed")
    assert http_get(started.metrics_port, "/readyz")[0] == 503
    assert http_get(started.metrics_port, "/healthz")[0] == 200
    t0 = time.monotonic()
    mosquitto.start()
    wait_until(started.ready, 15, "reconnected and subscribed")
    plant = Plant(mosquitto.port)
    try:
        plant.send_many("boiler", range(10, 20))
        wait_until(lambda: scored(started, "boiler") == 20, 15 - (time.monotonic() - t0), "scoring again")
    finally:
        plant.close()
    assert value(started, "plantwatch_broker_connects_total") >= 2


def test_reload_with_a_bad_model_keeps_the_old_one_and_a_new_model_resets_only_its_assets(
    mosquitto: Any, model_dir: Path, second_model_dir: Path, tmp_path: Path
) -> None:
    doc = {
        "instance": "r",
        "broker": {"url": mosquitto.url, "client_id": "t-reload"},
        "metrics": {"port": 0},
        "models": {"default": str(model_dir), "assets": {"pump-*": str(model_dir)}},
    }
    mon = Monitor(config.parse(doc))
    mon.start()
    plant = Plant(mosquitto.port)
    try:
        assert mon.wait_ready(10)
        plant.send_many("boiler", range(20))
        plant.send_many("pump-1", range(20))
        wait_until(lambda: scored(mon, "boiler") == 20 and scored(mon, "pump-1") == 20, 10, "scoring")
        broken = tmp_path / "broken"
        shutil.copytree(model_dir, broken)
        (broken / "weights.safetensors").write_bytes(b"not weights")
        with capture_logs() as logs:
            assert not mon.reload(config.parse({**doc, "models": {"default": str(broken)}}))
        assert [e for e in logs if e["event"] == "reload_failed" and "SHA-256" in e["reason"]]
        assert value(mon, "plantwatch_config_reloads_total", result="failed") == 1
        plant.send_many("boiler", range(20, 25))
        wait_until(lambda: scored(mon, "boiler") == 25, 10, "old model still scoring")
        new = {**doc, "models": {"default": str(model_dir), "assets": {"pump-*": str(second_model_dir)}}}
        assert mon.reload(config.parse(new))
        plant.send_many("pump-1", range(20, 23))
        plant.send_many("boiler", range(25, 28))
        # pump-1's stream restarts with its new model; its messages counter goes on (a counter, not a stream state)
        wait_until(lambda: scored(mon, "pump-1") == 23 and scored(mon, "boiler") == 28, 10, "scoring after reload")
        snap = {a.asset: a for a in mon.snapshot().assets}
        assert snap["pump-1"].warming_up and snap["pump-1"].version != snap["boiler"].version
        assert not snap["boiler"].warming_up
        assert value(mon, "plantwatch_config_reloads_total", result="ok") == 1
    finally:
        plant.close()
        mon.stop()


def test_mqtt5_sessions_keep_what_was_published_while_the_monitor_was_stopped(
    mosquitto: Any, model_dir: Path, plant: Plant
) -> None:
    """protocol = 5: clean_start=False with a Session Expiry Interval, like clean_session=False on 3.1.1."""
    doc = {
        "instance": "v5",
        "broker": {"url": mosquitto.url, "client_id": "t-v5", "protocol": 5, "session_expiry": 60},
        "metrics": {"port": 0},
        "models": {"default": str(model_dir)},
    }
    first = Monitor(config.parse(doc))
    first.start()
    try:
        assert first.wait_ready(10)
        plant.send_many("boiler", range(10))
        wait_until(lambda: scored(first, "boiler") == 10, 10, "scoring over MQTT 5")
    finally:
        first.stop()
    assert retained(mosquitto.port, wire.status_topic("plant", "v5")) == wire.STATUS_OFFLINE
    plant.send_many("boiler", range(10, 30))  # nobody connected: queued in the session
    second = Monitor(config.parse(doc))
    second.start()
    try:
        wait_until(lambda: scored(second, "boiler") == 20, 10, "the queued messages")
        assert value(second, "plantwatch_sequence_gaps_total", asset="boiler") == 0
    finally:
        second.stop()


def test_run_forever_gives_the_callers_signal_handlers_back(mosquitto: Any, model_dir: Path) -> None:
    """An embedding caller's SIGTERM/SIGINT/SIGHUP handlers are restored once the monitor has stopped."""
    import os
    import signal
    import threading

    def mine(signum: int, frame: object) -> None:
        raise AssertionError("the monitor's handler should have had this signal")

    before = {sig: signal.signal(sig, mine) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        mon = make(mosquitto, model_dir)
        stopper = threading.Thread(target=lambda: (mon.wait_ready(20), os.kill(os.getpid(), signal.SIGTERM)))
        stopper.start()
        assert mon.run_forever() == 0
        stopper.join(5)
        assert all(signal.getsignal(sig) is mine for sig in before)
    finally:
        for sig, old in before.items():
            signal.signal(sig, old)


def test_messages_without_a_sensor_are_held_dropped_or_rejected_per_sensor_and_counted(
    mosquitto: Any, model_dir: Path
) -> None:
    """[missing]: T* sensors are held for at most 2 messages, F1 may be dropped, the rest must be there.

    A message without T1 scores with T1's last value (twice), the third in a row is dropped; one
    without F1 is dropped; one without P1 is rejected as missing_sensor. Each asset counts its own.
    """
    mon = make(mosquitto, model_dir, missing={"policy": "fail", "sensors": {"T*": "hold:2", "F1": "drop"}})
    mon.start()
    plant = Plant(mosquitto.port)
    try:
        assert mon.wait_ready(10)

        def send(seq: int, leave_out: str | None = None) -> Any:
            row = values(plant.rows[seq])
            row.pop(leave_out or "", None)
            return plant.raw(wire.telemetry_topic("plant", "boiler"), wire.encode_telemetry(time.time(), seq, row))

        with capture_logs() as logs:
            for seq in range(12):
                send(seq)
            for seq in range(12, 15):
                send(seq, "T1")  # held, held, dropped (3 messages since T1's last value)
            send(15, "F1")  # dropped
            send(16, "P1").wait_for_publish(5)  # rejected
            wait_until(lambda: rejected(mon, "missing_sensor") == 1 and scored(mon, "boiler") == 14, 10, "counted")
        assert value(mon, "plantwatch_missing_rows_total", asset="boiler", action="filled") == 2
        assert value(mon, "plantwatch_missing_rows_total", asset="boiler", action="dropped") == 2
        assert value(mon, "plantwatch_sequence_gaps_total", asset="boiler") == 0
        assert any(e["event"] == "missing_values" and e["asset"] == "boiler" for e in logs)
        send(17).wait_for_publish(5)
        wait_until(lambda: scored(mon, "boiler") == 15, 10, "a whole message scores again")
    finally:
        plant.close()
        mon.stop()


def test_missing_policies_are_checked_in_the_config() -> None:
    with pytest.raises(config.ConfigError) as exc:
        config.parse({"models": {"default": "m"}, "missing": {"policy": "hold:0", "sensors": {"T*": "keep"}}})
    assert [p.split(":")[0] for p in exc.value.problems] == ["missing.policy", "missing.sensors"]


def test_messages_far_outside_the_training_range_are_counted_logged_and_blame_the_moved_sensors(
    started: Monitor, plant: Plant, model_dir: Path
) -> None:
    """T2 and F1 pushed 60 training standard deviations away: each such message is counted, a log line
    names those sensors at once, and the raised alarm's top sensors are those two."""
    from monitor.detector import load_model

    sd = load_model(model_dir).scaler.scale
    plant.send_many("boiler", range(0, 20))
    wait_until(lambda: scored(started, "boiler") == 20, 10, "warm-up")
    assert value(started, "plantwatch_rows_outside_training_total", asset="boiler") == 0
    rows = plant.rows[20:40].copy()
    rows[:, 1] += 60 * sd[1]
    rows[:, 4] += 60 * sd[4]
    with capture_logs() as logs:
        for i, row in enumerate(rows):
            info = plant.send("boiler", 20 + i, row=row)
        info.wait_for_publish(5)
        wait_until(lambda: scored(started, "boiler") == 40, 10, "shifted rows scored")
    assert value(started, "plantwatch_rows_outside_training_total", asset="boiler") == 20
    [line] = [e for e in logs if e["event"] == "outside_training_range"]
    assert set(line["sensors"][:2]) == {"T2", "F1"}
    raised = [e for e in logs if e["event"] == "alarm_raised"]
    assert raised and set(raised[0]["top_sensors"][:2]) == {"T2", "F1"}


@pytest.mark.parametrize(
    ("url", "reason"),
    [("mqtt://127.0.0.1:1", "connection refused"), ("mqtt://nonexistent.invalid:1883", "not found (DNS")],
)
def test_a_monitor_that_cannot_reach_its_broker_says_why_at_once_and_keeps_trying(
    model_dir: Path, url: str, reason: str
) -> None:
    """Within a few seconds (not after 30), a warning names the broker and the reason; then paho retries."""
    mon = Monitor(config.parse({"broker": {"url": url}, "metrics": {"port": 0}, "models": {"default": str(model_dir)}}))
    with capture_logs() as logs:
        mon.start()
        try:
            t0 = time.monotonic()
            wait_until(lambda: any(e["event"] == "broker_unreachable" for e in logs), 5, "the first warning")
            assert time.monotonic() - t0 < 5
            assert not mon.ready() and "not connected to the broker" in mon.readiness_problems()
        finally:
            mon.stop()
    [first, *_] = [e for e in logs if e["event"] == "broker_unreachable"]
    assert first["broker"] == url and reason in first["reason"] and first["attempts"] == 1
    assert not any(e["event"] == "broker_disconnected" for e in logs)


def test_unknown_names_at_max_assets_give_way_to_a_configured_asset_never_the_reverse(
    mosquitto: Any, model_dir: Path, plant: Plant
) -> None:
    """max_assets = 5 and five junk names (scored by the default model): 'boiler', which a [models.assets]
    pattern names, still gets a slot (the longest silent junk asset's), and a sixth junk name does not take
    it back."""
    m = str(model_dir)
    mon = make(mosquitto, model_dir, models={"default": m, "assets": {"boiler": m}}, max_assets=5)
    mon.start()
    try:
        assert mon.wait_ready(10)
        for i in range(5):
            plant.send_many(f"junk-{i}", range(3))
        wait_until(lambda: all(scored(mon, f"junk-{i}") == 3 for i in range(5)), 10, "five junk assets")
        with capture_logs() as logs:
            plant.send_many("boiler", range(10))
            wait_until(lambda: scored(mon, "boiler") == 10, 10, "boiler scored")
        [ev] = [e for e in logs if e["event"] == "asset_evicted"]
        assert ev["asset"] == "junk-0" and ev["reason"] == "configured_asset" and ev["for_asset"] == "boiler"
        assert value(mon, "plantwatch_assets_evicted_total", reason="configured_asset") == 1
        assert value(mon, "plantwatch_assets") == 5 and scored(mon, "junk-0") == 0  # its series are gone
        plant.send_many("junk-9", range(3))
        plant.send_many("boiler", range(10, 13))
        wait_until(lambda: scored(mon, "boiler") == 13, 10, "boiler still scored")
        assert rejected(mon, "too_many_assets") == 3 and scored(mon, "junk-9") == 0
    finally:
        mon.stop()


def test_slots_of_silent_assets_are_freed_after_the_idle_time_and_a_reload_changes_it(
    mosquitto: Any, model_dir: Path, plant: Plant
) -> None:
    """Full (max_assets = 2) with two live assets: a third is rejected; after a reload with a shorter
    asset_idle_timeout, once 'a' is silent that long, the third takes its slot; 'a' returning is new."""
    mon = make(mosquitto, model_dir, max_assets=2)
    mon.start()
    try:
        assert mon.wait_ready(10)
        plant.send_many("a", range(3))
        plant.send_many("b", range(3))
        wait_until(lambda: scored(mon, "a") == 3 and scored(mon, "b") == 3, 10, "a and b")
        plant.send_many("c", range(2))
        wait_until(lambda: rejected(mon, "too_many_assets") == 2, 10, "c rejected (idle time: an hour)")
        doc = {"instance": "t", "broker": {"url": mosquitto.url}, "models": {"default": str(model_dir)}}
        assert mon.reload(config.parse({**doc, "max_assets": 2, "asset_idle_timeout": 0.5}))
        time.sleep(0.3)
        plant.send_many("b", range(3, 6))  # b keeps talking, a is silent
        wait_until(lambda: scored(mon, "b") == 6, 10, "b")
        time.sleep(0.4)
        plant.send_many("c", range(2, 5))
        wait_until(lambda: scored(mon, "c") == 3, 10, "c in a's slot")
        assert value(mon, "plantwatch_assets_evicted_total", reason="idle") == 1 and scored(mon, "b") == 6
        assert scored(mon, "a") == 0
    finally:
        mon.stop()


def test_an_asset_with_rows_in_the_batch_keeps_its_slot_when_a_configured_one_needs_one(model_dir: Path) -> None:
    """One batch holds junk-1, junk-2 (max_assets = 2) and then boiler, which a pattern names: boiler may take
    only the slot of an asset with no row in this batch, so it waits (too_many_assets) and the junk rows are
    scored (taking junk-1's slot mid-batch lost its rows: the worker looked up an asset no longer there)."""
    from monitor.daemon import BatchQueue, State, load_models
    from monitor.daemon.worker import Worker

    m = str(model_dir)
    cfg = config.parse({"models": {"default": m, "assets": {"boiler": m}}, "max_assets": 2})
    acked: list[Any] = []
    state = State()
    w = Worker(cfg, load_models(cfg), BatchQueue(10), state, acked.extend, lambda t, p: None)
    now = time.time()

    def item(asset: str, seq: int) -> Any:
        payload = wire.encode_telemetry(now + seq, seq, values(np.arange(6.0)))
        return (wire.telemetry_topic("plant", asset), payload, now, seq, 1, 0, False)

    w._process([item("junk-1", 0), item("junk-2", 0), item("boiler", 0)])
    assert state.assets["junk-1"].messages == 1 and state.assets["junk-2"].messages == 1
    assert state.rejected["too_many_assets"] == 1 and state.worker_errors == 0 and len(acked) == 3
    w._process([item("boiler", 1)])  # the next batch: junk-1, the longest silent unknown name, gives way
    assert "junk-1" not in state.assets and state.assets["boiler"].messages == 1
    assert state.evicted["configured_asset"] == 1
