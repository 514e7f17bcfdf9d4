"""History files and replay: --to-csv writes what the process makes, --replay streams it back."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import orjson
import pytest

from monitor import csvio, wire
from monitor.cli import main
from monitor.errors import InputError
from monitor.mqtt import settings_from_url
from simulator.faults import FaultTarget, bind_faults, parse_fault
from simulator.history import iso_timestamps, truth_path, write_history
from simulator.process import AssetProcess
from simulator.publish import Publisher
from simulator.replay import ReplaySource, load_replay
from tests.conftest import Mosquitto

from .test_publish import Subscriber


def test_to_csv_writes_timestamped_rows_of_the_asset_process(tmp_path: Path) -> None:
    out = tmp_path / "h.csv"
    assert (
        main(
            [
                "simulate",
                "--to-csv",
                str(out),
                "--samples",
                "50",
                "--seed",
                "4",
                "--asset-index",
                "2",
                "--sensors",
                "9",
                "--rate",
                "0.5",
            ]
        )
        == 0
    )
    table = csvio.read_table(out)
    p = AssetProcess(4, 2, 9)
    assert table.time_column == "timestamp" and table.sensors == p.sensors
    assert table.timestamps is not None and table.timestamps[:2] == ["2026-01-01T00:00:00Z", "2026-01-01T00:00:02Z"]
    assert np.allclose(table.values, p.generate(50), rtol=1e-8, atol=0)
    assert not truth_path(out).exists()


def test_fractional_periods_get_microsecond_timestamps_on_every_row() -> None:
    assert iso_timestamps(0.0, 4.0, 0, 3) == [
        "1970-01-01T00:00:00.000000Z",
        "1970-01-01T00:00:00.250000Z",
        "1970-01-01T00:00:00.500000Z",
    ]


def test_history_faults_change_exactly_the_rows_and_sensors_in_the_truth_file(tmp_path: Path) -> None:
    specs = ["bias@20+10", "stuck@40+5", "coefficient@60+30", "spikes@100+20", "decorrelate@130+25"]
    out = tmp_path / "f.csv"
    argv = ["simulate", "--to-csv", str(out), "--samples", "200", "--sensors", "12", "--rate", "2"]
    assert main([*argv, *(a for s in specs for a in ("--fault", s))]) == 0
    assert main([*argv[:2], str(tmp_path / "clean.csv"), *argv[3:]]) == 0
    faulted, clean = csvio.read_table(out), csvio.read_table(tmp_path / "clean.csv")
    stamps = np.array([csvio.parse_time(t) for t in faulted.timestamps or []])
    truths = [wire.decode_drill(line) for line in truth_path(out).read_bytes().splitlines()]
    assert [t.kind for t in truths if isinstance(t, wire.DrillTruth)] == [s.split("@")[0] for s in specs]
    expected = np.zeros(faulted.values.shape, dtype=bool)
    changed = faulted.values != clean.values
    for t in truths:
        assert isinstance(t, wire.DrillTruth)
        rows = np.nonzero((stamps >= t.start) & (stamps <= t.end))[0]
        cols = np.array([faulted.sensors.index(s) for s in t.sensors])
        expected[np.ix_(rows, cols)] = True
        assert changed[rows[0], cols].all() and changed[rows[-1], cols].all()  # first and last affected
    assert not changed[~expected].any()


def test_history_refuses_a_fault_starting_after_the_last_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "--to-csv", str(tmp_path / "h.csv"), "--samples", "10", "--fault", "bias@10+5"]) == 2
    assert "starts after the last of the 10 rows" in capsys.readouterr().err


def test_an_unwritable_history_path_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot write"):
        write_history(tmp_path / "missing" / "h.csv", AssetProcess(0, 1, 8), 5)


def test_to_csv_then_replay_publishes_the_same_values(
    tmp_path: Path, mosquitto: Mosquitto, subscriber: Subscriber
) -> None:
    csv_path = tmp_path / "boiler.csv"
    assert main(["simulate", "--to-csv", str(csv_path), "--samples", "30", "--seed", "5", "--sensors", "10"]) == 0
    assert main(["simulate", "--broker", mosquitto.url, "--replay", str(csv_path), "--rate", "50"]) == 0
    subscriber.wait_for(lambda: len(subscriber.messages) >= 30)
    got = subscriber.telemetry("boiler")
    assert [m.seq for m in got] == list(range(30)) and np.all(np.diff([m.ts for m in got]) > 0)
    p = AssetProcess(5, 1, 10)
    assert all(list(m.values) == p.sensors for m in got)
    assert np.allclose([list(m.values.values()) for m in got], p.generate(30), rtol=1e-8, atol=0)


def test_replayed_faults_use_the_file_spread_and_publish_truth(
    tmp_path: Path, mosquitto: Mosquitto, subscriber: Subscriber
) -> None:
    values = np.arange(40, dtype=float).reshape(20, 2) * [1.0, -1.0]
    source = ReplaySource("d00", ["a", "b"], values)
    injections = bind_faults([parse_fault("bias@3+4:sensors=b,magnitude=2")], [FaultTarget.of(source)], 0)
    summary = Publisher(settings_from_url(mosquitto.url), [source], rate=100, injections=injections).run()
    assert summary.messages == {"d00": 20} and summary.truths == 2
    subscriber.wait_for(lambda: len(subscriber.messages) >= 22)
    got = np.array([[m.values["a"], m.values["b"]] for m in subscriber.telemetry("d00")])
    expected = values.copy()
    expected[3:7, 1] += 2 * values[:, 1].std()
    assert np.allclose(got, expected)
    assert np.array_equal(source.values, np.arange(40, dtype=float).reshape(20, 2) * [1.0, -1.0])


def test_a_looping_replay_starts_again_at_the_first_row() -> None:
    source = ReplaySource("x", ["a"], np.array([[1.0], [2.0], [3.0]]), loop=True)
    assert source.read(4)[:, 0].tolist() == [1.0, 2.0, 3.0, 1.0]
    assert source.read(3)[:, 0].tolist() == [2.0, 3.0, 1.0]


def test_a_finished_replay_reads_no_more_rows() -> None:
    source = ReplaySource("x", ["a"], np.array([[1.0], [2.0]]))
    assert len(source.read(5)) == 2 and len(source.read(5)) == 0


def test_the_asset_is_named_after_the_file_unless_given(tmp_path: Path) -> None:
    path = tmp_path / "pump 7.csv"
    path.write_text("time,a,b\n2026-01-01T00:00:00Z,1,2\n")
    assert load_replay(path).name == "pump 7" and load_replay(path, "p7").name == "p7"


@pytest.mark.parametrize("name", ["a/b", "+", " pad", ""])
def test_an_asset_name_that_cannot_be_a_topic_level_is_refused(name: str) -> None:
    with pytest.raises(InputError, match="cannot be an MQTT topic level"):
        ReplaySource(name, ["a"], np.zeros((1, 1)))


def test_a_bad_replay_file_is_an_input_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,x\n")
    with pytest.raises(InputError, match=re.escape("bad.csv")):
        load_replay(path)


def test_truth_lines_are_drill_truth_json(tmp_path: Path) -> None:
    p = AssetProcess(0, 1, 8)
    injections = bind_faults([parse_fault("drift@2+3")], [FaultTarget.of(p)], 0)
    (truth,) = write_history(tmp_path / "h.csv", p, 10, rate=2.0, start_time=100.0, injections=injections)
    assert (truth.start, truth.end) == (101.0, 102.0)
    assert orjson.loads(truth_path(tmp_path / "h.csv").read_bytes()) == orjson.loads(truth.encode())


def test_replay_publishes_only_the_columns_asked_for_and_fills_gaps_as_train_does(tmp_path: Path) -> None:
    """--sensors/--exclude pick the columns a replay publishes (labels stay home); --missing as in train."""
    import argparse

    path = tmp_path / "export.csv"
    path.write_text("time,T1,T2,anomaly\n1,10.0,20.0,0\n2,,21.0,1\n3,12.0,n/a,0\n")
    args = argparse.Namespace(sensors=None, exclude=["anomaly"], missing="hold:1")
    src = load_replay(path, "a", args=args)
    assert src.sensors == ["T1", "T2"] and src.values.tolist() == [[10.0, 20.0], [10.0, 21.0], [12.0, 21.0]]
    src = load_replay(path, "a", args=argparse.Namespace(sensors=["T2"], exclude=None, missing="drop"))
    assert src.sensors == ["T2"] and src.values.tolist() == [[20.0], [21.0]]
    with pytest.raises(InputError, match="missing value"):
        load_replay(path, "a", args=argparse.Namespace(sensors=None, exclude=["anomaly"], missing="fail"))


def test_simulate_takes_sensor_patterns_only_with_replay(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--to-csv", "x.csv", "--samples", "5", "--sensors", "T*"]) == 2
    assert "column patterns only apply to --replay" in capsys.readouterr().err
    assert main(["simulate", "--broker", "mqtt://127.0.0.1:1", "--exclude", "anomaly"]) == 2
    assert "--exclude only applies to --replay" in capsys.readouterr().err


def test_simulate_help_points_at_the_fault_spec_where_it_is() -> None:
    """The --fault help says where the spec is: below, in the examples (it said 'above')."""
    from monitor.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    text = sub.choices["simulate"].format_help()  # type: ignore[attr-defined]
    assert "see the fault spec below" in text and "spec above" not in text
    assert text.index("see the fault spec below") < text.index("fault spec:  KIND@START")
