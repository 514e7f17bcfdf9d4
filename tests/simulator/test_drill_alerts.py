"""Drills with ``--prometheus-url``: which firing of the alert answers which injection, and a short drill end to
end through mosquitto, a monitor process and Debian's Prometheus evaluating the shipped alert rule."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from monitor import wire
from monitor.cli import main
from simulator.drill import report, scenario
from simulator.drill.alerts import AlertOutcome, AlertRule, _spans, outcome
from simulator.drill.observe import Scrape
from simulator.drill.run import DrillRecord
from simulator.publish import PublishSummary
from tests.conftest import Mosquitto
from tests.deploy import DEPLOY, Prometheus, exe, free_port, running_monitor, wait_until

from .test_drill import BASE, _event, models  # noqa: F401 - fixture

ALERT = scenario.DEFAULT_ALERT
RULES = DEPLOY / "prometheus" / "rules" / "plantwatch.rules.yml"


# ---------------------------------------------------------------- judging, without Prometheus


def test_firing_samples_become_spans_and_the_last_one_may_still_be_firing() -> None:
    assert _spans([], 1.0, 100.0) == []
    assert _spans([10, 11, 12, 20, 21], 1.0, 100.0) == [(10, 12), (20, 21)]
    assert _spans([10, 11, 12, 99, 100], 1.0, 100.0) == [(10, 12), (99, None)]  # firing when last asked
    assert _spans([10, 11, 12, 99, 100], 1.0, math.inf) == [(10, 12), (99, 100)]  # had resolved by then


def test_an_injection_is_answered_by_the_first_firing_that_began_after_it() -> None:
    assert outcome([(90.0, 95.0), (105.0, 130.0), (150.0, None)], 100.0, 140.0) == AlertOutcome(True, 5.0, 30.0)
    assert outcome([(150.0, None)], 100.0, 140.0).fired is False  # after the injection's window
    held = outcome([(80.0, 125.0)], 100.0, 140.0)  # an earlier alarm, kept by keep_firing_for
    assert held.fired and held.latency_s is None and held.resolved_s == 25.0 and "already firing" in str(held.note)
    assert outcome([(10.0, 20.0)], 100.0, 140.0) == AlertOutcome(False)


def _record(alerts: dict[str, list] | None) -> DrillRecord:
    s = scenario.parse(
        {
            **BASE,
            "monitor": {"prometheus_url": "http://127.0.0.1:9/"},
            "injections": [
                {"asset": "asset01", "kind": "bias", "start_s": 10, "duration_s": 4},
                {"asset": "asset01", "kind": "drift", "start_s": 60, "duration_s": 4},
            ],
            "criteria": {"max_time_to_detect_s": 5, "min_detection_rate": 0.5},
        }
    )
    t0 = 1000.0
    truths = [
        wire.DrillTruth("asset01-drill", "001-bias", "bias", ("a",), t0 + 10, t0 + 13.9, 8.0, "end"),
        wire.DrillTruth("asset01-drill", "002-drift", "drift", ("c",), t0 + 60, t0 + 63.9, 6.0, "end"),
    ]
    alarms = [
        _event("asset01-drill", "raised", t0 + 12, t0 + 11.5),
        _event("asset01-drill", "cleared", t0 + 16, t0 + 11.5),
        _event("asset01-drill", "raised", t0 + 61, t0 + 60.5),
        _event("asset01-drill", "cleared", t0 + 66, t0 + 60.5),
    ]
    record = DrillRecord(
        s,
        t0,
        t0 + 80,
        [object()] * 2,
        truths,
        alarms,
        [],  # type: ignore[list-item]
        {"asset01-drill": ["a", "b", "c"]},
        PublishSummary({"asset01-drill": 800}),
    )
    record.alerts = alerts
    record.alert_rule = AlertRule(ALERT, 2.0, 3.0, 1.0)
    return record


def test_the_report_puts_alert_latency_beside_the_time_to_detect() -> None:
    """Both injections fire an alert; the second one never resolves, which fails the drill."""
    r = report.evaluate(_record({"asset01-drill": [(1015.0, 1020.0), (1064.0, None)]}))
    first, second = r["injections"]
    assert (first["time_to_detect_s"], first["alert_latency_s"], first["alert_resolved_s"]) == (2.0, 5.0, 10.0)
    assert (second["alert_fired"], second["alert_latency_s"], second["alert_resolved_s"]) == (True, 4.0, None)
    keys = list(first)
    assert keys[keys.index("time_to_detect_s") + 1] == "alert_latency_s"
    assert r["criteria"]["alert_fired"]["pass"] and not r["criteria"]["alert_resolved"]["pass"] and not r["pass"]
    assert r["prometheus"] == {
        "url": "http://127.0.0.1:9/",
        "alert": ALERT,
        "answered": True,
        "for_s": 2.0,
        "keep_firing_for_s": 3.0,
        "interval_s": 1.0,
    }
    md = report.markdown(r)
    assert "| time to detect (s) | alert latency (s) | alert resolved (s) |" in md
    assert "| 2 | 5 | 10 |" in md and "| 1 | 4 | - |" in md


def test_alarms_seen_on_metrics_but_never_on_mqtt_are_pointed_at_the_acl() -> None:
    record = _record(None)
    record.alarms = []
    record.scrapes = [Scrape(1012.0 + k, "asset01-drill", 9.0, 1.0, 1.0, 100.0 + k) for k in range(5)]
    r = report.evaluate(record)
    assert not r["pass"] and any(
        "no alarm event reached the drill" in p and "plant/+/alarm" in p for p in r["problems"]
    ), r["problems"]


def test_a_drill_whose_prometheus_did_not_answer_fails_the_alert_check() -> None:
    r = report.evaluate(_record(None))
    assert not r["criteria"]["alert_fired"]["pass"] and not r["pass"]
    assert r["injections"][0]["alert_note"] == "Prometheus did not answer"


# ---------------------------------------------------------------- end to end

FOR_S, KEEP_FIRING_FOR_S = 2, 3


def short_rules(dest: Path) -> Path:
    """The shipped rules with only ``for:`` and ``keep_firing_for:`` of the drill's alert shortened."""
    doc = yaml.safe_load(RULES.read_text())
    changed = 0
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == ALERT:
                rule["for"], rule["keep_firing_for"] = f"{FOR_S}s", f"{KEEP_FIRING_FOR_S}s"
                changed += 1
    assert changed == 1, f"{RULES} no longer has one {ALERT}"
    dest.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


