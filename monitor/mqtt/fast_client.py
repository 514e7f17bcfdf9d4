"""paho's client with the two per-message costs that dominate a busy subscriber taken out.

Measured with ``benchmarks/monitor_benchmark.py`` on a 52-sensor QoS 1
backlog, stock paho spends most of its time in system calls, not in Python:

- it reads every packet with three or four ``recv`` calls (one byte of
  command, one per byte of remaining length, then the body) and one
  ``select`` per packet;
- every acknowledgement is a packet of its own: a write to the wake-up
  socket pair, a wake-up of the network thread and a ``send`` of 4 bytes.

:class:`BufferedSocket` serves those small reads from one ``recv`` of up to
64 KiB and reports what it holds through ``pending()``, the hook paho
already uses for TLS, so its loop never waits in ``select`` while whole
packets sit in our buffer. :meth:`Client.ack_many` sends the PUBACKs of a
whole batch as one write. Both are plain MQTT on the wire: a PUBACK of four
bytes is valid in 3.1.1 and in 5 (remaining length 2 = reason Success, no
properties). Everything else is paho's; if a future paho stops calling the
hooks used here the client is merely as fast as paho again (a test notices).

A third cost is paho's handling of each PUBLISH in Python: three or four reads through the socket
hook, a dictionary of read state, a message object with its own lock and condition, a topic
matcher and two locks, about 12 us per message on the monitor's host, as much as everything else
the monitor does with a Sparkplug message. So when whole PUBLISH packets (QoS 0, or QoS 1 with
``manual_ack``; MQTT 3.1.1, which has no properties) sit in the buffer and paho is between packets,
:meth:`Client.loop_read` hands them to ``on_message`` itself, framed by the MQTT fixed header and
the topic's length prefix exactly as paho's ``decode_publish`` frames them; anything else (other
packets, QoS 2, MQTT 5, a packet not yet whole, per-topic callbacks) goes through paho unchanged.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.client import MQTTMessage, MQTTMessageInfo
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion

READ_SIZE = 65536
DRAIN_PACKETS = 1000  # packets handled from the buffer per loop turn before paho's own checks
_PUBACK = 0x40
_PUBLISH = 0x30


class Received(MQTTMessage):
    """A PUBLISH as paho hands it to ``on_message``, made without the lock objects paho gives each one
    (``info``, meaningless for a received message, is made when asked for)."""

    __slots__ = ()

    def __init__(self, topic: bytes, payload: bytes, header: int, mid: int, now: float) -> None:
        self._topic, self.payload, self.mid, self.timestamp = topic, payload, mid, now
        self.qos, self.retain, self.dup = (header >> 1) & 3, bool(header & 1), bool(header & 8)
        self.state, self.properties = paho.mqtt_ms_invalid, None

    @property
    def info(self) -> MQTTMessageInfo:  # type: ignore[override]
        return MQTTMessageInfo(self.mid)


class BufferedSocket:
    """A socket (or TLS socket) whose small ``recv`` calls are served from one large read."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, n: int) -> bytes:
        pos = self._pos
        if pos < len(self._buf):
            self._pos = pos + n
            return self._buf[pos : pos + n]
        data: bytes = self._sock.recv(max(n, READ_SIZE))  # BlockingIOError etc. reach paho unchanged
        if len(data) <= n:
            self._buf, self._pos = b"", 0
            return data
        self._buf, self._pos = data, n
        return data[:n]

    def buffered(self) -> int:
        return max(len(self._buf) - self._pos, 0)

    def pending(self) -> int:
        """Bytes readable without waiting: ours plus, for TLS, the decrypted ones the SSL layer holds."""
        inner = getattr(self._sock, "pending", None)
        return self.buffered() + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:  # send, fileno, close, setblocking, ...
        return getattr(self._sock, name)


