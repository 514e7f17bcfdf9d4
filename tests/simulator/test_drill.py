"""Drills: the scenario file, judging records, and a short drill end to end against mosquitto and a live monitor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from monitor import wire
from monitor.cli import main
from monitor.config import parse as parse_config
from monitor.daemon import Monitor
from monitor.errors import ConfigError
from simulator.drill import report, scenario
from simulator.drill.observe import AlarmRecord, Scrape, parse_metrics
from simulator.drill.run import DrillRecord
from simulator.history import write_history
from simulator.process import AssetProcess
from simulator.publish import PublishSummary
from tests.cli import train
from tests.conftest import ROOT, Mosquitto

from .test_gan import SENSORS, normal_rows, tiny_data, tiny_gan  # noqa: F401 - fixtures

BASE = {
    "rate": 10.0,
    "cooldown_s": 5,
    "assets": [{"name": "asset01"}],
    "injections": [{"asset": "asset01", "kind": "bias", "magnitude": 8, "start_s": 10, "duration_s": 4}],
}


def test_the_example_scenario_is_valid_and_copies_the_demo_assets() -> None:
    s = scenario.load(ROOT / "deploy" / "drills" / "example.toml")
    assert [a.drill_name for a in s.assets] == ["asset01-drill", "asset02-drill", "asset03-drill"]
    assert s.gan is not None and s.gan.endswith("gans/demo-asset03") and s.broker_url == "mqtt://127.0.0.1:1883"
    assert {i.kind for i in s.injections} >= {"bias", "gan:decorrelate"}
    spec = s.fault_spec(s.injections[0])
    assert (spec.start, spec.duration, spec.asset) == (90, 80, "asset01-drill")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"bogus": 1}, "bogus: unknown key"),
        ({"criteria": {"min_detection_rate": 2}}, "criteria.min_detection_rate: 2.0 is out of range"),
        ({"assets": [{"name": "pump"}]}, 'assets\\[0\\].name: source "demo" copies a demo asset'),
        ({"assets": [{"name": "asset01", "source": "replay"}]}, "assets\\[0\\].replay"),
        ({"injections": [{"asset": "asset09", "kind": "bias", "start_s": 1, "duration_s": 1}]}, "not one of the"),
        (
            {"injections": [{"asset": "asset01", "kind": "wobble", "start_s": 1, "duration_s": 1}]},
            "unknown kind 'wobble'",
        ),
        (
            {"injections": [{"asset": "asset01", "kind": "bias", "start_s": 1}]},
            "injections\\[0\\].duration_s: required",
        ),
        (
            {
                "injections": [
                    {"asset": "asset01", "kind": "bias", "start_s": 1, "duration_s": 10},
                    {"asset": "asset01", "kind": "drift", "start_s": 5, "duration_s": 10},
                ]
            },
            "could not be told apart",
        ),
        ({"rate": "fast"}, "rate: must be a number"),
    ],
)
def test_bad_scenarios_are_refused_naming_the_key(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        scenario.parse({**BASE, **change})


def _event(asset: str, state: str, ts: float, started: float, top: tuple[str, ...] = ("a",)) -> AlarmRecord:
    return AlarmRecord(
        wire.AlarmEvent(asset, state, ts, started, 5.0, 1.0, 6.0, top, ended=ts if state == "cleared" else None), ts
    )


def test_detections_delays_and_false_alarms_are_judged_on_the_payload_clock() -> None:
    s = scenario.parse(
        {
            **BASE,
            "injections": [
                {"asset": "asset01", "kind": "bias", "start_s": 10, "duration_s": 4},
                {"asset": "asset01", "kind": "drift", "start_s": 60, "duration_s": 4},
            ],
            "criteria": {"max_time_to_detect_s": 5, "max_false_alarms_per_hour": 100, "min_detection_rate": 0.5},
        }
    )
    t0 = 1000.0
    truths = [
        wire.DrillTruth("asset01-drill", "001-bias", "bias", ("a", "b"), t0 + 10, t0 + 13.9, 8.0, "end"),
        wire.DrillTruth("asset01-drill", "002-drift", "drift", ("c",), t0 + 60, t0 + 63.9, 6.0, "end"),
    ]
    alarms = [
        _event("asset01-drill", "raised", t0 + 3, t0 + 2.5),
        _event("asset01-drill", "cleared", t0 + 5, t0 + 2.5),
        _event("asset01-drill", "raised", t0 + 12.5, t0 + 12.0, ("b", "x")),
        _event("asset01-drill", "cleared", t0 + 16, t0 + 12.0, ("b", "x")),
    ]
    scrapes = [Scrape(t0 + k, "asset01-drill", 1.0 + (k == 13) * 9, 2.0, 0.0, k * 10) for k in range(70)]
    record = DrillRecord(
        s,
        t0,
        t0 + 70,
        [object()] * 2,
        truths,
        alarms,
        scrapes,  # type: ignore[list-item]
        {"asset01-drill": ["a", "b", "c"]},
        PublishSummary({"asset01-drill": 700}),
    )
    r = report.evaluate(record)
    first, second = r["injections"]
    assert first["detected"] and first["time_to_detect_s"] == 2.5 and first["false_alarms"] == 1
    assert first["peak_score"] == 10.0 and first["sensor_match"] and first["pass"]
    assert not second["detected"] and second["time_to_detect_s"] is None and not second["pass"]
    assert r["detection_rate"] == 0.5 and r["false_alarms"] == 1
    clean_h = (70 - 2 * (3.9 + 5)) / 3600  # minus both windows: first to last sample + grace
    assert r["false_alarms_per_hour"] == pytest.approx(1 / clean_h, rel=1e-3)
    assert r["criteria"]["min_detection_rate"]["pass"] and r["pass"]


def test_metrics_text_is_read_for_the_drill_assets_only() -> None:
    text = (
        '# TYPE plantwatch_anomaly_score gauge\nplantwatch_anomaly_score{asset="a-drill"} 1.5\n'
        'plantwatch_anomaly_score{asset="other"} 9\n# TYPE plantwatch_threshold gauge\n'
        'plantwatch_threshold{asset="a-drill"} 2.0\n# TYPE plantwatch_messages_total counter\n'
        'plantwatch_messages_total{asset="a-drill"} 42\n'
    )
    (s,) = parse_metrics(text, {"a-drill"}, 7.0)
    assert (s.asset, s.score, s.threshold, s.messages) == ("a-drill", 1.5, 2.0, 42.0) and np.isnan(s.alarm)


# ---------------------------------------------------------------- end to end


def _train(csv: Path, out: Path) -> Path:
    return train(csv, out, epochs=5, window=4)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Detector models for asset01 of the demo process and for the 'pump' of the GAN tests."""
    d = tmp_path_factory.mktemp("drill-models")
    write_history(d / "asset01.csv", AssetProcess(7, 1, realization=1), 1200, rate=10.0)
    rows = normal_rows(np.random.default_rng(11), 1200)
    with open(d / "pump.csv", "w") as f:
        f.write("timestamp," + ",".join(SENSORS) + "\n")
        f.writelines(f"{1.7e9 + i}," + ",".join(f"{v:.9g}" for v in row) + "\n" for i, row in enumerate(rows))
    with open(d / "pump-replay.csv", "w") as f:
        f.write(",".join(SENSORS) + "\n")
        f.writelines(",".join(f"{v:.9g}" for v in row) + "\n" for row in normal_rows(np.random.default_rng(12), 400))
    return {
        "asset01": _train(d / "asset01.csv", d / "m-asset01"),
        "pump": _train(d / "pump.csv", d / "m-pump"),
        "replay": d / "pump-replay.csv",
    }


