"""deploy/mosquitto: the production broker config runs, and its ACL lets each user do only its job."""

from __future__ import annotations

import os
import pwd
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from monitor import wire
from monitor.sparkplug import topics as spb_topics
from simulator.local_broker import wait_for_port

from . import (
    DEPLOY,
    Process,
    Publisher,
    by_asset,
    exe,
    free_port,
    install_config,
    model_store,
    monitor_cmd,
    short_tmpdir,
    tiny_model,
    wait_ready,
    wait_until,
)

CONF = DEPLOY / "mosquitto" / "mosquitto.conf"
ACL = DEPLOY / "mosquitto" / "plantwatch.acl"
USERS = {
    "plantwatch-monitor": "m-secret",
    "plantwatch-simulator": "s-secret",
    "plantwatch-drill": "d-secret",
    "plantwatch-recorder": "r-secret",
    "plantwatch-viewer": "v-secret",
    # gateways: one account each, named after the asset (JSON) or the edge node (Sparkplug) they publish
    "pump-1": "p1-secret",
    "pump-2": "p2-secret",
    "gw1": "gw1-secret",
    "gw2": "gw2-secret",
    "plantwatch-operator": "o-secret",
}
TELEMETRY = wire.telemetry_topic("plant", "pump-1")
ALARM = wire.alarm_topic("plant", "pump-1")
STATUS = wire.status_topic("plant", "main")


