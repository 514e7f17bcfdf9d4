"""Maintenance windows end to end: a real mosquitto, the monitor as a process, 'plantwatch suppress' as operators run it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from monitor import cli, wire
from tests.monitor.conftest import MonitorProcess, Plant, retained, sample, wait_until

ANOMALY = 40.0  # added to P1: far outside normal operation, raises an alarm within a few samples


def config(tmp: Path, mosquitto: Any, model: Path, extra: str = "") -> Path:
    path = tmp / "plantwatch.toml"
    path.write_text(
        f'instance = "sup"\nstate_dir = "{tmp / "state"}"\n{extra}\n'
        f'[broker]\nurl = "{mosquitto.url}"\nclient_id = "sup-{tmp.name}"\n'
        f'[models]\ndefault = "{model}"\n[suppression]\nwarmup_rows = 5\n'
    )
    return path


def send(plant: Plant, asset: str, seqs: range, shift: float = 0.0) -> None:
    info = None
    for seq in seqs:
        row = plant.rows[seq % len(plant.rows)].copy()
        row[2] += shift
        info = plant.send(asset, seq, row=row)
    assert info is not None
    info.wait_for_publish(10)


def metric(mon: MonitorProcess, name: str, **labels: str) -> float:
    return sample(mon.port, name, labels) or 0.0


def scored(mon: MonitorProcess, asset: str, n: int) -> None:
    wait_until(lambda: metric(mon, "plantwatch_messages_total", asset=asset) >= n, 20, f"{n} messages of {asset}")


def alarm_state(port: int, asset: str) -> wire.AlarmEvent:
    ev = wire.decode_alarm(retained(port, wire.alarm_topic("plant", asset)) or b"")
    assert isinstance(ev, wire.AlarmEvent), ev
    return ev


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    try:
        code = cli.main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err


def test_a_suppression_prevents_the_alarm_then_expires_and_the_asset_rearms(
    tmp_path: Path,
    mosquitto: Any,
    model_dir: Path,
    plant: Plant,
    monitor_process: Callable[..., MonitorProcess],
    capsys: pytest.CaptureFixture[str],
    cli_logging: None,
) -> None:
    mon = monitor_process(["--config", str(config(tmp_path, mosquitto, model_dir))])
    mon.wait_ready()
    send(plant, "boiler", range(0, 30))
    scored(mon, "boiler", 30)
    broker = ("--broker", mosquitto.url)

    code, out = run(capsys, "suppress", "--asset", "boil*", "--for", "4s", "--reason", "valve swap", *broker)
    assert code == 0 and "sup: ok: suppressed 1 asset(s)" in out, out
    assert metric(mon, "plantwatch_suppressed", asset="boiler") == 1
    ev = alarm_state(mosquitto.port, "boiler")
    assert ev.state == "suppressed" and ev.until is not None and "valve swap" in ev.reason

    send(plant, "boiler", range(30, 60), shift=ANOMALY)  # would alarm: scored, exported, no episode
    scored(mon, "boiler", 60)
    assert metric(mon, "plantwatch_anomaly_score", asset="boiler") > metric(mon, "plantwatch_threshold", asset="boiler")
    assert metric(mon, "plantwatch_alarms_total", asset="boiler") == 0
    assert metric(mon, "plantwatch_alarm", asset="boiler") == 0

    # bad requests: one line, exit 2, counted, nothing changed
    code, out = run(capsys, "suppress", "--asset", "nothing*", "--for", "1h", "--reason", "x", *broker)
    assert code == 2 and "matches none of the 1 assets" in out, out
    code, out = run(capsys, "suppress", "--asset", "boiler", "--for", "1h", "--reason", "again", *broker)
    assert code == 2 and "overlapping" in out and "already suppressed" in out, out
    code, out = run(capsys, "suppress", "--asset", "boiler", "--for", "soon", "--reason", "x", *broker)
    assert code == 2 and out.strip().count("\n") == 0 and "--for" in out, out
    plant.raw(wire.control_topic("plant", "anonymous"), b"{not json").wait_for_publish(5)
    plant.raw(wire.control_topic("plant", "anonymous"), b'{"id": "x", "action": "reboot", "asset": "b"}')
    late = wire.ControlRequest("y", "suppress", "boiler", "r", until=4e9, sent=1.7e9)  # queued for years
    plant.raw(wire.control_topic("plant", "anonymous"), late.encode())
    wait_until(
        lambda: (
            metric(mon, "plantwatch_control_requests_total", result="bad_action") == 1
            and metric(mon, "plantwatch_control_requests_total", result="malformed") == 1
        ),
        10,
        "refusals counted",
    )
    assert metric(mon, "plantwatch_control_requests_total", result="unknown_asset") == 1
    wait_until(lambda: metric(mon, "plantwatch_control_requests_total", result="expired") == 1, 10, "late refused")
    assert metric(mon, "plantwatch_control_requests_total", result="overlapping") == 1
    assert metric(mon, "plantwatch_control_requests_total", result="accepted") == 1
    assert metric(mon, "plantwatch_suppressed", asset="boiler") == 1

    # it ends by itself, then a short visible warm-up, then alarms again
    wait_until(lambda: metric(mon, "plantwatch_suppressed", asset="boiler") == 0, 10, "the window's end")
    assert alarm_state(mosquitto.port, "boiler").state == "rearming"
    assert metric(mon, "plantwatch_asset_warming_up", asset="boiler") == 1
    send(plant, "boiler", range(60, 63), shift=ANOMALY)  # the transient: still nothing
    scored(mon, "boiler", 63)
    assert metric(mon, "plantwatch_alarms_total", asset="boiler") == 0
    send(plant, "boiler", range(63, 65), shift=ANOMALY)
    wait_until(lambda: alarm_state(mosquitto.port, "boiler").reason == "rearmed", 10, "re-armed")
    send(plant, "boiler", range(65, 90), shift=ANOMALY)
    wait_until(lambda: metric(mon, "plantwatch_alarms_total", asset="boiler") == 1, 10, "an alarm once re-armed")
    events = [e for e in mon.events() if e["event"] in ("control_accepted", "control_refused")]
    accepted = next(e for e in events if e["event"] == "control_accepted")
    assert accepted["user"] == "anonymous" and accepted["reason"] == "valve swap" and accepted["by"]
    assert {e["result"] for e in events} == {
        "accepted",
        "unknown_asset",
        "overlapping",
        "malformed",
        "bad_action",
        "expired",
    }


def test_a_suppression_survives_a_restart_and_unsuppress_ends_it(
    tmp_path: Path,
    mosquitto: Any,
    model_dir: Path,
    plant: Plant,
    monitor_process: Callable[..., MonitorProcess],
    capsys: pytest.CaptureFixture[str],
    cli_logging: None,
) -> None:
    cfg = ["--config", str(config(tmp_path, mosquitto, model_dir))]
    mon = monitor_process(cfg)
    mon.wait_ready()
    send(plant, "pump", range(0, 20))
    scored(mon, "pump", 20)
    broker = ("--broker", mosquitto.url)
    code, out = run(
        capsys, "suppress", "--asset", "pump", "--for", "1h", "--reason", "seal change", "--by", "kim", *broker
    )
    assert code == 0, out
    saved = json.loads((tmp_path / "state" / "suppressions-sup.json").read_text())
    assert [w["patterns"] for w in saved["windows"]] == [["pump"]] and saved["windows"][0]["by"] == "anonymous (kim)"
    assert mon.stop()[0] == 0

    again = monitor_process(cfg)
    again.wait_ready()
    send(plant, "pump", range(20, 50), shift=ANOMALY)
    scored(again, "pump", 30)
    assert metric(again, "plantwatch_suppressed", asset="pump") == 1
    assert metric(again, "plantwatch_alarms_total", asset="pump") == 0
    until = metric(again, "plantwatch_suppressed_until_timestamp_seconds", asset="pump")
    assert until == pytest.approx(saved["windows"][0]["end"])

    code, out = run(capsys, "suppressions", *broker)
    assert (
        code == 0
        and out.startswith("sup: pump now until ")
        and out.rstrip().endswith("seal change (by anonymous (kim))")
    )
    code, out = run(capsys, "unsuppress", "--asset", "pump", *broker)
    assert code == 0 and "ended 1 suppression" in out, out
    assert metric(again, "plantwatch_suppressed", asset="pump") == 0
    assert json.loads((tmp_path / "state" / "suppressions-sup.json").read_text())["windows"] == []
    code, out = run(capsys, "unsuppress", "--asset", "pump", *broker)
    assert code == 2 and "no operator suppression for 'pump'" in out, out


def test_a_scheduled_window_is_read_in_the_plant_time_zone(
    tmp_path: Path,
    mosquitto: Any,
    model_dir: Path,
    plant: Plant,
    monitor_process: Callable[..., MonitorProcess],
    capsys: pytest.CaptureFixture[str],
    cli_logging: None,
) -> None:
    """Kolkata is UTC+05:30: the same wall-clock times suppress 'boiler' there and would 'pump' if read as UTC."""
    tz = ZoneInfo("Asia/Kolkata")
    local = datetime.now(tz).replace(tzinfo=None, microsecond=0)
    utc = datetime.now(UTC).replace(tzinfo=None, microsecond=0)

    def window(asset: str, start: datetime, end: datetime) -> str:
        return (
            f'[[maintenance]]\nassets = ["{asset}"]\nreason = "turnaround"\n'
            f"start = {start.isoformat()}\nend = {end.isoformat()}\n"
        )

    extra = 'timezone = "Asia/Kolkata"\n' + window("boiler", local - timedelta(minutes=1), local + timedelta(hours=1))
    extra += window("pump", utc - timedelta(minutes=1), utc + timedelta(hours=1))
    mon = monitor_process(["--config", str(config(tmp_path, mosquitto, model_dir, extra))])
    mon.wait_ready()
    send(plant, "boiler", range(0, 20))
    send(plant, "boiler", range(20, 50), shift=ANOMALY)
    send(plant, "pump", range(0, 10))
    scored(mon, "boiler", 50)
    scored(mon, "pump", 10)
    assert metric(mon, "plantwatch_alarms_total", asset="boiler") == 0
    assert metric(mon, "plantwatch_suppressed", asset="boiler") == 1
    assert metric(mon, "plantwatch_suppressed", asset="pump") == 0
    end = (local + timedelta(hours=1)).replace(tzinfo=tz).timestamp()
    assert metric(mon, "plantwatch_suppressed_until_timestamp_seconds", asset="boiler") == end
    ev = alarm_state(mosquitto.port, "boiler")
    assert ev.state == "suppressed" and ev.until == end and ev.reason == "turnaround (maintenance[0])"
    lines = run(capsys, "suppressions", "--broker", mosquitto.url)[1].splitlines()
    assert len(lines) == 1 and lines[0].startswith("sup: boiler now until "), lines
    expired = [e for e in mon.events() if e["event"] == "maintenance_window_expired"]
    assert [e["window"] for e in expired] == ["maintenance[1]"]  # pump's: 5:30 h ago in Kolkata
    assert metric(mon, "plantwatch_maintenance_windows_expired") == 1


def test_a_control_request_among_sparkplug_messages_is_applied_answered_and_acknowledged(model_dir: Path) -> None:
    """Sparkplug intake: the request is taken out of the batch before the Sparkplug decoding (which would
    reject it as a bad topic), applied, answered on the reply topic and acknowledged with the batch."""
    from monitor import config as cfg_module
    from monitor.daemon import BatchQueue, State, load_models
    from monitor.daemon.worker import Worker
    from tests.monitor.daemon.test_sparkplug_intake import ROWS, Edge

    cfg = cfg_module.parse(
        {"models": {"default": str(model_dir)}, "source": {"format": "sparkplug", "group_ids": ["g"]}}
    )
    state, acked, replies = State(), [], []
    w = Worker(
        cfg,
        load_models(cfg),
        BatchQueue(10),
        state,
        acked.extend,
        lambda t, p: None,
        publish_command=lambda t, p: replies.append((t, p)),
    )
    e = Edge()
    w._process([*e.births(ROWS[0]), e.data(ROWS[1])])
    req = wire.ControlRequest("r1", "suppress", "gw/*", "valve swap", "kim", until=4e9)
    control = (wire.control_topic("plant", "plantwatch-operator"), req.encode(), 0.0, 7, 1, 0, False)
    w._process([e.data(ROWS[2]), control, e.data(ROWS[3])])
    assert state.assets["gw/d1"].messages == 4 and sum(state.rejected.values()) == 0
    assert state.assets["gw/d1"].suppressed_until == 4e9 and state.control["accepted"] == 1
    assert control in acked
    ((topic, payload),) = replies
    reply = wire.decode_reply(payload)
    assert topic == wire.reply_topic("plant", "default", "plantwatch-operator")
    assert isinstance(reply, wire.ControlReply) and reply.ok and reply.assets == ("gw/d1",)


def test_an_unreadable_suppression_file_is_set_aside_and_an_expired_window_dropped(tmp_path: Path) -> None:
    from monitor.daemon.suppression import Store
    from monitor.maintenance import Window

    store = Store(tmp_path / "suppressions-x.json")
    store.save([Window(("a*",), 0.0, 100.0, "old"), Window(("b",), 0.0, 300.0, "live", "kim", "r1")])
    assert [w.reason for w in store.load(now=200.0)] == ["live"]
    assert not list(tmp_path.glob("*.tmp"))  # written whole, then renamed
    (tmp_path / "suppressions-x.json").write_text('{"schema": 1, "windows": [{"patterns": 5}]}')
    assert store.load(now=200.0) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "suppressions-x.history.jsonl",  # every window ever applied, for 'plantwatch retrain'
        "suppressions-x.json.unreadable-200",
    ]
    history = (tmp_path / "suppressions-x.history.jsonl").read_text().splitlines()
    logged = [json.loads(line)["reason"] for line in history]
    assert logged == ["old", "live"]  # ended windows stay in the history
    store.save([Window(("b",), 0.0, 300.0, "live", "kim", "r1")])  # already logged: not again
    assert len((tmp_path / "suppressions-x.history.jsonl").read_text().splitlines()) == 2


def test_a_suppression_that_cannot_be_saved_says_so_to_the_operator(tmp_path: Path) -> None:
    """It still holds (the assets are in maintenance now), but the reply must not pretend it survives a restart."""
    from monitor.daemon.metrics import State
    from monitor.daemon.suppression import Gate, Store

    folder = tmp_path / "state"
    folder.write_text("a file where the state folder should be")  # every save fails
    replies: list[bytes] = []
    gate = Gate([], Store(folder / "suppressions-x.json"), 5, State(), lambda t, p: None,
                lambda t, p: replies.append(p), "plant", "x", now=1000.0)  # fmt: skip
    req = wire.ControlRequest("r1", "suppress", "boil*", "valve swap", until=5000.0, sent=1000.0)
    assert gate.handle("plantwatch-operator", req.encode(), ["boiler"], now=1000.0)
    reply = wire.decode_reply(replies[-1])
    assert isinstance(reply, wire.ControlReply) and reply.ok, reply
    assert "suppressed 1 asset(s)" in reply.message and "NOT saved" in reply.message, reply.message
    end = wire.ControlRequest("r2", "unsuppress", "boil*", sent=1001.0)
    assert gate.handle("plantwatch-operator", end.encode(), ["boiler"], now=1001.0)
    reply = wire.decode_reply(replies[-1])
    assert isinstance(reply, wire.ControlReply) and "ended 1" in reply.message and "NOT saved" in reply.message


def test_an_accepted_operating_point_ends_the_alarm_and_a_later_fault_still_raises(
    tmp_path: Path,
    mosquitto: Any,
    model_dir: Path,
    plant: Plant,
    monitor_process: Callable[..., MonitorProcess],
    capsys: pytest.CaptureFixture[str],
    cli_logging: None,
) -> None:
    """The process settles at a new point the operator accepts: without 'plantwatch accept' the alarm never
    ends (the threshold learns nothing while it is raised); with it, it clears at once and stays clear."""
    mon = monitor_process(["--config", str(config(tmp_path, mosquitto, model_dir))])
    mon.wait_ready()
    broker = ("--broker", mosquitto.url)
    for asset in ("boiler", "pump"):  # pump: the same rows, nobody accepts them
        send(plant, asset, range(0, 30))
        send(plant, asset, range(30, 80), shift=ANOMALY / 4)  # the new operating point
        scored(mon, asset, 80)
        assert metric(mon, "plantwatch_alarm", asset=asset) == 1

    code, out = run(capsys, "accept", "--asset", "nothing*", "--reason", "x", *broker)
    assert code == 2 and "unknown_asset" in out, out
    assert metric(mon, "plantwatch_alarm", asset="boiler") == 1  # a refusal changed nothing
    code, out = run(capsys, "accept", "--asset", "boil*", "--reason", "new burner", *broker)
    assert code == 0 and "sup: ok: accepted the operating point of 1 asset(s): boiler" in out, out
    assert metric(mon, "plantwatch_alarm", asset="boiler") == 0
    ev = alarm_state(mosquitto.port, "boiler")
    assert ev.state == "cleared" and "accepted by" in ev.reason and "new burner" in ev.reason, ev

    for asset in ("boiler", "pump"):  # the baseline is learned, then it is normal
        send(plant, asset, range(80, 330), shift=ANOMALY / 4)
        scored(mon, asset, 330)
    assert metric(mon, "plantwatch_alarm", asset="pump") == 1  # never ends without the accept
    assert metric(mon, "plantwatch_alarms_total", asset="boiler") == 1  # only the one before the accept
    assert metric(mon, "plantwatch_alarm", asset="boiler") == 0
    send(plant, "boiler", range(330, 360), shift=ANOMALY / 4 + ANOMALY)  # a fault on top of the new point
    scored(mon, "boiler", 360)
    assert metric(mon, "plantwatch_alarms_total", asset="boiler") == 2