@pytest.fixture
def monitor_process(tmp_path: Path, mosquitto: Mosquitto, models: dict[str, Path]) -> Iterator[int]:
    """``plantwatch monitor`` as a child process scoring asset01's drill copy; yields its metrics port."""
    port = free_port()
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(
        f'instance = "alerttest"\n[broker]\nurl = "{mosquitto.url}"\n[metrics]\nport = {port}\n'
        f'[models]\nunknown_asset = "reject"\n[models.assets]\n"asset01*" = "{models["asset01"]}"\n'
    )
    with running_monitor(cfg, port, tmp_path / "monitor.log"):
        yield port


@pytest.fixture
def prometheus(tmp_path: Path, monitor_process: int) -> Iterator[Prometheus]:
    prom = Prometheus(
        tmp_path / "prometheus",
        f"127.0.0.1:{monitor_process}",
        interval="1s",
        rules=[short_rules(tmp_path / "plantwatch.rules.yml")],
    )
    try:
        prom.wait_ready()
        wait_until(lambda: prom.query(f'up{{job="{prom.job}"}} == 1'), 30, "Prometheus scraping the monitor")
        yield prom
        prom.proc.stop()
    finally:
        prom.close()


@pytest.mark.skipif(exe("prometheus") is None, reason="Debian's prometheus is not installed")
def test_a_drill_reports_the_alert_firing_and_resolving_beside_the_monitors_detection(
    tmp_path: Path, mosquitto: Mosquitto, monitor_process: int, prometheus: Prometheus
) -> None:
    """A bias on asset01's drill copy raises the monitor's alarm, which Prometheus (scraping /metrics every
    1 s, evaluating every 1 s) turns into the shipped PlantwatchAssetInAlarm alert; the drill reads ALERTS
    back and reports when it fired and resolved, from the same origin as the monitor's time to detect.

    The rule file is a copy of deploy/prometheus/rules/plantwatch.rules.yml in which only the alert's
    ``for: 30s`` and ``keep_firing_for: 3m`` are shortened (to 2s and 3s): with the shipped values the drill
    would need more than four minutes to see the alert fire and resolve. Its expression is the shipped one."""
    (tmp_path / "drill.toml").write_text("""
name = "alert drill"
rate = 10.0
cooldown_s = 8
[criteria]
max_time_to_detect_s = 6
max_false_alarms_per_hour = 1000
[[assets]]
name = "asset01"
[[injections]]
asset = "asset01"
kind = "bias"
sensors = ["PI101", "TI102", "TI103"]
magnitude = 12
start_s = 4
duration_s = 8
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
            f"http://127.0.0.1:{monitor_process}/metrics",
            "--prometheus-url",
            prometheus.url,
            "--report",
            str(out),
        ]
    )
    r = json.loads((out / "report.json").read_text())
    (row,) = r["injections"]
    assert row["detected"] and 0 <= row["time_to_detect_s"] <= 6, row
    assert row["alert_fired"] and row["alert_latency_s"] is not None, row
    # It cannot fire before the alarm has lasted for:, and fires within a few scrapes/evaluations after that.
    assert row["time_to_detect_s"] + FOR_S - 0.5 <= row["alert_latency_s"] <= row["time_to_detect_s"] + FOR_S + 6, row
    assert row["alert_resolved_s"] is not None and row["alert_resolved_s"] > row["alert_latency_s"], row
    assert r["criteria"]["alert_fired"] == {"alert": ALERT, "value": "1/1", "pass": True}
    assert r["criteria"]["alert_resolved"] == {"alert": ALERT, "value": "1/1", "pass": True}
    assert r["prometheus"]["for_s"] == FOR_S and r["prometheus"]["keep_firing_for_s"] == KEEP_FIRING_FOR_S
    assert code == 0 and r["pass"], r
    # Prometheus itself agrees: the alert was firing, labelled as a drill, halfway through the reported span.
    mid = r["started"] + row["start"] + (row["alert_latency_s"] + row["alert_resolved_s"]) / 2
    (alert,) = prometheus.query(f'ALERTS{{alertname="{ALERT}",alertstate="firing"}}', at=mid)
    assert alert["metric"]["asset"] == "asset01-drill" and alert["metric"]["drill"] == "true"
    md = (out / "report.md").read_text()
    assert "| time to detect (s) | alert latency (s) | alert resolved (s) |" in md
    assert f"| {row['time_to_detect_s']:.3g} | {row['alert_latency_s']:.3g} | {row['alert_resolved_s']:.3g} |" in md
