"""'plantwatch demo' runs the whole chain, answers on /readyz and /metrics, and exits 0 on --duration."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from simulator.local_broker import free_port


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
def test_demo_runs_end_to_end(kind: str, demo_cache: Path, tmp_path: Path) -> None:
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
            scored = [ln for ln in body.splitlines() if ln.startswith('plantwatch_messages_total{asset="asset01"}')]
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
