"""Where a message enters: the persistent MQTT session that feeds the batch queue.

paho's network thread only runs the callbacks here. ``on_message`` puts
``(topic, payload, received_at, mid, qos, generation)`` on a bounded queue and
returns; when the queue is full it waits, so the backlog stays at the broker
(backpressure) instead of in our memory. Nothing is acknowledged here: the
worker calls :meth:`MqttSession.ack` once a message is scored (or counted as
rejected), so a crash never acknowledges an unscored message and the
persistent session redelivers it.

``generation`` counts connections: a message id is only meaningful on the
connection that delivered it, so an acknowledgement for an older connection
is skipped (the broker redelivers, the worker drops it as a duplicate).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .. import logs, mqtt, sparkplug, wire
from ..config import MonitorConfig
from .batch_queue import BatchQueue
from .log_sampler import LogSampler
from .metrics import State

log = logs.get("mqtt_session")

#: topic, payload, received_at, mid, qos, generation, retained (stored at the broker before we subscribed)
Item = tuple[str, bytes, float, int, int, int, bool]
_PUT_SLICE_S = 0.1
#: CONNACK reasons that retrying cannot fix: bad user name or password, not authorized (3.1.1 and 5)
_LOGIN_REFUSALS = frozenset((4, 5, 134, 135))
#: while the broker stays unreachable for the same reason, say so again at most this often
_UNREACHABLE_REPEAT_S = 60.0


class MqttSession:
    """A persistent QoS 1 session with manual acknowledgement (the monitor's and the recorder's)."""

    def __init__(
        self,
        settings: mqtt.BrokerSettings,
        client_id: str,
        filters: Sequence[str],
        queue: BatchQueue[Item],
        state: State,
        status_topic: str | None = None,
    ) -> None:
        self.settings, self.client_id, self.filters = settings, client_id, list(filters)
        self.queue, self.state, self.status_topic = queue, state, status_topic
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.generation = 0
        self.withheld = 0  # messages left unacknowledged once intake closed
        self.login_refused: str | None = None  # the broker's reason while it refuses our credentials
        self.unreachable: str | None = None  # why the last connection attempt failed (refused, DNS, TLS ...)
        self.ever_connected = False
        self._failures = 0
        self._said: tuple[str, float] | None = None  # the reason last logged, and when
        self._intake_open = True
        self._closing = False
        self._sub_mid: int | None = None
        self._sampler = LogSampler()
        c = mqtt.make_client(settings, client_id=client_id, persistent=True, manual_ack=True)
        if status_topic:
            c.will_set(status_topic, wire.STATUS_OFFLINE, qos=1, retain=True)
        c.on_connect = self._guard("connect", self._on_connect)
        c.on_connect_fail = self._guard("connect", self._on_connect_fail)
        c.on_disconnect = self._guard("disconnect", self._on_disconnect)
        c.on_subscribe = self._guard("subscribe", self._on_subscribe)
        c.on_message = self._guard("message", self._on_message)
        c.on_messages = self._guard("message", self._on_messages)
        self.client = c

    @classmethod
    def for_monitor(cls, cfg: MonitorConfig, queue: BatchQueue[Item], state: State) -> MqttSession:
        """The monitor's session: all assets' telemetry (or the Sparkplug groups'), retained online/offline status."""
        if cfg.source.format == "sparkplug":
            filters = sparkplug.topics.read_filters(cfg.source.group_ids)
        else:
            filters = [wire.telemetry_filter(cfg.prefix, a) for a in cfg.assets] or [wire.telemetry_filter(cfg.prefix)]
        filters.append(wire.control_filter(cfg.prefix))  # operators' suppress/unsuppress requests
        return cls(
            cfg.broker_settings(),
            cfg.client_id,
            filters,
            queue,
            state,
            wire.status_topic(cfg.prefix, cfg.instance),
        )

    def _guard(self, name: str, fn: Callable[..., None]) -> Callable[..., None]:
        """An exception escaping a callback would kill paho's thread: log (sampled) and count it."""

        def guarded(*args: Any) -> None:
            try:
                fn(*args)
            except Exception:
                self.state.count_callback_error(name)
                suppressed = self._sampler.take(name)
                if suppressed is not None:
                    log.exception("callback_failed", callback=name, suppressed=suppressed)

        return guarded

    # ------------------------------------------------------------ paho callbacks

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.connected.clear()
            self.login_refused = str(reason) if reason.value in _LOGIN_REFUSALS else None
            log.warning("broker_refused", broker=self.settings.url, reason=str(reason))
            return
        self.login_refused = self.unreachable = None
        self.ever_connected, self._failures, self._said = True, 0, None
        self.generation += 1
        with self.state.lock:
            self.state.connects += 1
        self.connected.set()
        _, self._sub_mid = client.subscribe([(f, 1) for f in self.filters])
        if self.status_topic:
            client.publish(self.status_topic, wire.STATUS_ONLINE, qos=1, retain=True)
        log.info(
            "broker_connected",
            broker=self.settings.url,
            client_id=self.client_id,
            session_present=bool(getattr(flags, "session_present", False)),
        )

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        """The TCP/TLS connection failed: say why at once (paho then retries with backoff, 1 s up to 30 s)."""
        exc = getattr(client, "connect_error", None)
        reason = mqtt.describe_error(exc, self.settings) if exc is not None else "connection failed"
        self.unreachable = reason
        self._failures += 1
        now = time.monotonic()
        if self._said is None or self._said[0] != reason or now - self._said[1] >= _UNREACHABLE_REPEAT_S:
            self._said = (reason, now)
            log.warning("broker_unreachable", broker=self.settings.url, reason=reason, attempts=self._failures,
                        note="retrying with backoff (1 s, doubling, at most 30 s)")  # fmt: skip

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        if mid != self._sub_mid:
            return
        if any(r.is_failure for r in reasons):
            log.error("subscribe_refused", filters=self.filters, reasons=[str(r) for r in reasons])
            return
        self.subscribed.set()
        log.info("subscribed", filters=self.filters, qos=1)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self._closing:
            log.warning("broker_disconnected", broker=self.settings.url, reason=str(reason))

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self._on_messages(client, userdata, (msg,))

    def _on_messages(self, client: Any, userdata: Any, msgs: Sequence[Any]) -> None:
        """Queue what one read brought, in order (the fast client's batch; paho's own reads come one by one)."""
        now, generation = time.time(), self.generation
        items: list[Item] = []
        for msg in msgs:
            try:
                topic = msg.topic
            except UnicodeDecodeError:
                topic = "\x00not-utf8"  # counted as bad_topic by the worker
            items.append((topic, msg.payload, now, msg.mid, msg.qos, generation, bool(msg.retain)))
        put_many = self.queue.put_many
        while items and self._intake_open:  # when full, backpressure: paho stops reading the socket
            done = put_many(items, _PUT_SLICE_S)
            if done:
                items = items[done:]
        self.withheld += len(items)  # intake closed: unacknowledged, redelivered after our restart

    # ------------------------------------------------------------ used by the daemon and the worker

    def start(self) -> None:
        """Connect in the background; paho retries with backoff until the broker answers."""
        kwargs: dict[str, Any] = {"keepalive": self.settings.keepalive}
        if self.settings.protocol == 5:
            kwargs["clean_start"] = False
            kwargs["properties"] = mqtt.connect_properties(self.settings, persistent=True)
        self.client.connect_async(self.settings.host, self.settings.port, **kwargs)
        self.client.loop_start()

    def ack(self, items: list[Item]) -> None:
        """Acknowledge handled messages; those of an earlier connection are left to redelivery."""
        current = self.generation
        self.client.ack_many(
            [(mid, qos) for _, _, _, mid, qos, generation, _ in items if qos and generation == current]
        )

    def publish(self, topic: str, payload: bytes, retain: bool = True) -> None:
        """QoS 1 publish from any thread; paho queues it across reconnects."""
        self.client.publish(topic, payload, qos=1, retain=retain)

    def command(self, topic: str, payload: bytes) -> None:
        """A Sparkplug command (rebirth request): QoS 0, not retained, as the specification asks."""
        self.client.publish(topic, payload, qos=0, retain=False)

    def close_intake(self) -> None:
        """Stop taking messages (the first step of a stop); later ones stay at the broker."""
        self._intake_open = False
        self.queue.wake()  # a worker waiting on an empty intake looks again

    def close(self, timeout: float = 2.0) -> None:
        """Publish the retained ``offline`` status, disconnect and stop paho's thread."""
        self._closing = True
        if self.status_topic and self.connected.is_set():
            info = self.client.publish(self.status_topic, wire.STATUS_OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("offline_status_not_confirmed", reason=str(exc))
        self.client.disconnect()
        self.client.loop_stop()
        if self.withheld:
            log.info("messages_left_at_broker", count=self.withheld)
