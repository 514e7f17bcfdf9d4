"""``plantwatch retrain``: the promotion rule, and the loop's steps on a real store, history and state directory."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from monitor import cli
from monitor.commands.model_compare import Comparison, Side
from monitor.commands.retrain_rule import Rule, decide
from monitor.detector import model_store
from tests.monitor.conftest import SENSORS, history


def comparison(fa: tuple[float, float], drills: tuple[int, int] = (0, 0), n: int = 0, rows: int = 5000) -> Comparison:
    champ, chall = Side("v1", episodes_per_day=fa[0]), Side("v2", episodes_per_day=fa[1])
    champ.drills_detected, chall.drills_detected = drills
    return Comparison("boiler", 0.0, 86400.0, rows, ["boiler"], n, champ, chall)


@pytest.mark.parametrize(
    ("c", "rule", "promote"),
    [
        (comparison((2.0, 2.0)), Rule(), True),  # no worse is enough
        (comparison((2.0, 2.5)), Rule(), False),
        (comparison((2.0, 2.5)), Rule(false_alarm_slack_per_day=0.5), True),
        (comparison((2.0, 2.9)), Rule(max_false_alarm_ratio=1.5), True),
        (comparison((0.0, 0.1)), Rule(), False),  # a champion without alarms: any alarm is worse
        (comparison((2.0, 1.0), drills=(3, 2), n=3), Rule(), False),  # fewer alarms, but it misses a drill
        (comparison((2.0, 1.0), drills=(3, 2), n=3), Rule(drill_slack=1), True),
        (comparison((2.0, 1.0), drills=(2, 3), n=3), Rule(), True),
        (comparison((2.0, 1.0)), Rule(min_drills=1), False),  # drills required, none ran
        (comparison((2.0, 1.0), rows=999), Rule(), False),
    ],
)
def test_the_rule(c: Comparison, rule: Rule, promote: bool) -> None:
    d = decide(c, rule)
    assert d.promote is promote
    assert len(d.reasons) == 3 and sum(r.startswith("NOT MET") for r in d.reasons) == (0 if promote else 1)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def shadow_line(state: Path, champion: str, challenger: str, spans: tuple[int, int]) -> None:
    """What the monitor writes while it shadows: here champion and challenger with n one-row alarm episodes."""
    now = time.time()
    doc = {
        "asset": "boiler",
        "model": "boiler",
        "champion": champion,
        "challenger": challenger,
        "from": now - 2000,
        "to": now,
        "rows": 2000,
        "flagged": list(spans),
        "alone": list(spans),
        "spans": {
            role: [[now - 1000 + 10 * i, now - 999 + 10 * i] for i in range(n)]
            for role, n in zip(("champion", "challenger"), spans)
        },
    }
    with open(state / "shadow-mon.jsonl", "a") as f:
        f.write(json.dumps(doc) + "\n")


def test_train_shadow_promote_then_train_and_drop(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str], cli_logging: None
) -> None:
    store = tmp_path / "models" / "boiler"
    store.mkdir(parents=True)
    shutil.copytree(model_dir, store / "v0001")
    model_store.switch(store, "v0001", "initial", "t", "")
    t0 = 1.7e9
    csv = tmp_path / "boiler.csv"
    rows = history(400, 3)
    csv.write_text(
        "timestamp,"
        + ",".join(SENSORS)
        + "\n"
        + "".join(f"{t0 + i}," + ",".join(repr(float(v)) for v in r) + "\n" for i, r in enumerate(rows))
    )
    state = tmp_path / "state"
    state.mkdir()
    # an operator's window (rows 100-149), another asset's, a confirmed fault (rows 300-319), a false alarm
    window = {"patterns": ["boil*"], "start": t0 + 100, "end": t0 + 150, "reason": "valve", "by": "a", "id": "x"}
    other = {**window, "patterns": ["pump"]}
    (state / "suppressions-mon.history.jsonl").write_text(json.dumps(window) + "\n" + json.dumps(other) + "\n")
    labels = [
        {"asset": "boiler", "episode": "e-1", "label": "confirmed", "start": t0 + 300, "end": t0 + 319},
        {"asset": "boiler", "episode": "e-2", "label": "false_alarm", "start": t0 + 200, "end": t0 + 209},
    ]
    (state / "feedback-mon.jsonl").write_text("".join(json.dumps(x) + "\n" for x in labels))
    # the monitor's config: a scheduled window over rows 250-259, written in the plant's time zone (UTC+5:30)
    monitor_cfg = tmp_path / "plantwatch.toml"
    monitor_cfg.write_text(
        'timezone = "Asia/Kolkata"\n[broker]\nurl = "mqtt://127.0.0.1:1"\n[models]\ndefault = "m"\n'
        '[[maintenance]]\nassets = ["boiler"]\nreason = "turnaround"\n'
        "start = 2023-11-15T03:47:30\nend = 2023-11-15T03:47:40\n"  # = 1.7e9 + 250 .. + 260 UTC
    )
    common = ["retrain", "--store", str(store), "--data", str(csv), "--state-dir", str(state), "--shadow", "1s"]
    common += ["--config", str(monitor_cfg)]
    small = ["--window", "4", "--folds", "2", "--epochs", "2", "--min-shadow-rows", "100"]

    code, out = run(capsys, *common, *small)
    assert code == 0, out
    assert "maintenance: 60 row(s) in 2 window(s) left out" in out
    assert "confirmed fault e-1: 20 row(s) left out" in out and "false alarm e-2: 10 row(s) kept" in out
    assert "trained v0002 on 320 row(s)" in out, out
    assert model_store.pointer(store, "challenger") == "v0002" and model_store.pointer(store) == "v0001"
    code, out = run(capsys, *common, *small)
    assert code == 0 and "challenger v0002 in shadow for" in out, out

    time.sleep(1.1)
    shadow_line(state, "v0001", "v0002", (3, 1))  # fewer false alarms: promoted
    code, out = run(capsys, *common, *small)
    assert code == 0 and "promoted v0002 (was v0001)" in out, out
    assert model_store.pointer(store) == "v0002" and model_store.pointer(store, "challenger") is None
    report = json.loads(next((store / "reports").glob("retrain-*-v0002.json")).read_text())
    assert report["decision"]["promoted"] and report["rule"]["max_false_alarm_ratio"] == 1.0
    assert report["comparison"]["champion"]["episodes"] == 3 and report["comparison"]["challenger"]["episodes"] == 1
    assert "promote when" in report["rule"]["text"]
    assert model_store.history(store)[-1]["by"] == "plantwatch retrain"

    code, out = run(capsys, *common, *small)  # the next round: a new challenger, worse this time
    assert code == 0 and "trained v0003" in out, out
    time.sleep(1.1)
    shadow_line(state, "v0002", "v0003", (1, 4))
    code, out = run(capsys, *common, *small)
    assert code == 0 and "kept v0002; dropped challenger v0003" in out and "NOT MET: false alarms" in out, out
    assert model_store.pointer(store) == "v0002" and model_store.pointer(store, "challenger") is None
    assert "v0003" in model_store.versions(store)  # kept in the store, never current
    md = next((store / "reports").glob("retrain-*-v0003.md")).read_text()
    assert "not promoted" in md and "NOT MET: false alarms" in md

    code, out = run(capsys, *common, "--max-false-alarm-ratio", "-1")
    assert code == 2 and "rule:" in out