def directives(text: str) -> list[tuple[str, str]]:
    return [
        (line.split(None, 1)[0], line.split(None, 1)[1] if " " in line.strip() else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


def test_shipped_config_has_the_production_settings() -> None:
    """TLS on 8883 with CA/cert/key, passwords and the ACL for every listener, no anonymous access,
    persistence, a deep QoS 1 queue and expiring abandoned sessions."""
    d = directives(CONF.read_text())
    one = dict(d)
    listeners = [v for k, v in d if k == "listener"]
    assert "8883" in listeners and "1883 127.0.0.1" in listeners, listeners
    tls = [k for k, _ in d[[k for k, _ in d].index("listener") + 1 :]]
    assert {"cafile", "certfile", "keyfile"} <= set(tls)
    assert one["per_listener_settings"] == "false" and one["allow_anonymous"] == "false"
    assert one["password_file"] and one["acl_file"].endswith("plantwatch.acl")
    assert one["persistence"] == "true"
    assert int(one["max_queued_messages"]) >= 1_000_000
    assert one["persistent_client_expiration"][-1] in "hdwmy"


def tls_files(d: Path) -> bool:
    """A throw-away CA and a server certificate for 127.0.0.1 (False when openssl is missing)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return False
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *a: subprocess.run([openssl, *a], cwd=d, check=True, capture_output=True, timeout=60)  # noqa: E731
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=plantwatch-test-ca")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )
    return True


@dataclass
class Broker:
    plain_port: int
    tls_port: int | None
    ca: Path | None
    proc: Process


def variant(d: Path, plain: int, tls: int | None) -> str:
    """The shipped config with this test's ports and files: loopback listener on ``plain``, the TLS
    listener on ``tls`` (dropped when there is no openssl), the shipped ACL copied unchanged."""
    out = []
    drop_tls = tls is None
    for raw in CONF.read_text().splitlines():
        words = raw.split()
        key = words[0] if words and not raw.startswith("#") else ""
        if key == "listener":
            if words[1] == "8883":
                if drop_tls:
                    continue
                raw = f"listener {tls} 127.0.0.1"
            else:
                raw = f"listener {plain} 127.0.0.1"
        elif key in ("cafile", "certfile", "keyfile", "tls_version", "require_certificate") and drop_tls:
            continue
        elif key in ("cafile", "certfile", "keyfile"):
            raw = f"{key} {d / Path(words[1]).name}"
        elif key == "password_file":
            raw = f"password_file {d / 'passwd'}"
        elif key == "acl_file":
            raw = f"acl_file {d / ACL.name}"
        elif key == "persistence_location":
            raw = f"persistence_location {d / 'data'}/"
        out.append(raw)
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    mosquitto, passwd = exe("mosquitto"), exe("mosquitto_passwd")
    if mosquitto is None or passwd is None:
        pytest.fail("mosquitto is not installed: run the tests through 'bash tests/run', which installs it")
    d = short_tmpdir("pw-mosquitto-")  # pytest's own tmp folders are closed to the mosquitto user
    shutil.copyfile(ACL, d / ACL.name)
    (d / "passwd").touch()
    for user, pw in USERS.items():
        subprocess.run([passwd, "-b", str(d / "passwd"), user, pw], check=True, capture_output=True, timeout=30)
    (d / "data").mkdir()
    has_tls = tls_files(d)
    plain, tls = free_port(), (free_port() if has_tls else None)
    (d / "mosquitto.conf").write_text(variant(d, plain, tls))
    if os.getuid() == 0:  # mosquitto drops root for its own user once started
        uid = pwd.getpwnam("mosquitto").pw_uid if _has_user("mosquitto") else 0
        for p in [d, *d.rglob("*")]:
            os.chown(p, uid, -1)
    proc = Process([mosquitto, "-c", str(d / "mosquitto.conf")], d / "mosquitto.log")
    try:
        wait_for_port(plain, proc=proc.proc)
        if tls:
            wait_for_port(tls, proc=proc.proc)
        yield Broker(plain, tls, d / "ca.crt" if has_tls else None, proc)
    finally:
        proc.close()
        shutil.rmtree(d, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class Client:
    """A paho MQTT 5 client that records its CONNACK, SUBACKs and received messages."""

    port: int
    user: str | None
    password: str | None = None
    ca: Path | None = None
    connack: list[str] = field(default_factory=list)
    subacks: list[list[str]] = field(default_factory=list)
    got: list[tuple[str, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        c = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"acl-{self.user}-{id(self)}", protocol=MQTTProtocolVersion.MQTTv5
        )
        if self.user:
            c.username_pw_set(self.user, self.password if self.password is not None else USERS[self.user])
        if self.ca:
            c.tls_set(ca_certs=str(self.ca), cert_reqs=ssl.CERT_REQUIRED)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self.c = c
        c.connect("127.0.0.1", self.port)
        c.loop_start()
        assert self.connected.wait(10), "no CONNACK"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connack.append(str(reason))
        self.connected.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self.subacks.append([str(r) for r in reasons])
        self.subscribed.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.got.append((msg.topic, bytes(msg.payload)))

    @property
    def accepted(self) -> bool:
        return self.connack == ["Success"]

    def subscribe(self, topic: str) -> list[str]:
        self.subscribed.clear()
        self.c.subscribe(topic, qos=1)
        assert self.subscribed.wait(10), "no SUBACK"
        return self.subacks[-1]

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def payloads(self, topic: str) -> list[bytes]:
        return [p for t, p in list(self.got) if t == topic]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def clients(broker: Broker) -> Iterator[dict[str, Client]]:
    made = {u: Client(broker.plain_port, u) for u in USERS}
    yield made
    for c in made.values():
        c.close()


def test_anonymous_and_wrong_passwords_are_refused(broker: Broker) -> None:
    """No username, or a wrong password, gets a refused CONNACK."""
    for user, pw in ((None, None), ("plantwatch-monitor", "wrong"), ("nobody", "x")):
        c = Client(broker.plain_port, user, pw)
        try:
            assert not c.accepted and c.connack, (user, c.connack)
        finally:
            c.close()


def test_only_gateways_and_drills_write_telemetry(clients: dict[str, Client]) -> None:
    """The monitor receives a gateway's and a drill's telemetry; telemetry written by the viewer, the
    recorder or the monitor itself is acknowledged but never delivered (sent first, so it would have
    arrived first)."""
    mon = clients["plantwatch-monitor"]
    assert mon.subscribe(wire.telemetry_filter("plant")) == ["Granted QoS 1"]
    for user in ("plantwatch-viewer", "plantwatch-recorder", "plantwatch-monitor"):
        clients[user].publish(TELEMETRY, f"forged by {user}".encode())
    clients["plantwatch-drill"].publish(TELEMETRY, b"drill")
    clients["pump-1"].publish(TELEMETRY, b"real")
    wait_until(lambda: len(mon.payloads(TELEMETRY)) == 2, 10, "the gateway's telemetry at the monitor")
    assert mon.payloads(TELEMETRY) == [b"drill", b"real"]


def test_only_the_monitor_writes_alarms_and_status(clients: dict[str, Client]) -> None:
    """The viewer and the drill receive the monitor's alarm, the viewer its status; a gateway's, drill's or
    recorder's forged alarm and status never arrive."""
    viewer, drill = clients["plantwatch-viewer"], clients["plantwatch-drill"]
    assert viewer.subscribe(wire.alarm_filter("plant")) == ["Granted QoS 1"]
    assert drill.subscribe(wire.alarm_filter("plant")) == ["Granted QoS 1"]
    assert viewer.subscribe(STATUS) == ["Granted QoS 1"]
    for user in ("pump-1", "plantwatch-simulator", "plantwatch-drill", "plantwatch-recorder"):
        clients[user].publish(ALARM, b"forged alarm")
        clients[user].publish(STATUS, b"offline")
    clients["plantwatch-monitor"].publish(ALARM, b"real alarm")
    clients["plantwatch-monitor"].publish(STATUS, b"online")
    wait_until(lambda: viewer.payloads(STATUS), 10, "the monitor's status at the viewer")
    assert viewer.payloads(ALARM) == [b"real alarm"] and viewer.payloads(STATUS) == [b"online"]
    wait_until(lambda: drill.payloads(ALARM), 10, "the monitor's alarm at the drill")
    assert drill.payloads(ALARM) == [b"real alarm"]


def test_a_gateway_writes_only_its_own_assets(clients: dict[str, Client]) -> None:
    """Per-gateway ACL (mosquitto ``pattern`` with %u): the gateway account pump-1 writes plant/pump-1 and
    not plant/pump-2; the Sparkplug edge node gw1 writes its own node's births and data and not gw2's, and
    reads its own rebirth requests only. The forgeries are sent first, so they would have arrived first."""
    mon, rec = clients["plantwatch-monitor"], clients["plantwatch-recorder"]
    assert mon.subscribe(wire.telemetry_filter("plant")) == ["Granted QoS 1"]
    assert rec.subscribe(spb_topics.read_filters(["g1"])[4]) == ["Granted QoS 1"]  # DDATA
    pump2 = wire.telemetry_topic("plant", "pump-2")
    clients["pump-1"].publish(pump2, b"forged by pump-1")
    clients["pump-2"].publish(TELEMETRY, b"forged by pump-2")
    clients["pump-1"].publish(TELEMETRY, b"pump-1")
    clients["pump-2"].publish(pump2, b"pump-2")
    own, other = (spb_topics.message_topic("DDATA", "g1", node, "boiler") for node in ("gw1", "gw2"))
    clients["gw1"].publish(other, b"forged by gw1")
    clients["gw2"].publish(own, b"forged by gw2")
    clients["gw1"].publish(own, b"gw1")
    clients["gw2"].publish(other, b"gw2")
    wait_until(lambda: mon.payloads(pump2) and mon.payloads(TELEMETRY), 10, "each gateway's own telemetry")
    wait_until(lambda: rec.payloads(own) and rec.payloads(other), 10, "each edge node's own DDATA")
    assert mon.payloads(TELEMETRY) == [b"pump-1"] and mon.payloads(pump2) == [b"pump-2"]
    assert rec.payloads(own) == [b"gw1"] and rec.payloads(other) == [b"gw2"]
    gw1 = clients["gw1"]
    assert gw1.subscribe(spb_topics.command_filter("g1", "gw1")) == ["Granted QoS 1"]
    gw1.subscribe(spb_topics.command_filter("g1", "gw2"))
    for node in ("gw2", "gw1"):
        clients["plantwatch-monitor"].publish(spb_topics.message_topic("NCMD", "g1", node), node.encode())
    wait_until(lambda: gw1.got, 10, "gw1's rebirth request")
    time.sleep(0.3)
    assert [p for _, p in gw1.got] == [b"gw1"]


def test_only_the_operator_writes_control_requests_and_reads_its_replies(clients: dict[str, Client]) -> None:
    """The monitor receives the operator's suppress request on the operator's own control topic; one
    forged by another user (on the operator's topic or its own) never arrives; the monitor's reply reaches
    the operator and nobody else."""
    mon, op, viewer = clients["plantwatch-monitor"], clients["plantwatch-operator"], clients["plantwatch-viewer"]
    own = wire.control_topic("plant", "plantwatch-operator")
    assert mon.subscribe(wire.control_filter("plant")) == ["Granted QoS 1"]
    assert op.subscribe(wire.reply_filter("plant", "plantwatch-operator")) == ["Granted QoS 1"]
    viewer.subscribe(wire.reply_filter("plant", "plantwatch-operator"))
    for user in ("plantwatch-viewer", "pump-1", "plantwatch-monitor"):
        clients[user].publish(own, b"forged")
        clients[user].publish(wire.control_topic("plant", user), b"forged")
    op.publish(own, b"request")
    wait_until(lambda: mon.got, 10, "the operator's request at the monitor")
    time.sleep(0.3)
    assert mon.got == [(own, b"request")]
    reply = wire.reply_topic("plant", "main", "plantwatch-operator")
    mon.publish(reply, b"ok")
    wait_until(lambda: op.payloads(reply), 10, "the reply at the operator")
    time.sleep(0.3)
    assert viewer.payloads(reply) == []


def test_gateways_drills_and_viewers_cannot_read_telemetry(clients: dict[str, Client]) -> None:
    """A gateway, drill or viewer subscribing to telemetry is refused or gets nothing; the recorder reads it."""
    rec = clients["plantwatch-recorder"]
    assert rec.subscribe(wire.telemetry_filter("plant")) == ["Granted QoS 1"]
    readers = ("pump-1", "plantwatch-simulator", "plantwatch-drill", "plantwatch-viewer")
    for user in readers:
        clients[user].subscribe(wire.telemetry_filter("plant"))
    clients["pump-1"].publish(TELEMETRY, b"t1")
    wait_until(lambda: rec.payloads(TELEMETRY), 10, "telemetry at the recorder")
    time.sleep(0.3)
    for user in readers:
        assert clients[user].payloads(TELEMETRY) == [], user


def test_sparkplug_births_and_data_only_from_gateways_and_rebirth_requests_only_from_the_monitor(
    clients: dict[str, Client],
) -> None:
    """Sparkplug through the shipped ACL: the monitor and the recorder read a gateway's DDATA (a forged one
    from the viewer never arrives); the gateway reads the monitor's NCMD rebirth request, not a viewer's;
    the viewer reads a Sparkplug asset's two-level alarm topic."""
    ddata = spb_topics.message_topic("DDATA", "g1", "gw1", "boiler")
    ncmd = spb_topics.message_topic("NCMD", "g1", "gw1")
    mon, rec, viewer = (clients[f"plantwatch-{u}"] for u in ("monitor", "recorder", "viewer"))
    gw = clients["gw1"]
    for reader in (mon, rec):
        assert reader.subscribe(spb_topics.read_filters(["g1"])[4]) == ["Granted QoS 1"]
    assert gw.subscribe(spb_topics.command_filter("g1", "gw1")) == ["Granted QoS 1"]
    assert viewer.subscribe("plant/+/+/alarm") == ["Granted QoS 1"]
    viewer.publish(ddata, b"forged")
    viewer.publish(ncmd, b"forged")
    gw.publish(ddata, b"real")
    mon.publish(ncmd, b"rebirth")
    mon.publish(wire.alarm_topic("plant", "gw1/boiler"), b"alarm")
    for reader in (mon, rec):
        wait_until(lambda r=reader: r.payloads(ddata), 10, "the gateway's DDATA")
        assert reader.payloads(ddata) == [b"real"]
    wait_until(lambda: gw.payloads(ncmd), 10, "the monitor's rebirth request at the gateway")
    assert gw.payloads(ncmd) == [b"rebirth"]
    wait_until(lambda: viewer.payloads("plant/gw1/boiler/alarm"), 10, "the Sparkplug asset's alarm")


def test_tls_listener_serves_the_same_users(broker: Broker) -> None:
    """The 8883 listener (its cafile/certfile/keyfile lines) takes TLS clients under the same ACL."""
    if broker.tls_port is None:
        pytest.skip("openssl is not installed: the TLS listener was left out")
    mon = Client(broker.tls_port, "plantwatch-monitor", ca=broker.ca)
    gw = Client(broker.tls_port, "pump-1", ca=broker.ca)
    try:
        assert mon.accepted and gw.accepted
        mon.subscribe(wire.telemetry_filter("plant"))
        gw.publish(TELEMETRY, b"over tls")
        wait_until(lambda: mon.payloads(TELEMETRY), 10, "telemetry over TLS")
    finally:
        mon.close()
        gw.close()


def test_monitor_runs_with_the_shipped_config_behind_the_acl(broker: Broker, tmp_path: Path) -> None:
    """plantwatch monitor, with deploy/plantwatch.toml and its password as the unit passes it, is allowed
    its Last Will, subscription and status: it becomes ready, scores a gateway's telemetry and its retained
    status reads "online" to a viewer."""
    store = model_store(tmp_path, tiny_model(tmp_path), ["default", "boiler"])
    cfg = install_config(DEPLOY / "plantwatch.toml", tmp_path / "plantwatch.toml", store)
    (tmp_path / "mqtt-password").write_text(USERS["plantwatch-monitor"] + "\n")
    port = free_port()
    env = {
        "PLANTWATCH_BROKER_PASSWORD_FILE": str(tmp_path / "mqtt-password"),
        "PLANTWATCH_BROKER_URL": f"mqtt://127.0.0.1:{broker.plain_port}",
        "PLANTWATCH_METRICS_PORT": str(port),
    }
    proc = Process(monitor_cmd(cfg), tmp_path / "monitor.log", env)
    try:
        wait_ready(port, proc)
        gw = Publisher(broker.plain_port, "pump-1", USERS["pump-1"])
        gw.send("pump-1", range(20))
        gw.close()
        wait_until(lambda: by_asset(port, "plantwatch_messages_total").get("pump-1") == 20, 20, "20 scored")
        viewer = Client(broker.plain_port, "plantwatch-viewer")
        try:
            viewer.subscribe(STATUS)
            wait_until(lambda: viewer.payloads(STATUS), 10, "the retained status")
            assert viewer.payloads(STATUS)[-1] == wire.STATUS_ONLINE
        finally:
            viewer.close()
        assert proc.stop() == 0, proc.tail()
    finally:
        proc.close()