@pytest.fixture
def monitor(mosquitto: Mosquitto, models: dict[str, Path]) -> Iterator[Monitor]:
    """A live monitor that scores the drill copies through asset patterns, as a plant's config would."""
    cfg = parse_config(
        {
            "instance": "drilltest",
            "broker": {"url": mosquitto.url},
            "metrics": {"port": 0},
            "models": {
                "assets": {"asset01*": str(models["asset01"]), "pump*": str(models["pump"])},
                "unknown_asset": "reject",
            },
        }
    )
    mon = Monitor(cfg)
    mon.start()
    assert mon.wait_ready(15)
    try:
        yield mon
    finally:
        mon.stop()


def test_a_short_drill_runs_end_to_end_and_reports_detections(
    tmp_path: Path, mosquitto: Mosquitto, monitor: Monitor, models: dict[str, Path], tiny_gan: Path
) -> None:
    (tmp_path / "drill.toml").write_text(f"""
name = "test drill"
rate = 10.0
cooldown_s = 4
gan = "{tiny_gan}"
[criteria]
max_time_to_detect_s = 6
max_false_alarms_per_hour = 1000
min_detection_rate = 0.5
[[assets]]
name = "asset01"
[[assets]]
name = "pump"
source = "replay"
replay = "{models["replay"]}"
[[injections]]
asset = "asset01"
kind = "bias"
sensors = ["PI101", "TI102", "TI103"]
magnitude = 12
start_s = 6
duration_s = 5
[[injections]]
asset = "pump"
kind = "gan:1"
magnitude = 3
start_s = 6
duration_s = 5
""")
    out = tmp_path / "report"
    code = main(
        [
            "drill",
            "--scenario",
            str(tmp_path / "drill.toml"),
            "--broker",
            mosquitto.url,
            "--metrics-url",
            f"http://127.0.0.1:{monitor.metrics_port}/metrics",
            "--report",
            str(out),
        ]
    )
    r = json.loads((out / "report.json").read_text())
    assert code == (0 if r["pass"] else 1)
    assert set(r) >= {"injections", "detection_rate", "false_alarms_per_hour", "pass", "criteria"}
    bias, gan = sorted(r["injections"], key=lambda i: i["kind"])
    assert bias["asset"] == "asset01-drill" and bias["detected"] and 0 <= bias["time_to_detect_s"] <= 6
    assert bias["injected_sensors"] == ["PI101", "TI102", "TI103"] and bias["peak_score"] > 1
    assert gan["asset"] == "pump-drill" and gan["kind"] == "gan:1" and len(gan["injected_sensors"]) == 5
    for row in r["injections"]:
        assert set(row) >= {
            "asset",
            "kind",
            "start",
            "detected",
            "time_to_detect_s",
            "false_alarms",
            "peak_score",
            "monitor_top_sensors",
            "injected_sensors",
            "pass",
        }
    assert r["criteria"]["monitor_scored_every_asset"]["pass"] and r["scrapes"] > 10
    assert (out / "report.md").read_text().startswith("# Drill report: test drill")
    assert (out / "timeline-asset01-drill.png").stat().st_size > 1000 and (out / "timeline-pump-drill.png").exists()


