"""Broker logins of ``plantwatch simulate`` and ``plantwatch drill``: the monitor's [broker] keys and rules,
checked without a broker, then against the shipped mosquitto config (passwords, ACL, TLS) run for real."""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from monitor import broker_login as broker_options
from monitor import wire
from monitor.cli import main
from monitor.errors import ConfigError
from simulator.drill import scenario
from tests.deploy import free_port, running_monitor, wait_until
from tests.deploy.test_mosquitto import USERS, Broker, Client, broker  # noqa: F401 - fixture

from .test_drill import BASE, models  # noqa: F401 - fixture

NO_FLAGS = argparse.Namespace(
    broker=None, username=None, password_file=None, password_env=None, ca_file=None, cert_file=None, key_file=None
)


def flags(**kw: str) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(NO_FLAGS), **kw})


# ---------------------------------------------------------------- the rules, as the monitor's


def test_table_then_environment_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    table = {"url": "mqtt://file:1883", "username": "from-file", "password_file": str(tmp_path / "pw")}
    s = broker_options.settings(table, NO_FLAGS, environ={})
    assert (s.host, s.port, s.username, s.password()) == ("file", 1883, "from-file", "s3cret")
    env = {"PLANTWATCH_BROKER_USERNAME": "from-env", "PLANTWATCH_BROKER_URL": "mqtt://env:1"}
    s = broker_options.settings(table, NO_FLAGS, environ=env)
    assert (s.host, s.username) == ("env", "from-env")
    s = broker_options.settings(table, flags(broker="mqtts://flag:8883", username="from-flag"), environ=env)
    assert (s.host, s.port, s.tls, s.username) == ("flag", 8883, True, "from-flag")
    monkeypatch.setenv("MY_PW", "from-variable")
    s = broker_options.settings({"url": "mqtt://h:1", "username": "u"}, flags(password_env="MY_PW"), environ={})
    assert s.password() == "from-variable"


@pytest.mark.parametrize(
    "table, args, env, message",
    [
        ({"username": "u"}, {}, {}, r"broker.url: no broker"),
        (
            {"url": "mqtt://h:1"},
            {"password_file": "/nonexistent/pw"},
            {},
            r"broker.username: a password is configured but no username",
        ),
        (
            {"url": "mqtt://h:1", "username": "u"},
            {"password_file": "/nonexistent/pw"},
            {},
            r"broker.password_file \(from --password-file\): cannot read /nonexistent/pw",
        ),
        (
            {"url": "mqtt://h:1", "username": "u", "password_env": "NOT_SET"},
            {},
            {},
            r"broker.password_env: environment variable NOT_SET is not set",
        ),
        (
            {"url": "mqtt://h:1", "username": "u", "password_env": "A"},
            {},
            {"PLANTWATCH_BROKER_PASSWORD_FILE": "/x"},
            r"broker.password_file \(from PLANTWATCH_BROKER_PASSWORD_FILE\): give password_env or password_file, not both",
        ),
        (
            {"url": "mqtt://h:1"},
            {"ca_file": "/etc/hostname"},
            {},
            r"broker.ca_file \(from --ca-file\): only used with an mqtts:// broker.url",
        ),
        ({"url": "mqtt://h:1", "password": "plain"}, {}, {}, r"broker.password: unknown key"),
        ({"url": "mqtt://h:1", "client_id": "fixed"}, {}, {}, r"broker.client_id: unknown key"),
    ],
)
def test_bad_logins_are_refused_naming_the_key_and_where_it_was_set(
    table: dict, args: dict, env: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        broker_options.settings(table, flags(**args), environ=env)


def test_there_is_no_password_flag(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["simulate", "--broker", "mqtt://127.0.0.1:9"], ["drill", "--scenario", "x", "--report", "r"]):
        with pytest.raises(SystemExit) as exc:
            main([*command, "--password", "s3cret"])
        assert exc.value.code == 2 and "--password" in capsys.readouterr().err


def test_a_scenario_takes_the_login_keys_with_paths_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "d.toml").write_text(
        _toml_body() + '[broker]\nurl = "mqtt://h:1"\nusername = "plantwatch-drill"\npassword_file = "secrets/drill"\n'
    )
    s = scenario.load(tmp_path / "d.toml")
    assert s.broker_table() == {
        "url": "mqtt://h:1",
        "username": "plantwatch-drill",
        "password_file": str(tmp_path / "secrets" / "drill"),
    }
    with pytest.raises(ConfigError, match=r"broker.password: unknown key"):
        scenario.parse({**BASE, "broker": {"password": "plain"}})
    with pytest.raises(ConfigError, match=r"broker.username: must be str"):
        scenario.parse({**BASE, "broker": {"username": 7}})


