"""The monitor as a real process: signals, systemd notifications, restarts that lose nothing."""

from __future__ import annotations

import signal
import socket
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor import wire
from tests.monitor.conftest import MonitorProcess, Plant, retained, sample, wait_until

ASSETS = ("boiler", "pump")


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """An abstract-namespace datagram socket standing in for systemd's $NOTIFY_SOCKET."""
    name = f"pw-test-notify-{time.monotonic_ns()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(0.2)
    yield s, "@" + name
    s.close()


def notifications(sock: socket.socket, until: str, timeout: float) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
        if until in got[-1]:
            return got
    raise AssertionError(f"no {until} within {timeout}s; got {got}")


def test_sigterm_drains_notifies_systemd_publishes_offline_and_exits_0_within_10s(
    mosquitto: Any,
    model_dir: Path,
    plant: Plant,
    monitor_process: Callable[..., MonitorProcess],
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, addr = notify_socket
    mon = monitor_process(
        ["--broker", mosquitto.url, "--model", str(model_dir)],
        env={"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "400000", "PLANTWATCH_INSTANCE": "sig"},
    )
    assert any(m.startswith("READY=1") for m in notifications(sock, "READY=1", 30))
    mon.wait_ready(10)
    status = wire.status_topic("plant", "sig")
    assert retained(mosquitto.port, status) == wire.STATUS_ONLINE
    assert "WATCHDOG=1" in notifications(sock, "WATCHDOG=1", 5)  # from the worker loop, every 0.2 s
    plant.send_many("boiler", range(50))
    wait_until(lambda: sample(mon.port, "plantwatch_messages_total", {"asset": "boiler"}) == 50, 10, "scoring")
    code, took = mon.stop(timeout=10)
    assert code == 0 and took < 10
    assert "STOPPING=1" in notifications(sock, "STOPPING=1", 2)
    assert retained(mosquitto.port, status) == wire.STATUS_OFFLINE
    events = [e["event"] for e in mon.events()]
    assert events.index("monitor_stopping") < events.index("monitor_stopped")
    assert not [e for e in events if e == "message_rejected"]


class Publisher(threading.Thread):
    """Keeps publishing every asset at QoS 1 until stopped; remembers the last seq sent."""

    def __init__(self, port: int, rate: float = 150.0) -> None:
        super().__init__(daemon=True)
        self.plant, self.rate = Plant(port), rate
        self.sent = {a: 0 for a in ASSETS}
        self.halt = threading.Event()

    def run(self) -> None:
        info = None
        while not self.halt.is_set():
            for a in ASSETS:
                info = self.plant.send(a, self.sent[a])
                self.sent[a] += 1
            time.sleep(len(ASSETS) / self.rate)
        if info is not None:
            info.wait_for_publish(10)

    def stop(self) -> None:
        self.halt.set()
        self.join(15)
        self.plant.close()


def finals(mon: MonitorProcess) -> dict[str, tuple[int, int, int]]:
    return {
        e["asset"]: (e["first_seq"], e["last_seq"], e["messages"]) for e in mon.events() if e["event"] == "stream_final"
    }


def test_a_restart_under_load_with_the_same_client_id_loses_nothing(
    mosquitto: Any, model_dir: Path, monitor_process: Callable[..., MonitorProcess]
) -> None:
    """SIGTERM while a publisher keeps sending; the second run gets what was published meanwhile."""
    args = ["--broker", mosquitto.url, "--model", str(model_dir)]
    env = {"PLANTWATCH_BROKER_CLIENT_ID": "restart-test"}
    first = monitor_process(args, env, name="first")
    first.wait_ready(30)
    pub = Publisher(mosquitto.port)
    pub.start()
    try:
        wait_until(lambda: (sample(first.port, "plantwatch_messages_total", {"asset": "pump"}) or 0) > 100, 15, "load")
        code, _ = first.stop()
        assert code == 0
        time.sleep(0.5)  # published while no monitor runs: queued at the broker
        second = monitor_process(args, env, name="second")
        second.wait_ready(30)
        time.sleep(0.5)
    finally:
        pub.stop()
    run1 = finals(first)
    wait_until(
        lambda: all(
            sample(second.port, "plantwatch_messages_total", {"asset": a}) == pub.sent[a] - run1[a][2] for a in ASSETS
        ),
        15,
        "the backlog and the rest scored",
    )
    for a in ASSETS:
        assert sample(second.port, "plantwatch_sequence_gaps_total", {"asset": a}) == 0
    assert sample(second.port, "plantwatch_messages_rejected_total", {"reason": "duplicate"}) == 0
    assert second.stop()[0] == 0
    run2 = finals(second)
    for a in ASSETS:
        (f1, l1, n1), (f2, l2, n2) = run1[a], run2[a]
        assert f1 == 0 and n1 == l1 - f1 + 1, (a, run1[a])  # run 1 contiguous from the start
        assert f2 == l1 + 1 and n2 == l2 - f2 + 1, (a, run1[a], run2[a])  # run 2 picks up exactly there
        assert l2 == pub.sent[a] - 1  # ... to the last one published
    assert next(e for e in first.events() if e["event"] == "broker_connected")["session_present"] is False
    assert next(e for e in second.events() if e["event"] == "broker_connected")["session_present"] is True


def test_sighup_with_a_bad_model_keeps_the_old_one_and_a_second_sigint_forces_exit(
    mosquitto: Any, model_dir: Path, plant: Plant, tmp_path: Path, monitor_process: Callable[..., MonitorProcess]
) -> None:
    cfg = tmp_path / "plantwatch.toml"
    cfg.write_text(f'instance = "hup"\n[broker]\nurl = "{mosquitto.url}"\n[models]\ndefault = "{model_dir}"\n')
    mon = monitor_process(["--config", str(cfg)])
    mon.wait_ready(30)
    plant.send_many("boiler", range(20))
    wait_until(lambda: sample(mon.port, "plantwatch_messages_total", {"asset": "boiler"}) == 20, 10, "scoring")
    (tmp_path / "empty").mkdir()
    cfg.write_text(f'instance = "hup"\n[broker]\nurl = "{mosquitto.url}"\n[models]\ndefault = "{tmp_path / "empty"}"\n')
    mon.signal(signal.SIGHUP)
    wait_until(lambda: sample(mon.port, "plantwatch_config_reloads_total", {"result": "failed"}) == 1, 10, "reload")
    failed = [e for e in mon.events() if e["event"] == "reload_failed"]
    assert failed and "not a plantwatch model folder" in failed[0]["reason"]
    plant.send_many("boiler", range(20, 30))
    wait_until(lambda: sample(mon.port, "plantwatch_messages_total", {"asset": "boiler"}) == 30, 10, "old model scores")
    cfg.write_text(
        f'instance = "hup"\n[broker]\nurl = "{mosquitto.url}"\n[models]\ndefault = "{model_dir}"\n'
        "[metrics]\ncontributions = true\n"
    )
    mon.signal(signal.SIGHUP)
    wait_until(lambda: sample(mon.port, "plantwatch_config_reloads_total", {"result": "ok"}) == 1, 10, "good reload")
    plant.send_many("boiler", range(30, 31))
    wait_until(
        lambda: sample(mon.port, "plantwatch_top_sensor_contribution", {"asset": "boiler", "sensor": "T1"}) is not None,
        10,
        "contributions of every sensor",
    )
    t0 = time.monotonic()
    mon.signal(signal.SIGINT)
    mon.signal(signal.SIGINT)
    assert mon.proc.wait(10) in (0, 130) and time.monotonic() - t0 < 10
    # a forced stop leaves without finalising around a live worker, yet its last lines are written
    assert [e["event"] for e in mon.events()][-1] == "monitor_stopped"


def test_sdnotify_speaks_to_path_and_abstract_sockets_and_the_watchdog_paces_itself(tmp_path: Path) -> None:
    from monitor.daemon import sdnotify

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(tmp_path / "notify"))
        s.settimeout(1)
        env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"}
        assert sdnotify.notify("READY=1", env) and s.recv(100) == b"READY=1"
        dog = sdnotify.Watchdog(env)
        assert dog.enabled and dog.interval == 1.0
        dog.tick()
        dog.tick()  # within the interval: not sent again
        assert s.recv(100) == b"WATCHDOG=1"
        with pytest.raises(TimeoutError):
            s.settimeout(0.2)
            s.recv(100)
    assert not sdnotify.Watchdog({**env, "WATCHDOG_PID": "1"}).enabled  # meant for another process
    assert not sdnotify.notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "absent")})