def test_a_drill_runs_against_a_sparkplug_plant(tmp_path: Path, mosquitto: Mosquitto, models: dict[str, Path]) -> None:
    """With [sparkplug], the copies are devices of the drill's own edge node; the monitor reads Sparkplug."""
    cfg = parse_config(
        {
            "instance": "drillspb",
            "broker": {"url": mosquitto.url},
            "metrics": {"port": 0},
            "source": {"format": "sparkplug", "group_ids": ["plant1"]},
            "models": {"assets": {"*/asset01*": str(models["asset01"])}, "unknown_asset": "reject"},
        }
    )
    mon = Monitor(cfg)
    mon.start()
    assert mon.wait_ready(15)
    (tmp_path / "drill.toml").write_text("""
name = "sparkplug drill"
rate = 10.0
cooldown_s = 4
[sparkplug]
group_id = "plant1"
[criteria]
max_time_to_detect_s = 6
max_false_alarms_per_hour = 1000
min_detection_rate = 1.0
[[assets]]
name = "asset01"
[[injections]]
asset = "asset01"
kind = "bias"
sensors = ["PI101", "TI102", "TI103"]
magnitude = 12
start_s = 6
duration_s = 5
""")
    out = tmp_path / "report"
    try:
        code = main(
            [
                "drill",
                "--scenario",
                str(tmp_path / "drill.toml"),
                "--broker",
                mosquitto.url,
                "--metrics-url",
                f"http://127.0.0.1:{mon.metrics_port}/metrics",
                "--report",
                str(out),
            ]
        )
    finally:
        mon.stop()
    r = json.loads((out / "report.json").read_text())
    (bias,) = r["injections"]
    assert bias["asset"] == "plantwatch-drill/asset01-drill" and bias["detected"], r
    assert code == 0 and r["criteria"]["monitor_scored_every_asset"]["pass"]
    assert (out / "timeline-plantwatch-drill_asset01-drill.png").stat().st_size > 1000


