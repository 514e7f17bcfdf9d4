"""deploy/systemd and deploy/plantwatch.toml: the units verify, are hardened, and the monitor speaks sd_notify."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor import config

from . import (
    DEPLOY,
    SHIPPED_MODELS,
    Process,
    Publisher,
    by_asset,
    free_port,
    install_config,
    model_store,
    short_tmpdir,
    tiny_model,
    wait_ready,
    wait_until,
)

UNIT = DEPLOY / "systemd" / "plantwatch.service"
TEMPLATE = DEPLOY / "systemd" / "plantwatch@.service"
SHIPPED_CONFIG = DEPLOY / "plantwatch.toml"
SHIPPED_BIN = "/opt/plantwatch/bin/plantwatch"
MAX_EXPOSURE = 2.5  # systemd-analyze security: 0 = fully locked down, 10 = unprotected


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file as section -> [(key, value)] in file order (keys repeat in systemd units)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"{path}:{n}: keep directives on one line"
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        assert current is not None and "=" in line, f"{path}:{n}: not a directive: {raw!r}"
        key, value = line.split("=", 1)
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], key: str, section: str = "Service") -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def plantwatch_script() -> str:
    """The real ``plantwatch`` console script pip installed (not a pyenv shim)."""
    beside = Path(sys.executable).parent / "plantwatch"
    found = str(beside) if beside.exists() else shutil.which("plantwatch")
    assert found, "the plantwatch console script is not installed (pip install -e .)"
    return found


def verify(units: list[Path], unit_path: Path | None = None) -> tuple[int, str]:
    """systemd-analyze verify; with ``unit_path`` systemd also reads drop-ins (NAME.service.d/) from there."""
    env = None if unit_path is None else {**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_path}:"}  # ':' keeps the defaults
    proc = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=units[0].parent,
        env=env,
    )
    return proc.returncode, (proc.stdout + proc.stderr).strip()


@pytest.fixture(scope="module")
def analyze(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip (with the reason) when systemd-analyze is missing or cannot verify even a trivial unit here."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    d = tmp_path_factory.mktemp("sd-probe")
    probe = d / "probe.service"
    probe.write_text("[Service]\nType=oneshot\nExecStart=/bin/true\n")
    code, out = verify([probe])
    if code != 0 or out:
        pytest.skip(f"systemd-analyze verify cannot run in this environment: {out[:300]}")


def runnable_copies(d: Path) -> list[Path]:
    """The units with ExecStart pointing at the real script (verify checks it exists); the template
    instantiated as it would be enabled."""
    script = plantwatch_script()
    out = []
    for src, name in ((UNIT, "plantwatch.service"), (TEMPLATE, "plantwatch@line1.service")):
        text = src.read_text()
        assert text.count(SHIPPED_BIN) == 1, f"{src}: expected one ExecStart with {SHIPPED_BIN}"
        (d / name).write_text(text.replace(SHIPPED_BIN, script))
        out.append(d / name)
    return out


def test_units_pass_systemd_analyze_verify(analyze: None, tmp_path: Path) -> None:
    """Both units verify with no warning at all, and the same check flags a misspelt directive."""
    units = runnable_copies(tmp_path)
    code, out = verify(units)
    assert code == 0 and out == "", out
    broken = tmp_path / "broken.service"
    broken.write_text(units[0].read_text().replace("WatchdogSec=", "WatchdogSecs="))
    code, out = verify([broken])
    assert "WatchdogSecs" in out, f"verify did not flag an unknown key: {code} {out}"


def test_units_security_exposure_is_low(analyze: None, tmp_path: Path) -> None:
    """systemd-analyze security --offline rates both units at most MAX_EXPOSURE (of 10)."""
    for unit in runnable_copies(tmp_path):
        proc = subprocess.run(
            ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        m = re.search(r"Overall exposure level for \S+: ([\d.]+)", proc.stdout + proc.stderr)
        if m is None:
            pytest.skip(f"systemd-analyze security --offline gave no rating here: {proc.stderr[:300]}")
        assert float(m.group(1)) <= MAX_EXPOSURE, proc.stdout[-3000:]


def test_unit_declares_the_service_contract() -> None:
    """Type=notify with a watchdog, restart on failure, reload by SIGHUP, its own user and directories,
    the hardening asked for and nothing that breaks PyTorch."""
    unit = parse_unit(UNIT)
    one = {k: v for k, v in unit["Service"]}
    assert one["Type"] == "notify"
    assert 10 <= int(one["WatchdogSec"].rstrip("s")) <= 120
    assert one["Restart"] == "on-failure"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["ExecStart"] == f"{SHIPPED_BIN} monitor --config /etc/plantwatch/plantwatch.toml"
    assert one.get("DynamicUser") == "yes" or one.get("User") not in (None, "root")
    assert one["StateDirectory"] == "plantwatch" and one["ConfigurationDirectory"] == "plantwatch"
    for key, want in (
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
    ):
        assert one[key] == want, key
    assert one["RestrictAddressFamilies"].split() == ["AF_UNIX", "AF_INET", "AF_INET6"]
    assert "MemoryDenyWriteExecute" not in one, "W^X memory breaks PyTorch's JIT-generated CPU kernels"
    assert "PLANTWATCH_BROKER_PASSWORD_FILE=%d/mqtt-password" in values(unit, "Environment")
    assert values(unit, "LoadCredential") == ["mqtt-password:/etc/plantwatch/mqtt-password"]
    assert values(unit, "WantedBy", "Install") == ["multi-user.target"]


def test_template_differs_from_the_unit_only_in_its_shard() -> None:
    """plantwatch@.service reads /etc/plantwatch/%i.toml, names the instance %i, and is otherwise the same."""
    unit, tmpl = parse_unit(UNIT), parse_unit(TEMPLATE)
    assert values(tmpl, "ExecStart") == [f"{SHIPPED_BIN} monitor --config /etc/plantwatch/%i.toml"]
    assert "PLANTWATCH_INSTANCE=%i" in values(tmpl, "Environment")

    def common(u: dict[str, list[tuple[str, str]]]) -> dict[str, list[tuple[str, str]]]:
        return {
            s: [
                (k, v)
                for k, v in kv
                if k not in ("ExecStart", "Description") and (k, v) != ("Environment", "PLANTWATCH_INSTANCE=%i")
            ]
            for s, kv in u.items()
        }

    assert common(unit) == common(tmpl)


def test_shipped_config_schema_is_valid() -> None:
    """deploy/plantwatch.toml parses under the monitor's schema with the credential the unit provides."""
    d = short_tmpdir("pw-cred-")
    try:
        (d / "mqtt-password").write_text("secret\n")
        cfg = config.load(str(SHIPPED_CONFIG), environ={"PLANTWATCH_BROKER_PASSWORD_FILE": str(d / "mqtt-password")})
    finally:
        shutil.rmtree(d)
    assert cfg.broker.username and cfg.broker.password_file and cfg.broker.protocol == 5
    assert cfg.metrics.port == 9108 and cfg.client_id == "plantwatch-monitor-main"
    assert all(p.startswith(SHIPPED_MODELS) for p in cfg.model_paths())


