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
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

READ_SIZE = 65536
DRAIN_PACKETS = 1000  # packets handled from the buffer per loop turn before paho's own checks
_PUBACK = 0x40


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

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho reads one packet per call; go on while whole packets may sit in the buffer."""
        rc = super().loop_read(max_packets)
        for _ in range(DRAIN_PACKETS):
            sock = self._sock
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, BufferedSocket) or not sock.buffered():
                break
            rc = super().loop_read(max_packets)
        return rc

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