def test_a_drill_fails_with_exit_1_when_the_monitor_does_not_score_the_copies(
    tmp_path: Path, mosquitto: Mosquitto, monitor: Monitor
) -> None:
    (tmp_path / "d.toml").write_text(
        'rate = 10.0\ncooldown_s = 1\n[[assets]]\nname = "asset02"\n'
        '[[injections]]\nasset = "asset02"\nkind = "bias"\nstart_s = 1\nduration_s = 1\n'
    )
    code = main(
        [
            "drill",
            "--scenario",
            str(tmp_path / "d.toml"),
            "--broker",
            mosquitto.url,
            "--metrics-url",
            f"http://127.0.0.1:{monitor.metrics_port}/metrics",
            "--report",
            str(tmp_path / "r"),
        ]
    )
    r = json.loads((tmp_path / "r" / "report.json").read_text())
    assert code == 1 and not r["pass"] and not r["criteria"]["monitor_scored_every_asset"]["pass"]
    assert any("never scored asset02-drill" in p for p in r["problems"])


def test_a_drill_without_a_reachable_monitor_or_gan_exits_2(tmp_path: Path, mosquitto: Mosquitto) -> None:
    (tmp_path / "d.toml").write_text(
        '[[assets]]\nname = "asset01"\n[[injections]]\nasset = "asset01"\nkind = "gan:4"\nstart_s = 1\nduration_s = 1\n'
    )
    argv = ["drill", "--scenario", str(tmp_path / "d.toml"), "--broker", mosquitto.url, "--report", str(tmp_path / "r")]
    assert main([*argv, "--metrics-url", "http://127.0.0.1:9/metrics"]) == 2  # no GAN named
    (tmp_path / "d.toml").write_text((tmp_path / "d.toml").read_text().replace("gan:4", "bias"))
    assert main([*argv, "--metrics-url", "http://127.0.0.1:9/metrics"]) == 2  # nothing listens on port 9


def test_a_timeline_without_scores_says_no_data_instead_of_an_empty_plot() -> None:
    s = scenario.parse(BASE)
    record = DrillRecord(
        s, 1000.0, 1030.0, [], [], [], [], {"asset01-drill": ["a"]}, PublishSummary({"asset01-drill": 300})
    )
    r = report.evaluate(record)
    fig = report.figure(record, r, "asset01-drill")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any(t.startswith("no data: /metrics never showed a score for asset01-drill") for t in texts)
    scraped = [Scrape(1000.0 + k, "asset01-drill", 1.0, 2.0, 0.0, k) for k in range(5)]
    record.scrapes = scraped
    assert not any("no data" in t.get_text() for t in report.figure(record, r, "asset01-drill").axes[0].texts)


def test_drill_errors_are_said_in_words_and_a_missing_gan_names_the_command_that_makes_it(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "d.toml").write_text(
        '[[assets]]\nname = "asset01"\n[[injections]]\nasset = "asset01"\nkind = "bias"\nstart_s = 1\nduration_s = 1\n'
    )
    argv = ["drill", "--scenario", str(tmp_path / "d.toml"), "--broker", mosquitto.url, "--report", str(tmp_path / "r")]
    assert main([*argv, "--metrics-url", "http://127.0.0.1:9/metrics"]) == 2
    err = capsys.readouterr().err
    assert "http://127.0.0.1:9/metrics: connection refused" in err and "urlopen" not in err and "Errno" not in err
    (tmp_path / "d.toml").write_text((tmp_path / "d.toml").read_text().replace('"bias"', '"gan:4"'))
    assert main([*argv, "--metrics-url", "http://127.0.0.1:9/metrics", "--gan", str(tmp_path / "gans" / "x")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'gans' / 'x'}: no such GAN folder; make it with 'plantwatch gan train" in err


def test_drill_help_names_the_timeline_files_it_writes() -> None:
    from monitor.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    text = sub.choices["drill"].format_help()  # type: ignore[attr-defined]
    assert "timeline-<asset>-drill.png" in text and "timeline-<asset>.png" not in text