def test_simulate_to_csv_refuses_login_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--to-csv", str(tmp_path / "h.csv"), "--samples", "5", "--username", "u"]) == 2
    assert "--username does not apply to --to-csv" in capsys.readouterr().err


def _toml_body(cooldown: float = 1, start: float = 1, duration: float = 1) -> str:
    return (
        f"rate = 10.0\ncooldown_s = {cooldown}\n[criteria]\nmax_time_to_detect_s = 6\nmax_false_alarms_per_hour = 1000\n"
        '[[assets]]\nname = "asset01"\n[[injections]]\nasset = "asset01"\nkind = "bias"\n'
        f'sensors = ["PI101", "TI102", "TI103"]\nmagnitude = 12\nstart_s = {start}\nduration_s = {duration}\n'
    )


# ---------------------------------------------------------------- against the shipped mosquitto config


@pytest.fixture
def recorder(broker: Broker) -> Iterator[Client]:
    """plantwatch-recorder, whom the ACL lets read telemetry, following every asset's."""
    c = Client(broker.plain_port, "plantwatch-recorder")
    assert c.subscribe(wire.telemetry_filter("plant")) == ["Granted QoS 1"]
    yield c
    c.close()


def _telemetry(c: Client) -> list[bytes]:
    return c.payloads(wire.telemetry_topic("plant", "asset01"))


def test_simulate_logs_in_with_a_password_file_or_variable(
    broker: Broker,
    recorder: Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "simulator-password").write_text(USERS["plantwatch-simulator"] + "\n")
    url = f"mqtt://127.0.0.1:{broker.plain_port}"
    run = ["simulate", "--broker", url, "--assets", "1", "--rate", "20", "--duration", "0.5"]
    assert (
        main([*run, "--username", "plantwatch-simulator", "--password-file", str(tmp_path / "simulator-password")]) == 0
    )
    wait_until(lambda: len(_telemetry(recorder)) == 10, 10, "10 samples at the recorder")
    monkeypatch.setenv("PLANTWATCH_BROKER_USERNAME", "plantwatch-simulator")  # as a unit's Environment= would
    monkeypatch.setenv("GATEWAY_PW", USERS["plantwatch-simulator"])
    assert main([*run, "--password-env", "GATEWAY_PW"]) == 0
    wait_until(lambda: len(_telemetry(recorder)) == 20, 10, "10 more samples at the recorder")


def test_simulate_with_a_wrong_or_no_password_is_refused_by_the_broker(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "wrong").write_text("not-the-password\n")
    run = ["simulate", "--broker", f"mqtt://127.0.0.1:{broker.plain_port}", "--assets", "1", "--duration", "0.5"]
    assert main([*run, "--username", "plantwatch-simulator", "--password-file", str(tmp_path / "wrong")]) == 3
    assert "refused the connection: Not authorized" in capsys.readouterr().err
    assert main(run) == 3  # anonymous
    assert "refused the connection" in capsys.readouterr().err