def test_shipped_config_passes_check_config_once_models_exist(tmp_path: Path) -> None:
    """``plantwatch check-config`` refuses the example model paths, and accepts the file as installed
    with real model folders there."""
    env = {"PLANTWATCH_BROKER_PASSWORD_FILE": str(tmp_path / "mqtt-password")}
    (tmp_path / "mqtt-password").write_text("secret\n")

    def run(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [plantwatch_script(), "check-config", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**_env(), **env},
        )

    refused = run(SHIPPED_CONFIG)
    assert refused.returncode == 2 and f"{SHIPPED_MODELS}default" in refused.stderr, refused.stderr
    store = model_store(tmp_path, tiny_model(tmp_path), ["default", "boiler"])
    ok = run(install_config(SHIPPED_CONFIG, tmp_path / "plantwatch.toml", store))
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout and "2 model(s)" in ok.stdout, ok.stdout


def _env() -> dict[str, str]:
    """This environment without the variables the tests set themselves."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PLANTWATCH_", "NOTIFY_", "WATCHDOG_"))}


class NotifySocket:
    """The service manager's end of sd_notify: a datagram socket collecting (time, message)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def times(self, prefix: str) -> list[float]:
        return [t for t, m in list(self.messages) if m.startswith(prefix)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    d = short_tmpdir("pw-notify-")
    s = NotifySocket(d / "notify")
    yield s
    s.close()
    shutil.rmtree(d, ignore_errors=True)


def test_monitor_speaks_sd_notify_as_the_unit_runs_it(
    mosquitto: Any, notify_socket: NotifySocket, tmp_path: Path
) -> None:
    """Run ExecStart with the unit's environment, NOTIFY_SOCKET and WATCHDOG_USEC=2 s against a real broker:
    READY=1 once subscribed, WATCHDOG=1 at least every second, RELOADING=1 then READY=1 on SIGHUP,
    STOPPING=1 and exit 0 on SIGTERM."""
    unit = parse_unit(UNIT)
    store = model_store(tmp_path, tiny_model(tmp_path), ["default", "boiler"])
    cfg_path = install_config(SHIPPED_CONFIG, tmp_path / "plantwatch.toml", store)
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "mqtt-password").write_text("secret\n")
    argv = shlex.split(values(unit, "ExecStart")[0])
    argv = [plantwatch_script(), *(str(cfg_path) if a == "/etc/plantwatch/plantwatch.toml" else a for a in argv[1:])]
    env = dict(_env())
    for assignment in values(unit, "Environment"):
        key, value = assignment.split("=", 1)
        env[key] = value.replace("%d", str(creds))
    port = free_port()
    env.update(
        CREDENTIALS_DIRECTORY=str(creds),
        NOTIFY_SOCKET=str(notify_socket.path),
        WATCHDOG_USEC="2000000",
        PLANTWATCH_BROKER_URL=mosquitto.url,
        PLANTWATCH_METRICS_PORT=str(port),
    )
    proc = Process(argv, tmp_path / "monitor.log", env)
    try:
        wait_until(lambda: notify_socket.times("READY=1"), 60, "READY=1")
        wait_ready(port, proc, 10)
        gw = Publisher(mosquitto.port)
        gw.send("boiler-1", range(30))
        gw.close()
        wait_until(lambda: by_asset(port, "plantwatch_messages_total").get("boiler-1") == 30, 20, "30 scored")
        time.sleep(3.5)
        beats = [t for t in notify_socket.times("WATCHDOG=1") if t >= notify_socket.times("READY=1")[0]]
        assert len(beats) >= 3, notify_socket.messages
        assert max(b - a for a, b in itertools.pairwise(beats)) < 2.0, "a gap longer than WATCHDOG_USEC"

        proc.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: len(notify_socket.times("READY=1")) >= 2, 30, "READY=1 after the reload")
        reloading = [m for _, m in notify_socket.messages if m.startswith("RELOADING=1")]
        assert reloading and re.search(r"MONOTONIC_USEC=\d+", reloading[0]), notify_socket.messages
        assert notify_socket.times("RELOADING=1")[0] < notify_socket.times("READY=1")[1]

        t0 = time.monotonic()
        code = proc.stop(timeout=20)
        assert code == 0, proc.tail()
        assert time.monotonic() - t0 < 10, "stop took longer than the monitor's own deadline"
        stopping = notify_socket.times("STOPPING=1")
        assert stopping and stopping[0] > notify_socket.times("READY=1")[-1]
    finally:
        proc.close()


