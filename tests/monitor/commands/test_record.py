"""``plantwatch record`` writes what ``plantwatch train`` reads, rejects what does not fit, loses nothing."""

from __future__ import annotations

import os
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


def _record(
    url: str, out: Path, seconds: float, limits: dict[int, int] | None = None
) -> subprocess.CompletedProcess[str]:
    """``plantwatch record`` as a process (one persistent session, client id 'rec-edge'), under ``limits``
    (resource.RLIMIT_* -> soft and hard limit)."""
    import resource

    def limit() -> None:
        for which, n in (limits or {}).items():
            resource.setrlimit(which, (n, n))

    cmd = [sys.executable, "-m", "monitor", "record", "--broker", url, "--out", str(out), "--client-id", "rec-edge",
           "--duration", str(seconds)]  # fmt: skip
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, preexec_fn=limit, env=env)


def _whole_rows(path: Path) -> list[list[str]]:
    """The file's rows; each must be whole (7 fields, a time and six numbers) and end with a line break."""
    data = path.read_bytes()
    assert data.endswith(b"\n"), data[-80:]
    rows = [line.split(",") for line in data.decode().splitlines()]
    assert rows[0] == ["timestamp", *SENSORS]
    for r in rows[1:]:
        assert len(r) == 7 and csvio.parse_time(r[0]) is not None and all(np.isfinite(float(v)) for v in r[1:]), r
    return rows[1:]


def test_a_ts_no_date_can_hold_and_a_stray_csv_are_rejected_counted_acknowledged_and_recording_goes_on(
    mosquitto: Any, tmp_path: Path
) -> None:
    """'ts': 1e12 (year 33658) is rejected as ts_out_of_range, not a traceback; a notes.csv in --out that is
    not a recording rejects only the asset 'notes'. Both are acknowledged: a second run gets nothing again."""
    (tmp_path / "notes.csv").write_text("my notes, not a recording\n")
    plant = Plant(mosquitto.port)
    try:

        def run(seconds: float, send: bool) -> Recorder:
            rec = Recorder(settings_from_url(mosquitto.url), tmp_path, client_id="rec-poison")
            t = threading.Thread(target=rec.run, args=(seconds,))
            t.start()
            wait_until(rec.session.subscribed.is_set, 10, "subscribed")
            if send:
                ts0 = time.time() - 100
                plant.send("boiler", 0, ts=1e12)
                plant.send_many("notes", range(3), ts0=ts0)
                plant.send_many("boiler", range(1, 11), ts0=ts0)
            t.join(15)
            assert not t.is_alive()
            return rec

        first = run(1.5, send=True)
        second = run(1.0, send=False)
    finally:
        plant.close()
    assert first.rows == {"boiler": 10}
    assert first.rejected == {"ts_out_of_range": 1, "not_a_recording": 3}
    assert second.rows == {} and second.rejected == {}  # nothing redelivered: all were acknowledged
    assert len(_whole_rows(tmp_path / "boiler.csv")) == 10
    assert (tmp_path / "notes.csv").read_text() == "my notes, not a recording\n"


def test_a_full_disk_is_one_error_line_a_non_zero_exit_whole_rows_and_nothing_lost(
    mosquitto: Any, tmp_path: Path
) -> None:
    """The file-size limit (RLIMIT_FSIZE) stands in for a full disk: the write fails part-way through a row.
    record says so in one line and exits 1; the file ends on its last whole row; the next run records the
    rest (nothing was acknowledged that was not written)."""
    import resource

    out = tmp_path / "history"
    assert _record(mosquitto.url, out, 1).returncode == 0  # creates the persistent session
    plant = Plant(mosquitto.port)
    ts0 = float(int(time.time()) - 1000)  # whole seconds: the CSV keeps microseconds
    try:
        plant.send_many("boiler", range(100), ts0=ts0)
        assert _record(mosquitto.url, out, 1.5).returncode == 0
        size = (out / "boiler.csv").stat().st_size
        plant.send_many("boiler", range(100, 300), ts0=ts0)
        full = _record(mosquitto.url, out, 3, {resource.RLIMIT_FSIZE: size + 5000})
    finally:
        plant.close()
    assert full.returncode == 1, full.stderr
    [line] = [ln for ln in full.stderr.splitlines() if ln.startswith("plantwatch record:")]
    assert line.startswith("plantwatch record: error: cannot write ") and "boiler.csv: File too large" in line
    assert "Traceback" not in full.stderr
    assert 100 <= len(_whole_rows(out / "boiler.csv")) < 300
    assert _record(mosquitto.url, out, 2).returncode == 0
    rows = _whole_rows(out / "boiler.csv")
    assert [csvio.parse_time(r[0]) for r in rows] == [ts0 + i for i in range(300)]


def test_more_assets_than_open_files_allowed_are_recorded_with_a_bounded_number_of_handles(
    mosquitto: Any, tmp_path: Path
) -> None:
    """300 assets under an open-files limit of 128 (1,100 under the usual 1,024): handles are closed least
    recently used first and reopened to append, so every asset's file gets both its rows."""
    import resource

    out = tmp_path / "history"
    assert _record(mosquitto.url, out, 1).returncode == 0
    plant = Plant(mosquitto.port)
    ts0 = float(int(time.time()) - 1000)  # whole seconds: the CSV keeps microseconds
    try:
        for seq in range(2):
            for i in range(300):
                plant.send(f"a{i:03d}", seq, ts=ts0 + seq)
        plant.send_many("a000", range(2, 3), ts0=ts0)
        proc = _record(mosquitto.url, out, 3, {resource.RLIMIT_NOFILE: 128})
    finally:
        plant.close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "recorded 601 rows for 300 asset(s)" in proc.stderr
    assert all(len(_whole_rows(out / f"a{i:03d}.csv")) == (3 if i == 0 else 2) for i in range(300))