def test_simulate_logs_in_over_tls_with_the_ca_file(
    broker: Broker,
    recorder: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if broker.tls_port is None or broker.ca is None:
        pytest.skip("openssl is not installed: the TLS listener was left out")
    monkeypatch.setenv("GATEWAY_PW", USERS["plantwatch-simulator"])
    assert (
        main(
            [
                "simulate",
                "--broker",
                f"mqtts://127.0.0.1:{broker.tls_port}",
                "--ca-file",
                str(broker.ca),
                "--username",
                "plantwatch-simulator",
                "--password-env",
                "GATEWAY_PW",
                "--assets",
                "1",
                "--rate",
                "20",
                "--duration",
                "0.5",
            ]
        )
        == 0
    )
    wait_until(lambda: len(_telemetry(recorder)) == 10, 10, "10 samples over TLS at the recorder")


@pytest.fixture
def monitor_behind_acl(broker: Broker, tmp_path: Path, models: dict[str, Path]) -> Iterator[int]:
    """``plantwatch monitor`` logged in as plantwatch-monitor, its password file passed as the units pass
    it (PLANTWATCH_BROKER_PASSWORD_FILE), scoring asset01's drill copy; yields its metrics port."""
    (tmp_path / "monitor-password").write_text(USERS["plantwatch-monitor"] + "\n")
    port = free_port()
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(
        f'instance = "logintest"\n[broker]\nurl = "mqtt://127.0.0.1:{broker.plain_port}"\n'
        f'username = "plantwatch-monitor"\n[metrics]\nport = {port}\n[models]\nunknown_asset = "reject"\n'
        f'[models.assets]\n"asset01*" = "{models["asset01"]}"\n'
    )
    with running_monitor(
        cfg, port, tmp_path / "monitor.log", {"PLANTWATCH_BROKER_PASSWORD_FILE": str(tmp_path / "monitor-password")}
    ):
        yield port


def test_a_drill_logs_in_as_plantwatch_drill_and_passes_behind_the_shipped_acl(
    broker: Broker, monitor_behind_acl: int, tmp_path: Path
) -> None:
    """The scenario names the drill's user and a password file beside it. The shipped ACL lets that user
    write telemetry and drill truths and read alarms, but not read the drill topics: the drill judges from
    the truths it published, so it sees its injection start and end and passes."""
    (tmp_path / "drill-password").write_text(USERS["plantwatch-drill"] + "\n")
    (tmp_path / "drill.toml").write_text(
        _toml_body(cooldown=4, start=4, duration=6) + f'[broker]\nurl = "mqtt://127.0.0.1:{broker.plain_port}"\n'
        'username = "plantwatch-drill"\npassword_file = "drill-password"\n'
    )
    code = main(
        [
            "drill",
            "--scenario",
            str(tmp_path / "drill.toml"),
            "--report",
            str(tmp_path / "report"),
            "--metrics-url",
            f"http://127.0.0.1:{monitor_behind_acl}/metrics",
        ]
    )
    r = json.loads((tmp_path / "report" / "report.json").read_text())
    (row,) = r["injections"]
    assert row["detected"] and 0 <= row["time_to_detect_s"] <= 6 and not r["problems"], r
    assert r["criteria"]["monitor_scored_every_asset"]["pass"] and code == 0 and r["pass"], r


class _EmptyMetrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_drill_with_a_wrong_password_exits_3(
    broker: Broker,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Refused by the broker before it publishes anything (a stand-in /metrics answers the drill's check)."""
    (tmp_path / "wrong").write_text("nope\n")
    (tmp_path / "d.toml").write_text(_toml_body() + f'[broker]\nurl = "mqtt://127.0.0.1:{broker.plain_port}"\n')
    metrics = ThreadingHTTPServer(("127.0.0.1", 0), _EmptyMetrics)
    serving = threading.Thread(target=metrics.serve_forever, daemon=True)
    serving.start()
    try:
        code = main(
            [
                "drill",
                "--scenario",
                str(tmp_path / "d.toml"),
                "--report",
                str(tmp_path / "r"),
                "--metrics-url",
                f"http://127.0.0.1:{metrics.server_port}/metrics",
                "--username",
                "plantwatch-drill",
                "--password-file",
                str(tmp_path / "wrong"),
            ]
        )
    finally:
        metrics.shutdown()
        metrics.server_close()
        serving.join(5)
    assert code == 3 and "refused the connection: Not authorized" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_record_logs_in_as_plantwatch_recorder_and_writes_what_simulate_sends(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retraining loop against the shipped broker: it refuses anonymous clients, so record needs a login."""
    url = f"mqtt://127.0.0.1:{broker.plain_port}"
    (tmp_path / "recorder-password").write_text(USERS["plantwatch-recorder"] + "\n")
    monkeypatch.setenv("GATEWAY_PW", USERS["plantwatch-simulator"])
    login = ["--username", "plantwatch-recorder", "--password-file", str(tmp_path / "recorder-password")]
    record = ["record", "--broker", url, "--out", str(tmp_path / "history"), "--client-id", "login-test-recorder"]
    assert main([*record, *login, "--duration", "1"]) == 0  # creates the persistent session
    assert (
        main(
            [
                "simulate",
                "--broker",
                url,
                "--assets",
                "1",
                "--rate",
                "20",
                "--duration",
                "0.5",
                "--username",
                "plantwatch-simulator",
                "--password-env",
                "GATEWAY_PW",
            ]
        )
        == 0
    )
    assert main([*record, *login, "--duration", "2"]) == 0  # gets what was queued meanwhile
    rows = (tmp_path / "history" / "asset01.csv").read_text().splitlines()
    assert len(rows) == 1 + 10  # header + every sample
    assert main([*record, "--duration", "1"]) == 3  # anonymous: refused by the broker
