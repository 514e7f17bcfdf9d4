"""'plantwatch demo' runs the whole chain, answers on /readyz and /metrics, and exits 0 on --duration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from simulator.local_broker import free_port
from tests.conftest import ROOT


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "fmt", "asset"),
    [
        ("mosquitto", "json", "asset01"),
        ("amqtt", "json", "asset01"),
        ("mosquitto", "sparkplug", "plantwatch-sim/asset01"),
    ],
)
def test_demo_runs_end_to_end(kind: str, fmt: str, asset: str, demo_cache: Path, tmp_path: Path) -> None:
    metrics, broker = free_port(), free_port()
    with open(tmp_path / "demo.log", "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "monitor",
                "demo",
                "--duration",
                "25",
                "--metrics-port",
                str(metrics),
                "--broker-port",
                str(broker),
                "--broker-kind",
                kind,
                "--no-view",
                "--cache",
                str(demo_cache),
                "--format",
                fmt,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 240  # first run trains the demo models
        while time.monotonic() < deadline and _get(f"http://127.0.0.1:{metrics}/readyz")[0] != 200:
            assert proc.poll() is None, (tmp_path / "demo.log").read_text()
            time.sleep(0.5)
        assert _get(f"http://127.0.0.1:{metrics}/readyz")[0] == 200
        scored = ""
        for _ in range(40):
            _status, body = _get(f"http://127.0.0.1:{metrics}/metrics")
            scored = [ln for ln in body.splitlines() if ln.startswith(f'plantwatch_messages_total{{asset="{asset}"}}')]
            if scored and float(scored[0].split()[-1]) > 5:
                break
            time.sleep(0.5)
        assert scored and float(scored[0].split()[-1]) > 5
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    out = (tmp_path / "demo.log").read_text()
    assert f"mqtt://127.0.0.1:{broker}" in out
    assert ("amqtt" in out) == (kind == "amqtt")


def test_a_cached_demo_model_this_version_cannot_read_is_trained_again(tmp_path: Path) -> None:
    """An unhashed manifest (made before manifests were sealed) is not reused: the demo retrains it."""
    import json

    from simulator.demo import _usable

    folder = tmp_path / "cached"
    assert not _usable(folder)
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"format": "plantwatch-model", "format_version": 1}))
    assert not _usable(folder)


class Demo:
    """``plantwatch demo`` in a subprocess on free ports, its temp files under ``tmp`` (TMPDIR)."""

    def __init__(self, demo_cache: Path, tmp: Path) -> None:
        self.metrics, self.broker = free_port(), free_port()
        self.tmp = tmp / "tmpdir"
        self.tmp.mkdir()
        self.log = tmp / "demo.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "monitor",
                    "demo",
                    "--metrics-port",
                    str(self.metrics),
                    "--broker-port",
                    str(self.broker),
                    "--no-view",
                    "--cache",
                    str(demo_cache),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TMPDIR": str(self.tmp)},
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 300  # the first run trains the demo models
        while _get(f"http://127.0.0.1:{self.metrics}/readyz")[0] != 200:
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.5)

    def broker_folders(self) -> list[Path]:
        return list(self.tmp.glob("plantwatch-broker-*"))

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


def test_the_documented_drill_against_the_demo_passes(demo_cache: Path, tmp_path: Path) -> None:
    """deploy/drills/README.md: the demo scores every <asset>-drill copy with the asset's model, so the
    example's parametric injections are detected and the drill passes (it was refused as unknown_asset)."""
    import signal
    import tomllib

    scenario = tomllib.loads((ROOT / "deploy" / "drills" / "example.toml").read_text())
    injections = [i for i in scenario["injections"] if not i["kind"].startswith("gan:")][:2]
    for k, inj in enumerate(injections):  # the example's faults, sooner and shorter
        inj["start_s"], inj["duration_s"] = 20 + 25 * k, 20
    lines = [f'name = "short demo drill"\nrate = {scenario["rate"]}\ncooldown_s = 10\n[criteria]']
    lines += [f"{k} = {v}" for k, v in scenario["criteria"].items()]
    lines += [f'[[assets]]\nname = "{a}"' for a in sorted({i["asset"] for i in injections})]
    for inj in injections:
        lines.append("[[injections]]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in inj.items()))
    (tmp_path / "drill.toml").write_text("\n".join(lines) + "\n")
    demo = Demo(demo_cache, tmp_path)
    try:
        demo.wait_ready()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "monitor",
                "drill",
                "--scenario",
                str(tmp_path / "drill.toml"),
                "--broker",
                f"mqtt://127.0.0.1:{demo.broker}",
                "--metrics-url",
                f"http://127.0.0.1:{demo.metrics}/metrics",
                "--report",
                str(tmp_path / "report"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        _, metrics = _get(f"http://127.0.0.1:{demo.metrics}/metrics")
    finally:
        code = demo.stop(signal.SIGINT)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert proc.returncode == 0 and report["pass"], (proc.stderr[-2000:], report["problems"])
    assert all(i["detected"] for i in report["injections"])
    assert 'plantwatch_messages_rejected_total{reason="unknown_asset"} 0.0' in metrics
    for asset in {i["asset"] for i in injections}:
        assert f'plantwatch_messages_total{{asset="{asset}-drill"}}' in metrics
    out = demo.log.read_text()
    assert code == 0 and "demo stopped" in out and "broker_disconnected" not in out, out[-3000:]
    assert not demo.broker_folders()  # the broker's temp folder is gone


def test_the_demo_stops_cleanly_on_sighup_and_removes_its_broker_folder(demo_cache: Path, tmp_path: Path) -> None:
    import signal

    demo = Demo(demo_cache, tmp_path)
    try:
        demo.wait_ready()
        assert demo.broker_folders()  # the broker's folder, while it runs
    finally:
        code = demo.stop(signal.SIGHUP)
    assert code == 0 and "demo stopped" in demo.log.read_text()
    assert not demo.broker_folders()
