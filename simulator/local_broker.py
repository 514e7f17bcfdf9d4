"""A local broker for the demo, the tests and benchmarks, and people trying plantwatch without one.

Debian's ``mosquitto`` when it is installed (fast, what production uses);
otherwise amqtt, which pip installs with plantwatch (MQTT 3.1.1 only, slower,
fine for a demo). Either way it is a child process on 127.0.0.1 that we stop
by its pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from monitor import logs
from monitor.errors import BrokerError

log = logs.get("broker")

MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 1000000
max_inflight_messages 0
max_packet_size 1048576
log_dest stderr
log_type error
log_type warning
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _end_with_parent() -> None:
    """In the broker child: get SIGTERM when the process that started it dies, even by SIGKILL.

    The demo stops its broker on the way out, but a demo killed outright
    would leave a broker on its port for good (Linux only; elsewhere a no-op).
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"broker exited with status {proc.returncode} before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BrokerError(f"broker did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


@dataclass
class LocalBroker:
    """A running child broker; ``stop()`` ends it by pid."""

    kind: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start(port: int | None = None, prefer: str = "auto") -> LocalBroker:
    """Start mosquitto (or amqtt when mosquitto is absent or ``prefer='amqtt'``)."""
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="plantwatch-broker-"))
    mosquitto = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if prefer == "mosquitto" and not mosquitto:
        raise BrokerError("mosquitto is not installed (apt-get install mosquitto), or use the embedded broker")
    if prefer != "amqtt" and mosquitto:
        conf = workdir / "mosquitto.conf"
        # run as ourselves: mosquitto started as root would switch to its own user, and a change of
        # credentials clears the parent-death signal set below
        conf.write_text(MOSQUITTO_CONF.format(port=port) + f"user {pwd.getpwuid(os.getuid()).pw_name}\n")
        cmd = [mosquitto, "-c", str(conf)]
        kind = "mosquitto"
    else:
        cmd = [sys.executable, "-m", "simulator.amqtt_broker", "--port", str(port)]
        kind = "amqtt"
    # a session of its own: a Ctrl-C at the terminal goes to the demo, which stops the broker last (a broker
    # killed by the same Ctrl-C would drop the monitor's connection first and log a false disconnect)
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_end_with_parent,
        start_new_session=True,
    )
    try:
        wait_for_port(port, proc=proc)
    except BrokerError:
        proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    if kind == "amqtt":
        log.info(
            "embedded_broker_started",
            kind=kind,
            port=port,
            note="mosquitto not found; using the embedded amqtt broker (MQTT 3.1.1 only)",
        )
    else:
        log.info("embedded_broker_started", kind=kind, port=port)
    return LocalBroker(kind, port, proc, workdir)