def test_the_commented_detector_overrides_in_the_shipped_config_show_the_models_defaults() -> None:
    """Uncommenting a ``# key = value`` line of [detector] changes nothing: it shows what models use."""
    import tomllib

    from monitor.detector import DetectorSettings

    base = DetectorSettings()
    defaults = {**base.alarm.__dict__, "threshold_method": base.threshold_method}
    text = SHIPPED_CONFIG.read_text()
    detector = text[text.index("[detector]") : text.index("\n[", text.index("[detector]"))]
    shown = re.findall(r"^#\s*([a-z_]+)\s*=\s*(\S+)", detector, re.M)
    assert {k for k, _ in shown} == {"threshold_method", "on_delay", "off_delay", "deadband"}
    for key, value in shown:
        assert tomllib.loads(f"v = {value}")["v"] == defaults[key], key


RETRAIN = DEPLOY / "systemd" / "plantwatch-retrain.service"
RETRAIN_TIMER = DEPLOY / "systemd" / "plantwatch-retrain.timer"


def test_retrain_units_verify_and_are_locked_down(analyze: None, tmp_path: Path) -> None:
    """The retrain service and its timer verify with no warning; the service rates at most MAX_EXPOSURE."""
    text = RETRAIN.read_text()
    assert text.count(SHIPPED_BIN) == 1
    (tmp_path / RETRAIN.name).write_text(text.replace(SHIPPED_BIN, plantwatch_script()))
    shutil.copy(RETRAIN_TIMER, tmp_path / RETRAIN_TIMER.name)
    code, out = verify([tmp_path / RETRAIN.name, tmp_path / RETRAIN_TIMER.name])
    assert code == 0 and out == "", out
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", RETRAIN.name],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", proc.stdout + proc.stderr)
    if m is not None:
        assert float(m.group(1)) <= MAX_EXPOSURE, proc.stdout[-3000:]


