"""Tests of deploy/: the shipped units, configs, rules and dashboards, run against real programs.

Helpers shared by these modules live here (a tiny trained model, a telemetry
publisher, monitor processes, /metrics reading); each test module declares its
own fixtures from them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from monitor import wire
from simulator.local_broker import free_port
from tests.cli import train

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
#: The folder the shipped configs name as their (example) model store.
SHIPPED_MODELS = "/var/lib/plantwatch/models/"

SENSORS = ["T1", "T2", "P1", "F1"]
_MODEL: Path | None = None


def history(n: int, seed: int) -> np.ndarray:
    """Normal operation of a small asset: one AR(1) latent mixed into the sensors, plus noise."""
    rng = np.random.default_rng(seed)
    lat = np.zeros(n)
    for t in range(1, n):
        lat[t] = 0.9 * lat[t - 1] + rng.normal(0, 0.3)
    mix = np.array([1.0, -0.5, 0.8, 0.3])
    return np.outer(lat, mix) + rng.normal(0, 0.1, (n, len(SENSORS))) + np.arange(len(SENSORS)) * 10.0


def tiny_model(workdir: Path) -> Path:
    """One small model per test session, made by ``plantwatch train`` (a few seconds)."""
    global _MODEL
    if _MODEL is not None and (_MODEL / "manifest.json").exists():
        return _MODEL
    csv = workdir / "history.csv"
    with open(csv, "w") as f:
        f.write("timestamp," + ",".join(SENSORS) + "\n")
        for i, row in enumerate(history(300, 0)):
            f.write(f"{1.7e9 + i}," + ",".join(f"{v:.6f}" for v in row) + "\n")
    out = train(csv, workdir / "tiny-model", epochs=2, window=2)
    _MODEL = out
    return out


def model_store(workdir: Path, model: Path, names: list[str]) -> Path:
    """A stand-in for /var/lib/plantwatch/models: each name a copy of ``model``."""
    store = workdir / "models"
    store.mkdir(exist_ok=True)
    for name in names:
        if not (store / name).exists():
            shutil.copytree(model, store / name)
    return store


def install_config(src: Path, dest: Path, store: Path) -> Path:
    """A shipped TOML config as an operator installs it: only the example model folder replaced."""
    text = src.read_text()
    assert SHIPPED_MODELS in text, f"{src} no longer names models under {SHIPPED_MODELS}"
    dest.write_text(text.replace(SHIPPED_MODELS, f"{store}/"))
    return dest


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read().decode()
    except OSError:
        return 0, ""


def samples(port: int, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called ``name`` on a monitor's /metrics: sorted label pairs -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    code, text = http_get(f"http://127.0.0.1:{port}/metrics")
    if code != 200:
        return {}
    return {
        tuple(sorted(s.labels.items())): float(s.value)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == name
    }


def by_asset(port: int, name: str) -> dict[str, float]:
    return {dict(k)["asset"]: v for k, v in samples(port, name).items()}


class Publisher:
    """A gateway: QoS 1 telemetry of the tiny model's sensors, waiting for the broker's acknowledgements."""

    def __init__(self, port: int, username: str | None = None, password: str | None = None) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-gateway-{os.getpid()}-{id(self)}")
        if username:
            self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(200)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.rows = history(2000, seed=5)

    def send(self, asset: str, seqs: range) -> None:
        info = None
        for seq in seqs:
            row = self.rows[seq % len(self.rows)]
            payload = wire.encode_telemetry(time.time(), seq, dict(zip(SENSORS, map(float, row))))
            info = self.client.publish(wire.telemetry_topic(wire.DEFAULT_PREFIX, asset), payload, qos=1)
        if info is not None:
            info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Process:
    """A child process with its output in a file; :meth:`close` ends it by its pid."""

    def __init__(self, cmd: list[str], log: Path, env: Mapping[str, str] | None = None) -> None:
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 (the process writes to it)
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})

    def tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def monitor_cmd(config_path: Path, *extra: str) -> list[str]:
    """``plantwatch monitor --config FILE`` as the units run it, with JSON log lines."""
    return [sys.executable, "-m", "monitor", "--log-json", "monitor", "--config", str(config_path), *extra]


def wait_ready(port: int, proc: Process, timeout: float = 60.0) -> None:
    def ready() -> bool:
        assert proc.alive(), f"process exited early:\n{proc.tail()}"
        return http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200

    wait_until(ready, timeout, f"/readyz 200 on port {port}")


@contextmanager
def running_monitor(config_path: Path, port: int, log: Path, env: Mapping[str, str] | None = None) -> Iterator[Process]:
    """``plantwatch monitor --config FILE`` ready on ``port``; on leaving, SIGTERM must end it with 0."""
    proc = Process(monitor_cmd(config_path), log, {"OMP_NUM_THREADS": "1", **(env or {})})
    try:
        wait_ready(port, proc)
        yield proc
        assert proc.stop() == 0, proc.tail()
    finally:
        proc.close()


def exe(name: str) -> str | None:
    """A program from PATH or the sbin folders Debian puts daemons in."""
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/usr/bin") if (p := Path(d) / name).exists()), None
    )


def short_tmpdir(prefix: str) -> Path:
    """A short /tmp folder (unix socket paths are limited to 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


# ---------------------------------------------------------------- metric names in PromQL

STANDARD_PREFIXES = ("process_", "python_")
STANDARD_NAMES = {"up"}
_PROMQL_WORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "atan2",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (functions, keywords, labels and durations left out)."""
    import re

    e = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)  # string literals
    e = re.sub(r"\{[^}]*\}", " ", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)  # ranges, subqueries
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.:$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _PROMQL_WORDS:
            continue
        names.add(word)
    return names


def exposed_metric_names() -> set[str]:
    """Every sample name a monitor's /metrics can show, from the real registry and collector."""
    from monitor.daemon import metrics

    reg = metrics.build_registry()
    state = metrics.State(contributions=True)
    a = metrics.AssetStats(
        "a", "m", "v", ("s1",), messages=1, score=0.5, threshold=1.0, last_ts=1.0, contrib=np.array([0.1]), top=(0,)
    )
    a.suppressed_until = 2.0  # in a maintenance window: its until-gauge is shown too
    a.drift, a.drift_top, a.outside_share = 0.5, (("s1", 0.5),), 0.0  # drift folded: its gauges are shown
    a.alarm, a.episode = True, "e-1"  # in alarm: its episode gauge is shown
    state.assets["a"] = a
    reg.register(metrics.Collector(state))
    return {s.name for fam in reg.collect() for s in fam.samples}


def unknown_metric_names(names: set[str], records: set[str]) -> set[str]:
    """Names that are neither plantwatch's own (exposed or recorded) nor standard."""
    own = exposed_metric_names() | records
    return {n for n in names if n not in own and n not in STANDARD_NAMES and not n.startswith(STANDARD_PREFIXES)}


# ---------------------------------------------------------------- a live Prometheus


class Prometheus:
    """Debian's prometheus with the shipped config and rules, scraping ``target`` every 2 s.

    ``rules`` replaces the shipped rule files (a test that cannot wait for the shipped ``for:`` durations
    loads a copy with shorter ones, and says so)."""

    def __init__(self, workdir: Path, target: str, interval: str = "2s", rules: list[Path] | None = None) -> None:
        import yaml

        binary = exe("prometheus")
        if binary is None:
            raise AssertionError("prometheus is not installed: run the tests through 'bash tests/run'")
        prom = DEPLOY / "prometheus"
        workdir.mkdir(parents=True, exist_ok=True)
        cfg = yaml.safe_load((prom / "prometheus.yml").read_text())
        cfg["global"].update(scrape_interval=interval, evaluation_interval=interval)
        cfg["rule_files"] = [str(prom / f) for f in cfg["rule_files"]] if rules is None else [str(r) for r in rules]
        cfg.pop("alerting", None)  # no Alertmanager here
        (workdir / "targets.yml").write_text(yaml.safe_dump([{"targets": [target]}]))
        for job in cfg["scrape_configs"]:
            job.update(scrape_interval=interval, scrape_timeout=interval)
            job["file_sd_configs"] = [{"files": [str(workdir / "targets.yml")], "refresh_interval": "5s"}]
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.job = cfg["scrape_configs"][0]["job_name"]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.started = time.time()
        self.proc = Process(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            workdir / "prometheus.log",
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            assert self.proc.alive(), f"prometheus exited:\n{self.proc.tail()}"
            return http_get(f"{self.url}/-/ready")[0] == 200

        wait_until(ready, timeout, "prometheus /-/ready")

    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/<path>; the ``data`` of a success, AssertionError with Prometheus' error otherwise."""
        import json
        import urllib.parse

        code, body = http_get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params, doseq=True)}", 30)
        doc = json.loads(body) if body.startswith("{") else {"status": "error", "error": body[:300]}
        assert code == 200 and doc.get("status") == "success", f"{path} {params}: {code} {doc.get('error')}"
        return doc["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr} if at is None else {"query": expr, "time": at}
        return self.api("query", **params)["result"]  # type: ignore[no-any-return]

    def query_range(self, expr: str, start: float, end: float, step: float = 2.0) -> list[dict[str, Any]]:
        data = self.api("query_range", query=expr, start=start, end=end, step=step)
        return data["result"]  # type: ignore[no-any-return]

    def close(self) -> None:
        self.proc.close()
