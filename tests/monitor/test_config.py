"""The config schema: file < environment < flags, errors that name the key, check-config exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from monitor import cli, config
from monitor.config import MonitorConfig
from monitor.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plantwatch.toml"
    path.write_text(text)
    return path


def error(**kw: object) -> str:
    with pytest.raises(ConfigError) as exc:
        config.load(**kw)  # type: ignore[arg-type]
    return str(exc.value)


def test_flags_override_the_environment_which_overrides_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'prefix = "site"\n[broker]\nurl = "mqtt://file:1883"\n[metrics]\nport = 9000\n[models]\ndefault = "m"\n',
    )
    env = {
        "PLANTWATCH_BROKER_URL": "mqtt://env:1883",
        "PLANTWATCH_METRICS_PORT": "9001",
        "PLANTWATCH_METRICS_CONTRIBUTIONS": "true",
    }
    assert config.load(str(path), environ={}).broker.url == "mqtt://file:1883"
    cfg = config.load(str(path), environ=env)
    assert (cfg.broker.url, cfg.metrics.port, cfg.metrics.contributions, cfg.prefix) == (
        "mqtt://env:1883",
        9001,
        True,
        "site",
    )
    cfg = config.load(str(path), {"broker": "mqtt://flag:1", "metrics_port": 9002, "prefix": None}, environ=env)
    assert (cfg.broker.url, cfg.metrics.port, cfg.prefix) == ("mqtt://flag:1", 9002, "site")


def test_relative_model_paths_in_the_file_are_relative_to_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[models]\ndefault = "models/a"\n[models.assets]\n"pump-*" = "models/p"\n')
    cfg = config.load(str(path), environ={})
    assert cfg.models.default == str(tmp_path / "models/a")
    assert cfg.models.assets == {"pump-*": str(tmp_path / "models/p")}
    assert config.load(None, {"model": "rel/m"}, environ={}).models.default == "rel/m"


def test_defaults_are_the_documented_ones() -> None:
    cfg = config.load(None, {"model": "m"}, environ={})
    assert cfg.metrics.bind == "127.0.0.1" and cfg.metrics.port == 9108 and cfg.prefix == "plant"
    assert cfg.client_id == "plantwatch-monitor-default" and cfg.broker.protocol == 4
    assert cfg.models.unknown_asset == "default" and not cfg.metrics.contributions


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[broker]\nhostname = "x"', "broker.hostname: unknown key"),
        ('colour = "red"', "colour: unknown key"),
        ('[metrics]\nport = "9108"', "metrics.port: must be int"),
        ("[metrics]\nport = 70000", "metrics.port: must be 0-65535"),
        ("[broker]\nprotocol = 3", "broker.protocol: must be 4 or 5"),
        ('[broker]\nurl = "http://x"', "broker.url:"),
        ("[worker]\nbatch_max_time = 5", "worker.batch_max_time: must be 0-1 seconds"),
        ('[models]\nunknown_asset = "ignore"', "models.unknown_asset: must be"),
        ('[detector]\nthreshold_method = "magic"', "detector.threshold_method: must be"),
        ('instance = "a/b"', "instance: must be a valid topic level"),
        ("broker = 3", "broker: must be a table"),
    ],
)
def test_an_invalid_file_names_the_dotted_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text + '\n[models.assets]\n"x" = "m"\n' if "[models]" not in text else text)
    assert key in error(path=str(path), flags={"model": "m"}, environ={})


def test_environment_and_flag_errors_say_where_the_value_came_from() -> None:
    assert "metrics.port (from PLANTWATCH_METRICS_PORT): must be int" in error(
        path=None, flags={"model": "m"}, environ={"PLANTWATCH_METRICS_PORT": "eighty"}
    )
    assert "metrics.port (from --metrics-port): must be 0-65535" in error(
        path=None, flags={"model": "m", "metrics_port": -1}, environ={}
    )


def test_a_config_without_a_model_or_with_a_default_policy_but_no_default_is_refused() -> None:
    assert error(path=None, flags={}, environ={}).startswith("models.default: no model configured")
    with pytest.raises(ConfigError, match=re.escape("models.unknown_asset: 'default' needs models.default")):
        config.parse({"models": {"assets": {"p*": "m"}}})
    assert config.parse({"models": {"assets": {"p*": "m"}, "unknown_asset": "reject"}}).models.default is None


def test_broker_credentials_and_tls_are_checked_at_start(tmp_path: Path) -> None:
    base = {"models": {"default": "m"}}
    with pytest.raises(ConfigError, match=re.escape("broker.password_env: environment variable PW_NOPE is not set")):
        config.parse({**base, "broker": {"username": "u", "password_env": "PW_NOPE"}})
    with pytest.raises(ConfigError, match=re.escape("broker.password_file: cannot read")):
        config.parse({**base, "broker": {"username": "u", "password_file": str(tmp_path / "none")}})
    with pytest.raises(ConfigError, match=re.escape("broker.username: a password is configured")):
        config.parse({**base, "broker": {"password_file": str(tmp_path / "none")}})
    with pytest.raises(ConfigError, match=re.escape("broker.ca_file: only used with an mqtts://")):
        config.parse({**base, "broker": {"ca_file": str(tmp_path / "ca.pem")}})
    with pytest.raises(ConfigError, match=re.escape("broker.ca_file: no such file")):
        config.parse({**base, "broker": {"url": "mqtts://h:8883", "ca_file": str(tmp_path / "ca.pem")}})
    (tmp_path / "pw").write_text("s3cret\n")
    cfg = config.parse(
        {**base, "broker": {"url": "mqtts://h", "username": "u", "password_file": str(tmp_path / "pw"), "protocol": 5}}
    )
    s = cfg.broker_settings()
    assert (s.tls, s.port, s.protocol, s.password()) == (True, 8883, 5, "s3cret")


def test_a_file_that_is_not_toml_or_missing_is_a_config_error(tmp_path: Path) -> None:
    assert "not valid TOML" in error(path=str(write(tmp_path, "[broker\n")), environ={})
    assert "no such config file" in error(path=str(tmp_path / "absent.toml"), environ={})


def test_every_setting_has_a_default_and_a_description() -> None:
    keys = config.describe()
    assert len(keys) >= 25
    for key, _default, description in keys:
        assert description and len(description) > 10, key
    env = config.env_keys()
    assert env["PLANTWATCH_BROKER_URL"][0] == "broker.url"
    assert env["PLANTWATCH_METRICS_PORT"][0] == "metrics.port"
    assert MonitorConfig().broker.url == "mqtt://127.0.0.1:1883"


def test_check_config_exits_0_for_a_valid_file_and_2_for_a_bad_key_or_model(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str], cli_logging: None
) -> None:
    good = write(tmp_path, f'[models]\ndefault = "{model_dir}"\n')
    assert cli.main(["check-config", str(good)]) == 0
    assert "ok" in capsys.readouterr().out
    bad_key = tmp_path / "bad.toml"
    bad_key.write_text(f'[models]\ndefault = "{model_dir}"\n[metrics]\nprot = 1\n')
    assert cli.main(["check-config", str(bad_key)]) == 2
    assert "metrics.prot: unknown key" in capsys.readouterr().err
    bad_model = tmp_path / "bad_model.toml"
    bad_model.write_text(f'[models]\ndefault = "{tmp_path}"\n')
    assert cli.main(["check-config", str(bad_model)]) == 2
    assert "not a plantwatch model folder" in capsys.readouterr().err


def test_assets_list_selects_a_shard_from_file_or_environment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """'assets' lists the assets one shard subscribes to; the environment takes a comma list."""
    from monitor import config
    from monitor.errors import ConfigError

    cfg = config.parse({"assets": ["line1-a", "line1-b"], "models": {"default": "m"}})
    assert cfg.assets == ["line1-a", "line1-b"]
    env = config.load(None, {"model": "m"}, {"PLANTWATCH_ASSETS": "p1, p2"})
    assert env.assets == ["p1", "p2"]
    import pytest

    with pytest.raises(ConfigError, match="assets"):
        config.parse({"assets": ["bad/name"], "models": {"default": "m"}})


def test_sensor_bounds_are_a_table_per_sensor_name_and_bad_ones_name_the_key(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[models]\ndefault = "m"\n[sensors.T1]\nmin = -40\nmax = 400.5\n[sensors."flow main"]\nmax = 3\n'
    )
    cfg = config.load(str(path), environ={})
    assert cfg.sensor_bounds() == {"T1": (-40.0, 400.5), "flow main": (None, 3.0)}
    assert config.read_sensor_bounds(path) == cfg.sensor_bounds()
    for table, message in (
        ("[sensors.T1]\nmin = 5\nmax = 1\n", "sensors.T1: min must be below max"),
        ("[sensors.T1]\nmni = 5\n", "sensors.T1.mni: unknown key"),
        ("[sensors.T1]\nmax = inf\n", "sensors.T1.max: must be a finite number"),
        ("[sensors]\nT1 = 5\n", "sensors.T1: must be a table"),
    ):
        path = write(tmp_path, '[models]\ndefault = "m"\n' + table)
        assert message in error(path=str(path), environ={})
        with pytest.raises(ConfigError, match=re.escape(message)):
            config.read_sensor_bounds(path)


def test_check_config_reports_every_problem_of_a_file_each_naming_its_dotted_key(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str], cli_logging: None, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Five mistakes in five places (a typo, a bad value, bad sensor bounds, a model folder that is not
    one, an environment variable that does not parse): one run names all of them, one line each, exit 2."""
    monkeypatch.setenv("PLANTWATCH_WORKER_QUEUE_SIZE", "many")
    path = write(
        tmp_path,
        "[metrics]\nprot = 1\n[broker]\nprotocol = 3\n[sensors.T1]\nmin = 5\nmax = 1\n"
        f'[models]\ndefault = "{model_dir}"\n[models.assets]\n"pump*" = "{tmp_path}"\n',
    )
    assert cli.main(["check-config", str(path)]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("plantwatch check-config: error:")]
    for needle in (
        "metrics.prot: unknown key",
        "broker.protocol: must be 4 or 5",
        "sensors.T1: min must be below max",
        "worker.queue_size (from PLANTWATCH_WORKER_QUEUE_SIZE): must be int",
        "models.assets.'pump*': ",
    ):
        assert sum(needle in ln for ln in lines) == 1, (needle, lines)
    assert len(lines) == 5
    assert "not a plantwatch model folder" in lines[-1]