def test_retrain_unit_runs_the_retrain_command_as_the_monitor_user() -> None:
    """Structure (checked without systemd too): a oneshot whose ExecStart the real CLI parser accepts as
    'plantwatch retrain', with the monitor's user and state directory; the timer starts it and makes up
    missed runs."""
    from monitor import cli

    unit, timer, monitor = parse_unit(RETRAIN), parse_unit(RETRAIN_TIMER), parse_unit(UNIT)
    assert values(unit, "Type") == ["oneshot"]
    (start,) = values(unit, "ExecStart")
    argv = start.split()
    assert argv[0] == SHIPPED_BIN
    args = cli.build_parser().parse_args(argv[1:])
    assert args.handler == "monitor.commands.retrain:retrain_command"
    assert args.state_dir == "/var/lib/plantwatch" and args.store.startswith("/var/lib/plantwatch/models/")
    for key in ("User", "Group", "StateDirectory", "DynamicUser"):
        assert values(unit, key) == values(monitor, key), key
    assert values(timer, "Unit", "Timer") == [RETRAIN.name]
    assert values(timer, "Persistent", "Timer") == ["yes"] and values(timer, "OnCalendar", "Timer")
    assert values(timer, "WantedBy", "Install") == ["timers.target"]


JETSTREAM_DROP_IN = DEPLOY / "systemd" / "plantwatch@.service.d" / "jetstream.conf"


def _jetstream_toml() -> str:
    """The JetStream settings every instance shares: the Kubernetes ConfigMap's (one file, all instances)."""
    toml = yaml.safe_load((DEPLOY / "kubernetes" / "configmap.yaml").read_text())["data"]["plantwatch.toml"]
    assert isinstance(toml, str)
    return toml


def test_jetstream_drop_in_verifies_on_the_template_and_replaces_its_command(analyze: None, tmp_path: Path) -> None:
    """systemd reads the drop-in beside plantwatch@0.service and the result verifies with no warning; the
    same drop-in without its 'ExecStart=' reset is refused (two ExecStart= on a notify service)."""
    script = plantwatch_script()
    (tmp_path / "plantwatch@0.service").write_text(TEMPLATE.read_text().replace(SHIPPED_BIN, script))
    drop_in = tmp_path / "plantwatch@0.service.d" / "jetstream.conf"
    drop_in.parent.mkdir()
    text = JETSTREAM_DROP_IN.read_text()
    assert text.count(SHIPPED_BIN) == 1
    drop_in.write_text(text.replace(SHIPPED_BIN, script))
    unit = [tmp_path / "plantwatch@0.service"]
    code, out = verify(unit, unit_path=tmp_path)
    assert code == 0 and out == "", out
    drop_in.write_text("\n".join(line for line in drop_in.read_text().splitlines() if line != "ExecStart="))
    code, out = verify(unit, unit_path=tmp_path)
    assert code != 0 and "more than one ExecStart" in out, out


def test_jetstream_drop_in_gives_each_instance_its_index(tmp_path: Path) -> None:
    """plantwatch@K runs 'plantwatch monitor' on the shared JetStream config with instance_index K, through
    the environment key the config declares; an index the instance count does not allow, or a name that is
    not a number, is a config problem naming source.instance_index (the monitor refuses to start)."""
    from monitor import cli

    drop_in = parse_unit(JETSTREAM_DROP_IN)
    assert values(drop_in, "ExecStart")[0] == "", "the template's ExecStart must be reset first"
    argv = values(drop_in, "ExecStart")[-1].split()
    assert argv[0] == SHIPPED_BIN
    args = cli.build_parser().parse_args(argv[1:])
    assert args.handler == "monitor.commands.monitor:monitor_command"
    path = tmp_path / Path(args.config).name
    for secret in ("nats-password", "ca.crt"):  # the secrets the config names, here rather than in /run
        (tmp_path / secret).write_text("x\n")
    path.write_text(_jetstream_toml().replace("/run/secrets/plantwatch/", f"{tmp_path}/"))
    ((name, value),) = (e.split("=", 1) for e in values(drop_in, "Environment"))
    assert config.env_keys()[name][0] == "source.instance_index" and value == "%i"
    for instance in ("0", "1", "2"):
        cfg, problems = config.Sources(str(path)).check({name: value.replace("%i", instance)})
        assert problems == [] and cfg.source.kind == "jetstream"
        assert cfg.source.instance_index == int(instance) < cfg.source.instances
    for instance in ("3", "line1"):
        _, problems = config.Sources(str(path)).check({name: value.replace("%i", instance)})
        assert problems and all("source.instance_index" in p for p in problems), problems