def test_an_exception_in_an_mqtt_callback_is_counted_and_logged_never_raised(mosquitto: Any) -> None:
    import queue

    from structlog.testing import capture_logs

    from monitor.daemon import MqttSession
    from monitor.daemon.metrics import State
    from monitor.mqtt import settings_from_url

    state = State()
    ingest = MqttSession(settings_from_url(mosquitto.url), "t-guard", ["plant/+/telemetry"], queue.Queue(), state)

    def boom(*args: object) -> None:
        raise RuntimeError("bug in a callback")

    with capture_logs() as logs:
        for _ in range(3):
            ingest._guard("message", boom)(None, None, None)
    assert state.callback_errors["message"] == 3
    assert [e["event"] for e in logs] == ["callback_failed"]  # sampled: one line per 10 s


def _catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (the SigCgt mask of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def _torch_loaded(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def test_sighup_during_start_up_is_held_and_reloads_once_when_started(
    mosquitto: Any, model_dir: Path, plant: Plant, tmp_path: Path, monitor_process: Callable[..., MonitorProcess]
) -> None:
    """SIGHUP is caught from the first lines of the process, before the slow imports (torch), models and
    broker; five sent while it starts are one reload once it runs, and it scores (systemd's Restart=on-failure
    would not restart a process a SIGHUP killed)."""
    cfg = tmp_path / "plantwatch.toml"
    cfg.write_text(f'instance = "early-hup"\n[broker]\nurl = "{mosquitto.url}"\n[models]\ndefault = "{model_dir}"\n')
    mon = monitor_process(["--config", str(cfg)])
    pid = mon.proc.pid
    wait_until(lambda: mon.proc.poll() is not None or _catches(pid, signal.SIGHUP), 30, "a SIGHUP handler")
    assert mon.proc.poll() is None
    assert not _torch_loaded(pid), "SIGHUP is caught only after torch was imported: not before anything slow"
    for _ in range(5):
        mon.signal(signal.SIGHUP)
        time.sleep(0.01)
    assert not _torch_loaded(pid)  # all five came during start-up
    mon.wait_ready(60)
    wait_until(lambda: sample(mon.port, "plantwatch_config_reloads_total", {"result": "ok"}) == 1, 10, "one reload")
    plant.send_many("boiler", range(10))
    wait_until(lambda: sample(mon.port, "plantwatch_messages_total", {"asset": "boiler"}) == 10, 10, "scoring")
    assert sample(mon.port, "plantwatch_config_reloads_total", {"result": "ok"}) == 1
    assert [e["event"] for e in mon.events()].count("config_reloaded") == 1
    code, _ = mon.stop()
    assert code == 0
    # the installed plantwatch script (systemd's ExecStart) enters where this process did
    scripts = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["plantwatch"] == "monitor.__main__:main"


def test_a_monitor_killed_mid_backlog_scores_nothing_twice_after_its_restart(
    mosquitto: Any, model_dir: Path, monitor_process: Callable[..., MonitorProcess], tmp_path: Path
) -> None:
    """SIGKILL while draining a 40,000-message backlog; the next run scores exactly what the first had not.

    The first run's sequence file says which seq of each asset it scored (and how many messages): every
    message the broker will not redeliver is in it. The second run continues from it: what the broker
    redelivers up to that seq is a duplicate, the rest is scored once, with no gap. Before, the dedup
    state died with the process and at least 1,575 messages were scored twice.
    """
    import orjson

    n = 20_000
    args = ["--broker", mosquitto.url, "--model", str(model_dir)]
    env = {
        "PLANTWATCH_BROKER_CLIENT_ID": "kill-test",
        "PLANTWATCH_INSTANCE": "kill",
        "PLANTWATCH_STATE_DIR": str(tmp_path / "state"),
        "PLANTWATCH_STATE_INTERVAL": "0.1",  # the shortest: the streams are saved early in the backlog
    }
    setup = monitor_process(args, env, name="setup")
    setup.wait_ready(30)
    assert setup.stop()[0] == 0  # the persistent session exists: the backlog waits at the broker
    plant = Plant(mosquitto.port)
    try:
        ts0, info = time.time() - n, None
        for seq in range(n):
            for a in ASSETS:
                info = plant.send(a, seq, ts0 + seq)
        assert info is not None
        info.wait_for_publish(30)
    finally:
        plant.close()
    first = monitor_process(args, env, name="first")

    streams, sequences = tmp_path / "state" / "streams-kill.json", tmp_path / "state" / "seq-kill.json"

    def saved_streams() -> bool:
        try:
            return set(orjson.loads(streams.read_bytes())["assets"]) == set(ASSETS)
        except (FileNotFoundError, orjson.JSONDecodeError):
            return False

    def scored_on_disk() -> int:
        try:
            return sum(r["scored"] for r in orjson.loads(sequences.read_bytes())["assets"].values())
        except (FileNotFoundError, orjson.JSONDecodeError, KeyError):
            return 0

    # Read from the files the monitor writes, not from its /metrics: an idle machine drains the whole
    # backlog in about a second, less than a few HTTP answers from a monitor at full load take.
    wait_until(
        lambda: scored_on_disk() > 0.1 * n * len(ASSETS) and saved_streams(), 60, "a tenth scored, streams saved"
    )
    first.proc.kill()
    assert first.proc.wait(10) == -signal.SIGKILL
    saved = orjson.loads(sequences.read_bytes())["assets"]
    last = {a: saved[a]["seq"]["last"] for a in ASSETS}
    for a in ASSETS:
        assert saved[a]["scored"] == last[a] + 1, (a, saved[a])  # 0..last, each once
        assert last[a] < n - 1, f"the kill came after the end of the backlog: {last}"
    second = monitor_process(args, env, name="second")
    second.wait_ready(30)
    wait_until(
        lambda: all(sample(second.port, "plantwatch_messages_total", {"asset": a}) == n - 1 - last[a] for a in ASSETS),
        60,
        "the rest of the backlog scored",
    )
    time.sleep(0.5)  # nothing more comes
    duplicates = sample(second.port, "plantwatch_messages_rejected_total", {"reason": "duplicate"})
    for a in ASSETS:
        assert sample(second.port, "plantwatch_messages_total", {"asset": a}) == n - 1 - last[a]
        assert sample(second.port, "plantwatch_sequence_gaps_total", {"asset": a}) == 0
    assert second.stop()[0] == 0
    run2 = finals(second)
    for a in ASSETS:
        assert run2[a] == (last[a] + 1, n - 1, n - 1 - last[a]), (a, last[a], run2[a], duplicates)
    restored = [e for e in second.events() if e["event"] == "asset_restored"]
    assert {e["asset"] for e in restored} == set(ASSETS) and all(e["stream"] for e in restored)
    after = orjson.loads((tmp_path / "state" / "seq-kill.json").read_bytes())["assets"]
    assert {a: after[a]["scored"] for a in ASSETS} == dict.fromkeys(ASSETS, n)  # across both runs: each once