class Client(paho.Client):
    """``paho.Client`` with buffered reads and batched acknowledgements.

    It also keeps why the last connection attempt failed (``connect_error``):
    paho's background loop swallows the exception and calls ``on_connect_fail``
    without it, and "cannot connect" without a reason sends people guessing.
    """

    connect_error: OSError | None = None

    def reconnect(self) -> MQTTErrorCode:
        try:
            rc = super().reconnect()
        except OSError as exc:  # refused, DNS, timeout, TLS (ssl.SSLError is an OSError)
            self.connect_error = exc
            raise
        self.connect_error = None
        return rc

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def _ssl_wrap_socket(self, tcp_sock: socket.socket) -> ssl.SSLSocket:
        """paho's handshake, closing the socket when it fails (paho leaves it to the garbage collector:
        with a certificate that never verifies, one socket per retry stayed open as long as the error)."""
        ctx = self._ssl_context
        if ctx is None or not ctx.check_hostname:  # tls_insecure: paho's own checks
            return super()._ssl_wrap_socket(tcp_sock)
        ssl_sock = ctx.wrap_socket(tcp_sock, server_hostname=self._host, do_handshake_on_connect=False)
        try:
            ssl_sock.settimeout(self._connect_timeout)
            ssl_sock.do_handshake()  # verifies the chain and, as check_hostname is set, the name
        except BaseException:
            ssl_sock.close()
            raise
        return ssl_sock

    _filtered = False  # message_callback_add was used: paho's matcher decides who gets a message

    #: ``(client, userdata, messages)``: the PUBLISH packets :meth:`_publishes` takes from one read, in
    #: order, in one call (``on_message`` still gets those paho reads itself). A busy subscriber pays the
    #: callback, its clock read and its hand-over once per read instead of once per message.
    on_messages: Any = None

    def message_callback_add(self, sub: str, callback: Any) -> None:
        self._filtered = True
        super().message_callback_add(sub, callback)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho reads one packet per call (and as many as it has messages in flight, each through its whole
        path); go on while whole packets may sit in the buffer: PUBLISH packets straight to ``on_message``
        when :meth:`_publishes` may take them, any other one through paho's own read of one packet."""
        current = self._sock
        if not isinstance(current, BufferedSocket):
            return super().loop_read(max_packets)
        sock: BufferedSocket = current
        for _ in range(DRAIN_PACKETS):
            if not (sock.buffered() and self._publishes(sock)):
                rc = self._packet_read()  # what paho's loop_read does per packet, with its handling of errors
                if rc > 0:
                    return self._loop_rc_handle(rc)
                if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                    break
            if self._sock is not sock or not sock.buffered():
                break
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _publishes(self, sock: BufferedSocket) -> int:
        """Hand the whole PUBLISH packets at the head of the buffer to ``on_message`` (or all at once to
        ``on_messages``); how many it handed.

        Only between packets of paho's (its read state empty), on MQTT 3.1/3.1.1, without per-topic
        callbacks; QoS 0, or QoS 1 with ``manual_ack`` (nothing to send back). It stops at the first
        packet it does not take (another kind, QoS 2, not yet whole, an empty topic: paho's own checks
        and errors apply to it) and returns 0 when it took none, so paho reads the next packet.
        """
        if self._in_packet["command"] or self._protocol == MQTTProtocolVersion.MQTTv5 or self._filtered:
            return 0
        with self._callback_mutex:
            on_message = self.on_message
            on_messages = self.on_messages
        if on_message is None and on_messages is None:
            return 0
        taken: list[Received] | None = [] if on_messages is not None else None
        buf, pos = sock._buf, sock._pos
        end, manual, handed = len(buf), self._manual_ack, 0
        now = paho.time_func()
        while handed < DRAIN_PACKETS and pos + 4 <= end:
            header = buf[pos]
            qos = (header >> 1) & 3
            if header & 0xF0 != _PUBLISH or qos > 1 or (qos and not manual):
                break
            length, shift, at = 0, 0, pos + 1
            while at < end and shift < 28:  # the remaining length: at most 4 bytes of 7 bits
                byte = buf[at]
                at += 1
                length |= (byte & 127) << shift
                shift += 7
                if not byte & 128:
                    break
            else:
                break  # not all of it here yet (or malformed): paho's reads
            stop = at + length
            if stop > end or length < 2:
                break
            topic_end = at + 2 + ((buf[at] << 8) | buf[at + 1])
            body = topic_end + 2 if qos else topic_end
            if topic_end == at + 2 or body > stop:
                break  # an empty topic or a packet too short for its fields: paho says why
            mid = (buf[topic_end] << 8) | buf[topic_end + 1] if qos else 0
            msg = Received(buf[at + 2 : topic_end], buf[body:stop], header, mid, now)
            pos = sock._pos = stop  # consumed before the callback runs: an exception must not repeat it
            handed += 1
            if taken is not None:
                taken.append(msg)
                continue
            assert on_message is not None  # one of the two is set, and taken says which
            self._deliver(on_message, "on_message", msg)
            if self._sock is not sock:  # the callback disconnected
                break
        if taken:
            assert on_messages is not None
            self._deliver(on_messages, "on_messages", taken)
        if handed:
            with self._msgtime_mutex:
                self._last_bytes_received = now
        return handed

    def _deliver(self, callback: Any, name: str, what: object) -> None:
        """Call a message callback as paho does: under its callback lock, an exception logged and re-raised
        unless ``suppress_exceptions``."""
        with self._in_callback_mutex:
            try:
                callback(self, self._userdata, what)
            except Exception as err:
                self._easy_log(paho.MQTT_LOG_ERR, f"Caught exception in {name}: %s", err)
                if not self.suppress_exceptions:
                    raise

    def ack_many(self, acks: Iterable[tuple[int, int]]) -> None:
        """Acknowledge ``(mid, qos)`` pairs: all QoS 1 ones in one write (only with ``manual_ack``)."""
        mids = []
        for mid, qos in acks:
            if qos == 1:
                mids.append(mid)
            elif qos == 2:
                self.ack(mid, qos)
        if not mids:
            return
        queue = getattr(self, "_packet_queue", None)
        if queue is None or not self._manual_ack:  # paho internals changed: one by one
            for mid in mids:
                self.ack(mid, 1)
            return
        packet = b"".join(struct.pack("!BBH", _PUBACK, 2, mid) for mid in mids)
        queue(_PUBACK, packet, 0, 0)
