"""Input drift: the statistic itself, and a shifted sensor in a live monitor firing the stale-model alert in promtool."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.daemon.drift import Drift, Reference, Sums, accumulate, worst
from tests.conftest import ROOT
from tests.monitor.conftest import SENSORS, MonitorProcess, Plant, sample, wait_until

RULES = ROOT / "deploy" / "prometheus" / "rules" / "plantwatch.rules.yml"


def description(drift: float, share: float) -> str:
    """The alert's description as Prometheus renders it (humanizePercentage: %.4g of the percentage)."""
    return (
        "The recent inputs of boiler on plantwatch (m1:9108) are far from its model's training data: input drift "
        f"{drift:.2f} training standard deviations, and {share * 100:.4g}% of recent messages outside the training "
        "range, for 30 minutes. Its scores mean less; the asset dashboard names the sensors drifting most. Retrain "
        "on recent normal history."
    )


def test_level_spread_and_share_outside_are_measured_in_training_units() -> None:
    ref = Reference(np.array([10.0, 0.0]), np.array([2.0, 1.0]), np.array([4.0, -3.0]), np.array([16.0, 3.0]))
    rng = np.random.default_rng(0)
    sums = Sums(2)
    a, b, muted = Drift(sums), Drift(sums), Drift(sums)
    for _ in range(50):  # a: sensor 0 moved by 3 training sd; b: sensor 1 twice as noisy; the third not counted
        rows_a = np.column_stack([10 + 6 + rng.normal(0, 2, 20), rng.normal(0, 1, 20)])
        rows_b = np.column_stack([10 + rng.normal(0, 2, 7), rng.normal(0, 2, 7)])
        accumulate(ref, [rows_a, np.zeros((0, 2)), rows_b, rows_a], [a, None, b, None])
        da, db = a.fold(200), b.fold(200)
    assert da is not None and db is not None and muted.fold(200) is None
    assert da[0] == pytest.approx(3.0, abs=0.3) and da[1] < 0.3
    assert db[1] == pytest.approx(1.0, abs=0.3) and db[0] < 0.4
    assert 0.3 < a.share < 0.7 and 0.05 < b.share < 0.25  # half of a passes the max of 16; |N(0, 2)| > 3: 13%
    assert worst(da, ["T1", "T2"], 1) == (("T1", pytest.approx(da[0])),)


def test_a_shifted_sensor_raises_input_drift_in_the_monitor_and_the_stale_model_alert_fires(
    tmp_path: Path, mosquitto: Any, model_dir: Path, plant: Plant, monitor_process: Callable[..., MonitorProcess]
) -> None:
    cfg = tmp_path / "plantwatch.toml"
    cfg.write_text(f'[broker]\nurl = "{mosquitto.url}"\n[models]\ndefault = "{model_dir}"\n[drift]\nwindow = 200\n')
    mon = monitor_process(["--config", str(cfg)])
    mon.wait_ready()
    plant.send_many("boiler", range(0, 400))
    wait_until(lambda: sample(mon.port, "plantwatch_input_drift", {"asset": "boiler"}) is not None, 20, "drift")
    normal = sample(mon.port, "plantwatch_input_drift", {"asset": "boiler"})
    assert normal is not None and normal < 2, normal

    info = None
    for seq in range(400, 800):  # T2 moves well away from anything training saw
        row = plant.rows[seq % len(plant.rows)].copy()
        row[SENSORS.index("T2")] += 25.0
        info = plant.send("boiler", seq, row=row)
    assert info is not None
    info.wait_for_publish(10)

    def drifted() -> float:
        v = sample(mon.port, "plantwatch_input_drift", {"asset": "boiler"})
        return v if v is not None and v > 5 else 0.0

    shifted = wait_until(drifted, 30, "the shift in plantwatch_input_drift")
    assert sample(mon.port, "plantwatch_input_drift_sensor", {"asset": "boiler", "sensor": "T2"}) == shifted
    share = sample(mon.port, "plantwatch_input_outside_training_ratio", {"asset": "boiler"})
    assert share is not None and share > 0.5

    # the live values, as Prometheus would scrape them for 45 minutes, through the shipped rules
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is not installed: run the tests through 'bash tests/run'")
    labels = 'job="plantwatch",instance="m1:9108",asset="boiler"'
    test = tmp_path / "stale.test.yml"
    test.write_text(
        f"rule_files: ['{RULES}']\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n"
        f"      - series: 'plantwatch_input_drift{{{labels}}}'\n        values: '{normal}x4 {shifted}x40'\n"
        f"      - series: 'plantwatch_input_outside_training_ratio{{{labels}}}'\n        values: '0x4 {share}x40'\n"
        "    alert_rule_test:\n"
        "      - {eval_time: 20m, alertname: PlantwatchModelStale, exp_alerts: []}\n"
        "      - eval_time: 40m\n        alertname: PlantwatchModelStale\n        exp_alerts:\n"
        "          - exp_labels: {severity: warning, job: plantwatch, instance: 'm1:9108', asset: boiler}\n"
        "            exp_annotations:\n"
        '              summary: "The model of boiler may be stale"\n'
        f'              description: "{description(shifted, share)}"\n'
        "              runbook_url: https://plantwatch.example/runbook#plantwatchmodelstale\n"
    )
    r = subprocess.run([tool, "test", "rules", str(test)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
