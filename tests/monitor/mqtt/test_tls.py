"""TLS to the broker against a real mosquitto TLS listener: a certificate the monitor cannot verify is
logged at the first attempt, naming the broker's host and the verification's reason."""

from __future__ import annotations

import gc
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from monitor import config
from monitor.daemon import Monitor
from simulator.local_broker import free_port, wait_for_port
from tests.monitor.conftest import wait_until


@dataclass
class TlsBroker:
    port: int
    dir: Path

    def url(self, host: str = "127.0.0.1") -> str:
        return f"mqtts://{host}:{self.port}"


def _openssl(d: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_broker() -> Iterator[TlsBroker]:
    """mosquitto with a TLS listener whose certificate is self-signed, for CN/SAN ``localhost`` only."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed: run the tests through 'bash tests/run', which installs it")
    d = Path(tempfile.mkdtemp(prefix="pw-tls-"))
    _openssl(
        d,
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "server.key", "-out", "server.crt", "-days", "2", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost",
    )  # fmt: skip
    port = free_port()
    me = pwd.getpwuid(os.getuid()).pw_name
    (d / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\ncertfile {d / 'server.crt'}\nkeyfile {d / 'server.key'}\n"
        f"allow_anonymous true\npersistence false\nuser {me}\nlog_dest stderr\n"
    )
    log = open(d / "mosquitto.log", "wb")  # noqa: SIM115 (the broker writes to it)
    proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(d / "mosquitto.conf")],
                            stdout=log, stderr=log)  # fmt: skip
    try:
        wait_for_port(port, proc=proc)
        yield TlsBroker(port, d)
    finally:
        proc.terminate()
        proc.wait(5)
        log.close()
        shutil.rmtree(d, ignore_errors=True)


def _two_failed_attempts(broker: dict[str, str], model_dir: Path) -> list[dict[str, Any]]:
    """A monitor's log until its second failed connection attempt; the first warning comes at once."""
    mon = Monitor(config.parse({"broker": broker, "metrics": {"port": 0}, "models": {"default": str(model_dir)}}))
    with capture_logs() as logs:
        t0 = time.monotonic()
        mon.start()
        try:
            wait_until(lambda: any(e["event"] == "broker_unreachable" for e in logs), 5, "the first warning")
            assert time.monotonic() - t0 < 5  # not after paho's 30 s backoff
            assert not mon.ready()
            wait_until(lambda: mon.session is not None and mon.session.unreachable and mon.session._failures >= 2,
                       10, "a retry")  # fmt: skip
        finally:
            mon.stop()
    return logs


@pytest.mark.parametrize(
    ("host", "ca", "reason"),
    [
        ("localhost", False, "self-signed certificate"),  # no CA file: the system CAs do not know it
        ("127.0.0.1", True, "IP address mismatch"),  # trusted, but issued for localhost only
    ],
)
def test_a_broker_certificate_that_fails_verification_is_logged_at_once_with_host_and_reason(
    tls_broker: TlsBroker, model_dir: Path, host: str, ca: bool, reason: str
) -> None:
    """Within a few seconds (not after paho's 30 s backoff) one warning names the broker's host and port and
    the verification's reason; every failed handshake's socket is closed (none left to the garbage collector)."""
    broker = {"url": tls_broker.url(host)} | ({"ca_file": str(tls_broker.dir / "server.crt")} if ca else {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        logs = _two_failed_attempts(broker, model_dir)
        gc.collect()  # the monitor is gone: a socket it left open would be closed (and warned about) now
    [first, *_] = [e for e in logs if e["event"] == "broker_unreachable"]
    assert first["attempts"] == 1 and first["broker"] == tls_broker.url(host)
    assert f"certificate of {host}:{tls_broker.port} failed verification" in first["reason"], first
    assert reason in first["reason"], first
    assert not [str(w.message) for w in caught if "SSLSocket" in str(w.message)]


def test_the_same_broker_with_its_certificate_trusted_and_the_right_name_connects(
    tls_broker: TlsBroker, model_dir: Path
) -> None:
    """The control: the failures above are the certificate's, not the listener's."""
    broker = {"url": tls_broker.url("localhost"), "ca_file": str(tls_broker.dir / "server.crt")}
    mon = Monitor(config.parse({"broker": broker, "metrics": {"port": 0}, "models": {"default": str(model_dir)}}))
    mon.start()
    try:
        assert mon.wait_ready(10), mon.readiness_problems()
    finally:
        mon.stop()
