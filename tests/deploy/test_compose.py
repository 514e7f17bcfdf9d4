"""deploy/compose.yaml: cannot run here (no container engine), so its structure is checked against the
repository: services, mounts that exist, ports, and the shipped configs wired to the paths they name."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from typing import Any

import pytest
import yaml

from . import DEPLOY

COMPOSE = DEPLOY / "compose.yaml"


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host source of every short-syntax volume (named volumes included)."""
    out = {}
    for v in service.get("volumes", []):
        source, target, *_ = v.split(":")
        out[target] = source
    return out


def secret_targets(service: dict[str, Any]) -> dict[str, str]:
    return {s["target"]: s["source"] for s in service.get("secrets", [])}


def conf_value(text: str, key: str) -> str:
    [value] = [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(key + " ")]
    return value


def test_services_and_their_images() -> None:
    """mosquitto, plantwatch (built from deploy/Dockerfile), prometheus and grafana, each restarting."""
    c = compose()
    assert set(c["services"]) == {"mosquitto", "plantwatch", "prometheus", "grafana"}
    build = c["services"]["plantwatch"]["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    for name, s in c["services"].items():
        assert s.get("restart") == "unless-stopped", name
        assert "image" in s, name


def test_bind_mounts_exist_and_volumes_are_declared() -> None:
    """Every relative source is a file or folder of the repository; every named volume is declared."""
    c = compose()
    for name, s in c["services"].items():
        for target, source in mounts(s).items():
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} (for {target}) is not in the repo"
            else:
                assert source in c["volumes"], f"{name}: volume {source} not declared"


def test_secrets_come_from_an_ignored_folder_and_are_documented() -> None:
    """Secrets are read from deploy/secrets/ (git-ignored, never shipped) and the README says how to make
    each one."""
    c = compose()
    readme = (DEPLOY.parent / "README.md").read_text()
    assert "secrets/" in (DEPLOY / ".gitignore").read_text().split()
    for name, secret in c["secrets"].items():
        assert secret["file"].startswith("./secrets/"), name
        assert secret["file"].removeprefix("./") in readme, (
            f"README.md (Run it in production) does not explain {secret['file']}"
        )
    used = {src for s in c["services"].values() for src in secret_targets(s).values()}
    assert used == set(c["secrets"])


def test_ports_are_published_by_the_shared_network_owner() -> None:
    """The others share mosquitto's network namespace, which publishes MQTT/TLS, Grafana and Prometheus."""
    c = compose()
    mq = c["services"]["mosquitto"]
    published = {p.rsplit(":", 1)[-1] for p in mq["ports"]}
    assert published == {"8883", "3000", "9090"}
    assert any(p.startswith("127.0.0.1:") and p.endswith(":9090") for p in mq["ports"]), "Prometheus has no auth"
    for name in ("plantwatch", "prometheus", "grafana"):
        s = c["services"][name]
        assert s["network_mode"] == "service:mosquitto" and "ports" not in s, name


def test_mosquitto_gets_the_shipped_config_and_every_file_it_names() -> None:
    """The shipped mosquitto.conf and ACL are mounted where the command and the config look for them; the
    password file and TLS files are secrets at the paths the config names."""
    mq = compose()["services"]["mosquitto"]
    conf_text = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    m = mounts(mq)
    conf_path = re.search(r"mosquitto -c (\S+)", " ".join(mq["command"])).group(1)  # type: ignore[union-attr]
    assert m[conf_path] == "./mosquitto/mosquitto.conf"
    assert m[conf_value(conf_text, "acl_file")] == "./mosquitto/plantwatch.acl"
    assert m[conf_value(conf_text, "persistence_location").rstrip("/")] == "mosquitto-data"
    secrets = secret_targets(mq)
    for key in ("password_file", "cafile", "certfile", "keyfile"):
        assert conf_value(conf_text, key) in secrets, key


def test_plantwatch_runs_the_shipped_config_against_the_loopback_listener() -> None:
    """The monitor reads deploy/plantwatch.toml at the path its command names, its password from the
    secret the environment points at, and that config's broker is mosquitto's loopback listener."""
    pw = compose()["services"]["plantwatch"]
    cfg_path = pw["command"][pw["command"].index("--config") + 1]
    assert mounts(pw)[cfg_path] == "./plantwatch.toml"
    assert pw["environment"]["PLANTWATCH_BROKER_PASSWORD_FILE"] in secret_targets(pw)
    assert mounts(pw)["/var/lib/plantwatch/models"] == "plantwatch-models"
    cfg = tomllib.loads((DEPLOY / "plantwatch.toml").read_text())
    listeners = [
        line.split()[1:]
        for line in (DEPLOY / "mosquitto" / "mosquitto.conf").read_text().splitlines()
        if line.startswith("listener ")
    ]
    host, port = cfg["broker"]["url"].removeprefix("mqtt://").split(":")
    assert [port, host] in listeners
    assert f'"{cfg_path}"' in (DEPLOY / "Dockerfile").read_text(), "the image's default command differs"


def test_prometheus_mounts_the_shipped_config() -> None:
    """Prometheus runs deploy/prometheus/prometheus.yml (rules and targets beside it) and its target is the
    monitor's metrics port on the shared loopback."""
    pr = compose()["services"]["prometheus"]
    m = mounts(pr)
    [config_flag] = [a for a in pr["command"] if a.startswith("--config.file=")]
    config_path = config_flag.split("=", 1)[1]
    folder = config_path.rsplit("/", 1)[0]
    assert m[folder] == "./prometheus" and (DEPLOY / "prometheus" / config_path.rsplit("/", 1)[1]).is_file()
    targets = yaml.safe_load((DEPLOY / "prometheus" / "targets" / "plantwatch.yml").read_text())
    port = tomllib.loads((DEPLOY / "plantwatch.toml").read_text())["metrics"]["port"]
    assert f"127.0.0.1:{port}" in targets[0]["targets"]
    assert m["/prometheus"] == "prometheus-data"


def test_grafana_mounts_the_provisioning() -> None:
    """Grafana gets the provisioning folder and the dashboards where the provider looks; the datasource
    URL reaches Prometheus on the shared loopback."""
    gr = compose()["services"]["grafana"]
    m = mounts(gr)
    assert m["/etc/grafana/provisioning"] == "./grafana/provisioning"
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "plantwatch.yml").read_text())
    assert m[provider["providers"][0]["options"]["path"]] == "./grafana/dashboards"
    ds = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "plantwatch.yml").read_text())
    assert ds["datasources"][0]["url"] == "http://127.0.0.1:9090"
    home = gr["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (DEPLOY / "grafana" / "dashboards" / home.rsplit("/", 1)[1]).is_file()


def test_docker_compose_accepts_the_file() -> None:
    """``docker compose config`` validates the file where Docker is installed (it is not on Debian CI)."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed: the structural checks above stand in for it")
    if subprocess.run([docker, "compose", "version"], capture_output=True, timeout=60).returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    r = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, timeout=60
    )
    missing_secret = re.search(r"secrets/\S+.*(no such file|not found|does not exist)", r.stderr, re.I)
    assert r.returncode == 0 or missing_secret, r.stderr
