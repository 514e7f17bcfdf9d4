"""A broker the demo starts never outlives the demo, even when the demo is killed outright."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from simulator.local_broker import free_port

SCRIPT = """
import sys, time
from simulator.local_broker import start
b = start(int(sys.argv[1]), prefer=sys.argv[2])
print("PID", b.proc.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:  # a zombie has ended
            return f.read().split()[2] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
def test_a_broker_ends_when_the_process_that_started_it_is_killed(kind: str) -> None:
    parent = subprocess.Popen([sys.executable, "-c", SCRIPT, str(free_port()), kind], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    broker_pid = next(int(line.split()[1]) for line in parent.stdout if line.startswith("PID "))
    assert _alive(broker_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    parent.stdout.close()
    deadline = time.monotonic() + 10
    while _alive(broker_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(broker_pid)
