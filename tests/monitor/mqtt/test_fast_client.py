"""The buffered, batch-acknowledging client: same MQTT behaviour as paho, fewer system calls."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from monitor import mqtt
from monitor.mqtt import BufferedSocket
from tests.conftest import Mosquitto


class CountingSocket:
    """A socket stand-in that counts the reads reaching the real socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.reads = sock, 0

    def recv(self, n: int) -> bytes:
        self.reads += 1
        return self.sock.recv(n)

    def fileno(self) -> int:
        return self.sock.fileno()


def test_small_reads_are_served_from_one_large_read_and_reported_as_pending() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    counting = CountingSocket(a)
    buffered = BufferedSocket(counting)
    b.sendall(b"\x30\x05hello\x40\x02\x00\x07")
    time.sleep(0.05)
    assert buffered.recv(1) == b"\x30"
    assert buffered.recv(1) == b"\x05"
    assert buffered.pending() == 9
    assert buffered.recv(5) == b"hello"
    assert buffered.recv(100) == b"\x40\x02\x00\x07"  # never more than what is buffered
    assert counting.reads == 1
    assert buffered.pending() == 0
    with pytest.raises(BlockingIOError):  # nothing left: paho sees the socket's own error
        buffered.recv(1)
    assert buffered.fileno() == a.fileno()  # select() and close() reach the real socket
    a.close(), b.close()


def _client(
    settings: mqtt.BrokerSettings,
    cid: str,
    manual: bool,
    received: list[tuple[int, int, bytes]],
    subscribed: threading.Event,
) -> mqtt.Client:
    c = mqtt.make_client(settings, client_id=cid, persistent=True, manual_ack=manual)
    c.on_connect = lambda cl, *a: cl.subscribe("t/#", qos=1)
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_message = lambda cl, u, m: received.append((m.mid, m.qos, m.payload))
    return c


def _wait(cond: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.02)


