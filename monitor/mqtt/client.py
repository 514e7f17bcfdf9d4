"""paho-mqtt clients configured the same way everywhere.

paho 2.x, ``CallbackAPIVersion.VERSION2`` always. Callers subscribe in
``on_connect`` and must never block or raise inside callbacks.
"""

from __future__ import annotations

import socket
import ssl
import time
import uuid
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from ..errors import BrokerError
from .fast_client import Client
from .settings import BrokerSettings


def make_client(
    settings: BrokerSettings,
    *,
    client_id: str | None = None,
    persistent: bool = False,
    manual_ack: bool = False,
) -> Client:
    """A configured, unconnected client (paho's, with buffered reads and batched acks).

    ``persistent`` asks for a broker-side session that survives our restarts
    (clean_session=False / clean_start=False with an expiry), which needs a
    fixed client id.
    """
    cid = client_id or settings.client_id or f"plantwatch-{uuid.uuid4().hex[:10]}"
    protocol = MQTTProtocolVersion.MQTTv5 if settings.protocol == 5 else MQTTProtocolVersion.MQTTv311
    client = Client(
        CallbackAPIVersion.VERSION2,
        client_id=cid,
        protocol=protocol,
        manual_ack=manual_ack,
        clean_session=None if protocol == MQTTProtocolVersion.MQTTv5 else not persistent,  # 5: clean_start instead
    )
    if settings.tls:
        client.tls_set(
            ca_certs=settings.ca_file,
            certfile=settings.cert_file,
            keyfile=settings.key_file,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    if settings.username:
        client.username_pw_set(settings.username, settings.password())
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    return client


def connect_properties(settings: BrokerSettings, persistent: bool) -> object | None:
    """MQTT 5 CONNECT properties (Session Expiry Interval) or None for 3.1.1."""
    if settings.protocol != 5:
        return None
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = settings.session_expiry if persistent else 0
    return props


def describe_error(exc: BaseException, settings: BrokerSettings) -> str:
    """Why a connection failed, in words: refused, DNS, timeout, TLS (never a Python repr).

    >>> describe_error(ConnectionRefusedError(111, "Connection refused"), BrokerSettings(port=1))
    'connection refused (nothing listens on 127.0.0.1:1)'
    """
    where = f"{settings.host}:{settings.port}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused (nothing listens on {where})"
    if isinstance(exc, socket.gaierror):
        return f"host name {settings.host!r} not found (DNS: {exc.strerror or exc})"
    if isinstance(exc, TimeoutError):
        return f"timed out connecting to {where}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = str(exc.verify_message or exc.reason).rstrip(".")
        if "mismatch" in why:
            hint = "connect by a name the certificate was issued for"
        else:
            hint = "give the CA that signed it (--ca-file, broker.ca_file)"
        return f"TLS: the certificate of {where} failed verification: {why}; {hint}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def connect(client: paho.Client, settings: BrokerSettings, *, persistent: bool = False, timeout: float = 10.0) -> None:
    """Connect (blocking for the TCP part) with a clear error when the broker is not there."""
    kwargs: dict[str, Any] = {"keepalive": settings.keepalive}
    if settings.protocol == 5:
        kwargs["clean_start"] = not persistent
        kwargs["properties"] = connect_properties(settings, persistent)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.connect(settings.host, settings.port, **kwargs)
            return
        except (OSError, ssl.SSLError) as exc:
            if time.monotonic() >= deadline:
                raise BrokerError(f"cannot connect to broker {settings.url}: {describe_error(exc, settings)}") from None
            time.sleep(0.5)