def test_the_monitor_refuses_a_bad_config_naming_every_problem() -> None:
    with pytest.raises(ConfigError) as exc:
        config.parse({"metrics": {"port": -1}, "worker": {"batch_max_size": 0}, "models": {"default": "m"}})
    assert [p.split(":")[0] for p in exc.value.problems] == ["metrics.port", "worker.batch_max_size"]


def test_the_sparkplug_source_needs_group_ids_and_checks_its_names_templates_and_limits() -> None:
    base = {"models": {"default": "m/"}}
    cfg = config.parse({**base, "source": {"format": "sparkplug", "group_ids": ["plant1"]}})
    assert (cfg.source.device_asset, cfg.source.rebirth, cfg.source.stale_after) == (
        "{edge_node_id}/{device_id}",
        False,
        0.0,
    )
    assert config.parse(base).source.format == "json"
    bad = [
        ({"format": "sparkplug"}, "source.group_ids: format 'sparkplug' needs"),
        ({"format": "opcua"}, "source.format: must be 'json' or 'sparkplug'"),
        ({"group_ids": ["a/b"]}, "source.group_ids: must be distinct valid topic levels"),
        ({"device_asset": "{device}"}, "source.device_asset: must format into"),
        ({"device_asset": "{group_id}/{edge_node_id}/x/{device_id}"}, "source.device_asset: must format into"),
        ({"node_asset": "{device_id}"}, "source.node_asset: must format into"),
        ({"stale_after": -1}, "source.stale_after: must be >= 0"),
        ({"sample_period": -1}, "source.sample_period: must be >= 0"),
        ({"stale_after_metrics": {"T*": "soon"}}, "source.stale_after_metrics: must be a table of numbers"),
    ]
    for source, message in bad:
        with pytest.raises(ConfigError, match=re.escape(message)):
            config.parse({**base, "source": source})
    with pytest.raises(ConfigError, match="assets: applies to format 'json' only"):
        config.parse({**base, "assets": ["a"], "source": {"format": "sparkplug", "group_ids": ["g"]}})
    env = config.load(
        flags={"model": "m/"}, environ={"PLANTWATCH_SOURCE_FORMAT": "sparkplug", "PLANTWATCH_SOURCE_GROUP_IDS": "g1,g2"}
    )
    assert env.source.group_ids == ["g1", "g2"]