def _publish(broker: Mosquitto, payloads: list[bytes]) -> None:
    pub = mqtt.make_client(mqtt.settings_from_url(broker.url))
    mqtt.connect(pub, mqtt.settings_from_url(broker.url))
    pub.loop_start()
    infos = [pub.publish("t/x", p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(10)
    pub.disconnect()
    pub.loop_stop()


@pytest.mark.parametrize("protocol", [4, 5])
def test_a_batch_acknowledged_in_one_write_is_not_redelivered_and_the_rest_is(
    mosquitto: Mosquitto, protocol: int
) -> None:
    """Persistent session, manual acks: ack the first 300 in one packet, drop the connection, reconnect."""
    settings = mqtt.settings_from_url(mosquitto.url, protocol=protocol)
    received: list[tuple[int, int, bytes]] = []
    subscribed = threading.Event()

    def connect(c: mqtt.Client) -> None:
        mqtt.connect(c, settings, persistent=True)
        c.loop_start()

    c = _client(settings, f"batch-ack-{protocol}", True, received, subscribed)
    connect(c)
    assert subscribed.wait(10)
    _publish(mosquitto, [f"m{i}".encode() for i in range(500)])
    _wait(lambda: len(received) >= 500)
    assert [p for _, _, p in received] == [f"m{i}".encode() for i in range(500)]
    assert isinstance(c._sock, BufferedSocket)  # paho still builds its socket through our hook
    c.ack_many([(mid, qos) for mid, qos, _ in received[:300]])
    time.sleep(0.5)  # let the network thread write the batch
    c.disconnect()
    c.loop_stop()

    again: list[tuple[int, int, bytes]] = []
    subscribed.clear()
    c2 = _client(settings, f"batch-ack-{protocol}", True, again, subscribed)
    connect(c2)
    _wait(lambda: len(again) >= 200)
    time.sleep(0.5)  # nothing more than the unacknowledged 200 arrives
    c2.ack_many([(mid, qos) for mid, qos, _ in again])
    time.sleep(0.2)
    c2.disconnect()
    c2.loop_stop()
    assert sorted(p for _, _, p in again) == sorted(f"m{i}".encode() for i in range(300, 500))


def _subscriber(settings: mqtt.BrokerSettings, cid: str, fast: bool, manual: bool, got: list[object]) -> object:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    subscribed = threading.Event()
    if fast:
        c: paho.Client = mqtt.make_client(settings, client_id=cid, manual_ack=manual)
    else:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=cid, manual_ack=manual)
    c.on_connect = lambda cl, *a: cl.subscribe("t/#", qos=1)
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_message = lambda cl, u, m: got.append(m)
    c.connect("127.0.0.1", settings.port)
    c.loop_start()
    assert subscribed.wait(10)
    return c


@pytest.mark.parametrize("manual", [True, False])
def test_publish_packets_handed_over_from_the_buffer_are_the_messages_paho_makes(
    mosquitto: Mosquitto, manual: bool
) -> None:
    """QoS 0 and 1, retained or not, payloads from empty to past the 1- and 2-byte remaining lengths, in a
    burst (whole packets in the buffer, and packets split across reads): our client hands on_message the
    same topic, payload, qos, retain and dup as stock paho, and most of them without paho's per-packet path."""
    from monitor.mqtt.fast_client import Received

    settings = mqtt.settings_from_url(mosquitto.url)
    pub = mqtt.make_client(settings)
    mqtt.connect(pub, settings)
    pub.loop_start()
    kept = [
        (f"t/kept/{i}", b"r%d" % i, i % 2, True) for i in range(3)
    ]  # handed on as retained (a new broker each test)
    for info in [pub.publish(t, p, qos=q, retain=r) for t, p, q, r in kept]:
        info.wait_for_publish(10)
    sizes = [0, 1, 100, 125, 126, 127, 128, 300, 16380, 16383, 16384, 70000]
    sent = [(f"t/{i % 7}/é", bytes([i % 251]) * sizes[i % len(sizes)], i % 2, False) for i in range(1200)]
    ours: list[object] = []
    stock: list[object] = []
    clients = [
        _subscriber(settings, f"lean-{manual}", True, manual, ours),
        _subscriber(settings, f"stock-{manual}", False, manual, stock),
    ]
    everything = len(sent) + len(kept)
    _wait(lambda: len(ours) >= len(kept) and len(stock) >= len(kept))
    infos = [pub.publish(t, p, qos=q, retain=r) for t, p, q, r in sent]
    for info in infos:
        info.wait_for_publish(10)
    _wait(lambda: len(ours) >= everything and len(stock) >= everything)
    pub.disconnect()
    pub.loop_stop()
    for c in clients:
        c.disconnect()  # type: ignore[attr-defined]
        c.loop_stop()  # type: ignore[attr-defined]

    def seen(msgs: list[object]) -> list[tuple[object, ...]]:
        return [(m.topic, m.payload, m.qos, m.retain, m.dup, m.mid > 0) for m in msgs]  # type: ignore[attr-defined]

    assert seen(ours) == seen(stock)
    assert sorted(kept) + sent == sorted(x[:4] for x in seen(ours)[: len(kept)]) + [
        x[:4] for x in seen(ours)[len(kept) :]
    ]
    lean = [m for m in ours if isinstance(m, Received)]
    if manual:
        assert len(lean) > len(sent) // 2  # the burst sits in the buffer: most skip paho's packet path
        assert all(m.info.mid == m.mid for m in lean)
    else:  # QoS 1 without manual_ack needs a PUBACK from paho: only QoS 0 is handed over here
        assert lean and not any(m.qos for m in lean)


def test_messages_handed_over_a_read_at_a_time_keep_their_order_and_fields(mosquitto: Mosquitto) -> None:
    """With ``on_messages`` set, the PUBLISH packets of one read arrive in one call (paho's own reads still
    through ``on_message``): together, the same messages in the same order as stock paho hands on."""
    settings = mqtt.settings_from_url(mosquitto.url)
    calls: list[int] = []
    ours: list[object] = []
    stock: list[object] = []
    lean = _subscriber(settings, "batched", True, True, ours)

    def batch(client: object, userdata: object, msgs: list[object]) -> None:
        calls.append(len(msgs))
        ours.extend(msgs)

    lean.on_messages = batch  # type: ignore[attr-defined]
    plain = _subscriber(settings, "stock-batched", False, True, stock)
    sent = [(f"t/{i % 5}", b"%d" % i * (i % 40), i % 2) for i in range(3000)]
    pub = mqtt.make_client(settings)
    mqtt.connect(pub, settings)
    pub.loop_start()
    for info in [pub.publish(t, p, qos=q) for t, p, q in sent]:
        info.wait_for_publish(10)
    _wait(lambda: len(ours) >= len(sent) and len(stock) >= len(sent))
    pub.disconnect()
    pub.loop_stop()
    for c in (lean, plain):
        c.disconnect()  # type: ignore[attr-defined]
        c.loop_stop()  # type: ignore[attr-defined]

    def seen(msgs: list[object]) -> list[tuple[object, ...]]:
        return [(m.topic, m.payload, m.qos, m.retain, m.dup) for m in msgs]  # type: ignore[attr-defined]

    for qos in (0, 1):  # MQTT orders messages within a QoS level; the broker may interleave the two
        want = [(t, p, q, False, False) for t, p, q in sent if q == qos]
        assert [m for m in seen(stock) if m[2] == qos] == want
        assert [m for m in seen(ours) if m[2] == qos] == want
    assert max(calls) > 1  # a burst sits in one read: many messages per call
