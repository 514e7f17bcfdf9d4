"""``plantwatch record`` writes what ``plantwatch train`` reads, rejects what does not fit, loses nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest

from monitor import cli, csvio, wire
from monitor.commands.record import AssetFile, Recorder, iso
from monitor.mqtt import settings_from_url
from tests.monitor.conftest import SENSORS, Plant, values, wait_until


def csv_rows(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_record_writes_per_asset_csvs_that_train_accepts_and_exits_cleanly_on_sigterm(
    mosquitto: Any, plant: Plant, tmp_path: Path, cli_logging: None
) -> None:
    out = tmp_path / "history"
    log = open(tmp_path / "record.log", "wb")  # noqa: SIM115 (the process writes to it)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "monitor",
            "--log-json",
            "record",
            "--broker",
            mosquitto.url,
            "--out",
            str(out),
            "--assets",
            "boiler,pump",
            "--client-id",
            "rec-test",
        ],
        stdout=log,
        stderr=log,
    )
    try:
        wait_until(lambda: "subscribed" in (tmp_path / "record.log").read_text(), 30, "record subscribed")
        plant.send_many("boiler", range(120), ts0=1.7e9)
        plant.send_many("pump", range(80), ts0=1.7e9)
        plant.raw(wire.telemetry_topic("plant", "boiler"), b"not json")
        odd = wire.encode_telemetry(1.7e9 + 500, 500, {**values(plant.rows[0]), "X9": 1.0})
        plant.raw(wire.telemetry_topic("plant", "boiler"), odd).wait_for_publish(5)
        plant.send_many("boiler", range(100, 105), ts0=1.7e9)  # redelivered rows
        plant.send_many("other", range(10))  # not asked for
        wait_until(
            lambda: (
                len(csv_rows(out / "boiler.csv")) == 121
                and (out / "pump.csv").exists()
                and len(csv_rows(out / "pump.csv")) == 81
            ),
            10,
            "rows flushed",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        log.close()
    err = (tmp_path / "record.log").read_text()
    assert "recorded 200 rows for 2 asset(s)" in err and "'unknown_sensor': 1" in err and "'not_json': 1" in err
    assert "'duplicate': 5" in err
    assert not (out / "other.csv").exists()
    lines = csv_rows(out / "boiler.csv")
    assert lines[0] == "timestamp," + ",".join(SENSORS)
    assert lines[1].startswith(iso(1.7e9) + ",")
    table = csvio.read_table(out / "boiler.csv")
    assert table.sensors == SENSORS and table.time_column == "timestamp" and len(table) == 120
    assert np.allclose(table.values, plant.rows[:120])
    assert csvio.sample_period(table.timestamps) == pytest.approx(1.0)
    model = tmp_path / "model"
    import torch

    with mock.patch.object(torch, "set_num_threads"):  # see conftest.train: one thread on a busy host
        assert (
            cli.main(
                [
                    "--log-level",
                    "error",
                    "train",
                    "--data",
                    str(out / "boiler.csv"),
                    "--out",
                    str(model),
                    "--epochs",
                    "1",
                    "--folds",
                    "2",
                    "--window",
                    "2",
                ]
            )
            == 0
        )
    assert (model / "manifest.json").exists()


def test_a_recording_resumes_an_existing_file_without_a_second_header_or_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    f = AssetFile(path)
    assert f.write(wire.Telemetry(10.0, 0, {"x": 1.0, "y": 2.0})) is None
    assert f.write(wire.Telemetry(11.0, 1, {"y": 3.0, "x": 4.0})) is None
    f.close()
    with open(path, "a") as raw:
        raw.write("1970-01-01T00:00:12")  # a row cut short by a crash
    f = AssetFile(path)
    assert f.sensors == ["x", "y"] and f.last_ts == 11.0
    assert f.write(wire.Telemetry(11.0, 1, {"x": 4.0, "y": 3.0})).reason == "duplicate"  # type: ignore[union-attr]
    assert f.write(wire.Telemetry(12.0, 2, {"x": 5.0})).reason == "missing_sensor"  # type: ignore[union-attr]
    assert f.write(wire.Telemetry(12.0, 2, {"x": 5.0, "y": 6.0, "z": 0.0})).reason == "unknown_sensor"  # type: ignore[union-attr]
    assert f.write(wire.Telemetry(12.0, 2, {"x": 5.0, "y": 6.0})) is None
    f.close()
    assert path.read_text().splitlines() == [
        "timestamp,x,y",
        f"{iso(10)},1.0,2.0",
        f"{iso(11)},4.0,3.0",
        f"{iso(12)},5.0,6.0",
    ]


def test_the_recorder_acknowledges_only_after_writing_so_a_stop_loses_nothing(mosquitto: Any, tmp_path: Path) -> None:
    """Two recorder runs with one client id: what the first did not write, the second does."""
    plant = Plant(mosquitto.port)
    try:

        def run(seconds: float) -> tuple[Recorder, threading.Thread]:
            rec = Recorder(settings_from_url(mosquitto.url), tmp_path, client_id="rec-twice")
            t = threading.Thread(target=rec.run, args=(seconds,))
            t.start()
            wait_until(rec.session.subscribed.is_set, 10, "subscribed")
            return rec, t

        first, t1 = run(1.0)
        plant.send_many("a", range(50), ts0=1.7e9)
        t1.join(10)
        plant.send_many("a", range(50, 90), ts0=1.7e9)  # while no recorder runs
        second, t2 = run(1.0)
        t2.join(10)
        assert sum(first.rows.values()) + sum(second.rows.values()) == 90
        assert len(csv_rows(tmp_path / "a.csv")) == 91
    finally:
        plant.close()


@pytest.mark.parametrize(
    ("url", "reason"),
    [("mqtt://127.0.0.1:1", "connection refused"), ("mqtt://nonexistent.invalid:1883", "not found (DNS")],
)
def test_record_exits_3_saying_why_when_the_broker_cannot_be_reached(tmp_path: Path, url: str, reason: str) -> None:
    """No 'recorded 0 rows' and exit 0: one error line with the reason, exit 3, as simulate and drill do."""
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "record", "--broker", url, "--out", str(tmp_path / "h"), "--duration", "30"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("plantwatch record: error:")]
    assert f"cannot connect to broker {url}: " in line and reason in line
    assert "recorded" not in proc.stderr and "Traceback" not in proc.stderr


def test_record_keeps_only_the_sensors_asked_for(mosquitto: Any, tmp_path: Path) -> None:
    plant = Plant(mosquitto.port)
    try:
        rec = Recorder(settings_from_url(mosquitto.url), tmp_path, client_id="rec-cols", include=["T*", "P1"],
                       exclude=["T2"])  # fmt: skip
        t = threading.Thread(target=rec.run, args=(2.0,))
        t.start()
        wait_until(rec.session.subscribed.is_set, 10, "subscribed")
        plant.send_many("a", range(20), ts0=1.7e9)
        t.join(10)
    finally:
        plant.close()
    table = csvio.read_table(tmp_path / "a.csv")
    assert table.sensors == ["T1", "P1"] and len(table) == 20


def test_record_writes_sparkplug_devices_with_the_sensor_names_of_their_birth_and_train_reads_them(
    mosquitto: Any, tmp_path: Path, cli_logging: None
) -> None:
    from simulator.publish import Publisher
    from simulator.replay import ReplaySource
    from simulator.sparkplug_edge import SparkplugSettings
    from tests.monitor.conftest import history

    out = tmp_path / "history"
    rec = Recorder(settings_from_url(mosquitto.url), out, client_id="rec-spb", group_ids=["g1"])
    thread = threading.Thread(target=rec.run, kwargs={"duration": 30.0})
    thread.start()
    try:
        wait_until(lambda: rec.session.subscribed.is_set(), 10, "record subscribed")
        source = ReplaySource("boiler", SENSORS, history(200, 3))
        publisher = Publisher(
            settings_from_url(mosquitto.url), [source], rate=200, sparkplug=SparkplugSettings("g1", "gw1", 0.5)
        )
        publisher.run()
        sent = publisher.summary.messages["boiler"]
        wait_until(lambda: rec.rows["gw1/boiler"] >= 20, 10, "rows recorded")
        time.sleep(0.5)
    finally:
        rec.request_stop()
        thread.join(10)
    table = csvio.read_table(out / "gw1" / "boiler.csv")
    assert list(table.sensors) == SENSORS
    # one row per DBIRTH or DDATA: fewer than the samples, as report-by-exception skips samples that moved
    # no metric past the deadband; every value within the range of the data published
    assert 20 <= len(table.values) == rec.rows["gw1/boiler"] <= sent
    data = history(200, 3)
    assert np.all((table.values >= data.min(0)) & (table.values <= data.max(0)))
    assert dict(rec.rejected) == {} and dict(rec.gaps) == {}
