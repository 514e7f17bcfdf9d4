"""Static sharding: two monitors from plantwatch@.service and deploy/shards/*.toml on one broker score
every asset exactly once; MQTT $share round-robin would split an asset's stream instead."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from monitor import wire

from . import (
    DEPLOY,
    Process,
    Publisher,
    by_asset,
    free_port,
    install_config,
    model_store,
    samples,
    tiny_model,
    wait_ready,
    wait_until,
)
from .test_systemd import parse_unit, values

TEMPLATE = DEPLOY / "systemd" / "plantwatch@.service"
SHARDS = {"line1": ["line1-boiler", "line1-pump"], "line2": ["line2-boiler", "line2-mixer", "line2-press"]}
PER_ASSET = 40


def shard_process(instance: str, broker_url: str, tmp: Path, store: Path) -> tuple[Process, int]:
    """plantwatch@<instance>.service as systemd would start it: ExecStart and Environment with %i, %d."""
    unit = parse_unit(TEMPLATE)
    cfg = install_config(DEPLOY / "shards" / f"{instance}.toml", tmp / f"{instance}.toml", store)
    creds = tmp / f"credentials-{instance}"
    creds.mkdir()
    (creds / "mqtt-password").write_text("secret\n")
    argv = shlex.split(values(unit, "ExecStart")[0].replace("%i", instance))
    assert argv[1:] == ["monitor", "--config", f"/etc/plantwatch/{instance}.toml"], argv
    argv = [sys.executable, "-m", "monitor", "monitor", "--config", str(cfg)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANTWATCH_")}
    for assignment in values(unit, "Environment"):
        key, value = assignment.split("=", 1)
        env[key] = value.replace("%i", instance).replace("%d", str(creds))
    port = free_port()
    env.update(PLANTWATCH_BROKER_URL=broker_url, PLANTWATCH_METRICS_PORT=str(port))
    proc = Process(argv, tmp / f"{instance}.log", env)
    return proc, port


def test_shard_configs_pass_check_config(tmp_path: Path) -> None:
    """deploy/shards/*.toml, installed with their model folders, pass ``plantwatch check-config``."""
    store = model_store(tmp_path, tiny_model(tmp_path), list(SHARDS))
    for instance in SHARDS:
        cfg = install_config(DEPLOY / "shards" / f"{instance}.toml", tmp_path / f"{instance}.toml", store)
        r = subprocess.run(
            [sys.executable, "-m", "monitor", "check-config", str(cfg)], capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 0, r.stderr


def test_two_shards_score_every_asset_exactly_once(mosquitto: Any, tmp_path: Path) -> None:
    """Each asset's messages are counted on exactly one monitor, all of them; the other monitor rejects
    them as unknown_asset; the two instances keep separate sessions and status topics."""
    store = model_store(tmp_path, tiny_model(tmp_path), list(SHARDS))
    started = {name: shard_process(name, mosquitto.url, tmp_path, store) for name in SHARDS}
    try:
        for proc, port in started.values():
            wait_ready(port, proc)
        gw = Publisher(mosquitto.port)
        for assets in SHARDS.values():
            for asset in assets:
                gw.send(asset, range(PER_ASSET))
        gw.close()
        published = PER_ASSET * sum(map(len, SHARDS.values()))

        def scored() -> dict[str, dict[str, float]]:
            return {name: by_asset(port, "plantwatch_messages_total") for name, (_, port) in started.items()}

        def rejected(name: str) -> float:
            return samples(started[name][1], "plantwatch_messages_rejected_total").get(
                (("reason", "unknown_asset"),), 0.0
            )

        def all_seen() -> bool:
            return sum(sum(c.values()) for c in scored().values()) >= published and all(
                rejected(name) >= published - PER_ASSET * len(assets) for name, assets in SHARDS.items()
            )

        wait_until(all_seen, 60, f"{published} messages scored across the shards")
        counts = scored()
        assert sum(sum(c.values()) for c in counts.values()) == published, counts
        for name, assets in SHARDS.items():
            assert counts[name] == {a: PER_ASSET for a in assets}, (name, counts)
            assert rejected(name) == published - PER_ASSET * len(assets)
            info = samples(started[name][1], "plantwatch_build_info")
            assert [dict(k)["monitor"] for k in info] == [name]
        for proc, _ in started.values():
            assert proc.stop() == 0, proc.tail()
    finally:
        for proc, _ in started.values():
            proc.close()


def _seq(payload: bytes) -> int:
    t = wire.decode_telemetry(payload)
    assert isinstance(t, wire.Telemetry), t
    return t.seq


def test_share_round_robin_splits_one_asset_across_consumers(mosquitto: Any) -> None:
    """Why the docs rule out $share: two consumers of one shared subscription each get part of a single
    asset's stream, so neither sees its consecutive samples (windows, thresholds, sequence gaps break)."""
    got: dict[str, list[int]] = {"a": [], "b": []}
    subscribed = threading.Barrier(3, timeout=10)

    def on_subscribe(*args: Any) -> None:
        subscribed.wait()

    clients = []
    for name in got:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"share-{name}", protocol=MQTTProtocolVersion.MQTTv5)
        c.on_connect = lambda cl, *a: cl.subscribe("$share/plantwatch/" + wire.telemetry_filter("plant"), qos=1)
        c.on_subscribe = on_subscribe
        c.on_message = lambda cl, u, m, name=name: got[name].append(_seq(m.payload))
        c.connect("127.0.0.1", mosquitto.port)
        c.loop_start()
        clients.append(c)
    try:
        subscribed.wait()
        gw = Publisher(mosquitto.port)
        gw.send("line1-boiler", range(20))
        gw.close()
        wait_until(lambda: len(got["a"]) + len(got["b"]) == 20, 10, "20 shared deliveries")
        assert got["a"] and got["b"], got
        assert sorted(got["a"] + got["b"]) == list(range(20))
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()
