"""Publishing sources as live telemetry at a steady rate, with fault injections and their truth.

Sample ``i`` of every asset is due at ``t0 + i / rate`` on the monotonic clock,
so the rate never drifts; when late (a slow broker, a paused process) the due
samples go out in one batch, and after more than :data:`MAX_LAG_S` of lag the
schedule is re-anchored to now (logged, counted) instead of flooding. The
payload ``ts`` of sample ``i`` is the wall-clock time it was due, so it is
monotone and exactly ``1/rate`` apart; ``seq`` is ``i``.

A drill ground truth goes to the asset's drill topic just before the first
affected sample (``phase="start"``, ``end`` as scheduled) and just after the
last one (``phase="end"``, ``end`` as published). QoS 1 publishes are bounded:
at most ``max_inflight`` unacknowledged messages, then the loop waits.

:meth:`Publisher.run` blocks; stop it with ``stop_event`` from another thread,
:meth:`Publisher.request_stop` from a signal handler, or ``duration``. It
installs no signal handlers itself.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from paho.mqtt.enums import MQTTErrorCode

from monitor import logs, wire
from monitor.errors import BrokerError, InputError
from monitor.mqtt import BrokerSettings, connect, make_client

from .faults import Injection, InjectionSet
from .sparkplug_edge import SparkplugEdge, SparkplugSettings

log = logs.get("simulator")

MAX_LAG_S = 5.0
CONNECT_TIMEOUT_S = 10.0
_TICK_S = 0.1  # longest sleep: how fast a stop request is noticed


class Source(Protocol):
    """Where one asset's samples come from (:class:`AssetProcess`, :class:`ReplaySource`)."""

    name: str
    sensors: list[str]

    @property
    def sensor_std(self) -> np.ndarray:
        """Each sensor's normal spread (what a Sparkplug deadband is measured in)."""
        ...

    def read(self, n: int) -> np.ndarray:
        """Up to ``n`` next samples, shape (m, len(sensors)); m == 0 means the source is finished."""
        ...


@dataclass
class PublishSummary:
    """What a run sent; ``unconfirmed`` QoS>0 messages were never acknowledged by the broker,
    ``dropped`` QoS 0 messages found no connection."""

    messages: dict[str, int]
    faults: list[str] = field(default_factory=list)
    truths: int = 0
    #: The truths published, as a reader of the drill topics decodes them: a drill judges from these, as
    #: its broker login may write the drill topics but not read them (deploy/mosquitto/plantwatch.acl).
    sent_truths: list[wire.DrillTruth] = field(default_factory=list)
    unconfirmed: int = 0
    dropped: int = 0
    reanchored: int = 0
    seconds: float = 0.0


class Publisher:
    """Publishes every source at ``rate`` samples per second per asset; :meth:`run` it once."""

    def __init__(
        self,
        settings: BrokerSettings,
        sources: Sequence[Source],
        *,
        rate: float,
        prefix: str = wire.DEFAULT_PREFIX,
        qos: int = 1,
        injections: Sequence[Injection] = (),
        duration: float | None = None,
        stop_event: threading.Event | None = None,
        max_inflight: int = 200,
        drain_timeout: float = 3.0,
        client_id: str | None = None,
        sparkplug: SparkplugSettings | None = None,
    ) -> None:
        """``sparkplug``: publish as a Sparkplug B edge node with a device per source (QoS 0, as the
        specification has it) instead of plantwatch's JSON telemetry; drill truths stay JSON."""
        if not (math.isfinite(rate) and rate > 0):
            raise InputError(f"rate must be > 0 samples per second, got {rate}")
        if duration is not None and not (math.isfinite(duration) and duration > 0):
            raise InputError(f"duration must be > 0 seconds, got {duration}")
        if max_inflight < 1:
            raise InputError(f"max_inflight must be >= 1, got {max_inflight}")
        if qos not in (0, 1, 2):
            raise InputError(f"qos must be 0, 1 or 2, got {qos}")
        names = [s.name for s in sources]
        if not sources or len(set(names)) != len(names):
            raise InputError(f"need at least one source and distinct asset names, got {names}")
        unknown = {inj.asset for inj in injections} - set(names)
        if unknown:
            raise InputError(f"injections for unknown assets: {', '.join(sorted(unknown))}")
        self._edge: SparkplugEdge | None = None
        self._sparkplug = sparkplug
        try:
            if sparkplug is not None:
                self._edge = SparkplugEdge(sparkplug, [(s.name, list(s.sensors), s.sensor_std) for s in sources])
                self._topics = [("", wire.drill_topic(prefix, sparkplug.asset(n))) for n in names]
            else:
                self._topics = [(wire.telemetry_topic(prefix, n), wire.drill_topic(prefix, n)) for n in names]
        except ValueError as exc:
            raise InputError(str(exc)) from None
        self.settings, self.sources, self.rate, self.qos = settings, list(sources), rate, qos
        self._faults = [InjectionSet([i for i in injections if i.asset == n]) for n in names]
        self._limit = None if duration is None else max(1, math.floor(duration * rate + 1e-9))
        self._stop_event = stop_event or threading.Event()
        self._stop_requested = False
        self._max_inflight, self._drain_timeout, self._client_id = max_inflight, drain_timeout, client_id
        self._cond = threading.Condition()
        self._sent = self._acked = 0
        self._connected = threading.Event()
        self._refused: str | None = None
        self._wall0 = 0.0
        self._closing = False
        self.summary = PublishSummary({n: 0 for n in names})

    def request_stop(self) -> None:
        """Ask the loop to finish; only sets a flag, so it is safe in a signal handler."""
        self._stop_requested = True

    def injecting(self) -> list[str]:
        """The faults being injected right now, as "kind on asset (sensors)" (for a live view; any thread)."""
        out = []
        for faults, source in zip(self._faults, self.sources):
            sent = self.summary.messages[source.name]
            for inj in list(faults.active):  # a copy (the publisher thread appends to it)
                if inj.start < sent <= inj.end + 1:
                    out.append(f"{inj.kind} on {inj.asset} ({', '.join(inj.sensors)})")
        return out

    def _stopping(self) -> bool:
        return self._stop_requested or self._stop_event.is_set()

    # ------------------------------------------------------------ paho callbacks (never raise)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._refused = str(reason)
        else:
            if self._edge is not None:
                client.subscribe(self._edge.command_filter(), qos=1)
            self._connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if self._edge is not None:
            try:
                self._edge.on_command(msg.payload)
            except Exception:  # never let an exception kill paho's thread
                log.exception("command_failed", topic=str(msg.topic)[:200])

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()
        if not self._closing:
            log.warning("broker_disconnected", broker=self.settings.url, reason=str(reason))

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._cond:
            self._acked += 1
            self._cond.notify_all()

    # ------------------------------------------------------------ run

    def run(self) -> PublishSummary:
        """Connect, publish until stopped, finished or ``duration``, drain, disconnect."""
        client = make_client(self.settings, client_id=self._client_id)
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        if self._edge is not None:
            will_topic, will_payload = self._edge.will()
            client.will_set(will_topic, will_payload, qos=1, retain=False)
        began = time.monotonic()
        connect(client, self.settings, timeout=CONNECT_TIMEOUT_S)
        client.loop_start()
        try:
            self._await_connection()
            log.info(
                "publish_started",
                broker=self.settings.url,
                assets=[s.name for s in self.sources],
                sensors=[len(s.sensors) for s in self.sources],
                rate=self.rate,
                qos=0 if self._edge is not None else self.qos,
                format="json" if self._edge is None else "sparkplug",
                faults=sum(f.pending for f in self._faults),
            )
            self._loop(client)
        finally:
            if self._edge is not None and self._connected.is_set():
                self._publish(client, *self._edge.death(int(time.time() * 1000)), qos=0)
            self.summary.unconfirmed = self._drain()
            self._closing = True
            client.disconnect()
            client.loop_stop()
        self.summary.seconds = round(time.monotonic() - began, 3)
        log.info(
            "publish_finished",
            messages=self.summary.messages,
            faults=len(self.summary.faults),
            truths=self.summary.truths,
            unconfirmed=self.summary.unconfirmed,
            dropped=self.summary.dropped,
            reanchored=self.summary.reanchored,
            seconds=self.summary.seconds,
        )
        return self.summary

    def _await_connection(self) -> None:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while not self._connected.wait(_TICK_S):
            if self._refused is not None:
                raise BrokerError(f"broker {self.settings.url} refused the connection: {self._refused}")
            if time.monotonic() > deadline:
                raise BrokerError(f"no CONNACK from broker {self.settings.url} within {CONNECT_TIMEOUT_S:.0f}s")
            if self._stopping():
                return

    def _ts(self, k: int) -> float:
        """Payload timestamp of sample ``k``: the wall-clock time it is due."""
        return self._wall0 + k / self.rate

    def _loop(self, client: Any) -> None:
        t0, self._wall0 = time.monotonic(), time.time()
        i = 0
        live = [True] * len(self.sources)
        while not self._stopping() and any(live) and (self._limit is None or i < self._limit):
            due = int((time.monotonic() - t0) * self.rate) + 1
            if self._limit is not None:
                due = min(due, self._limit)
            if due <= i:
                self._stop_event.wait(min(_TICK_S, max(0.0, t0 + i / self.rate - time.monotonic())))
                continue
            if (due - i) / self.rate > MAX_LAG_S:
                skip = (due - i - 1) / self.rate
                t0, self._wall0 = t0 + skip, self._wall0 + skip
                self.summary.reanchored += 1
                log.warning("publish_reanchored", late_s=round(skip, 3), next_seq=i)
                due = i + 1
            for a, source in enumerate(self.sources):
                if live[a]:
                    live[a] = self._publish_block(client, a, source, i, due - i)
            i = due
        for a, faults in enumerate(self._faults):  # cut short: say where they really ended
            sent = self.summary.messages[self.sources[a].name]
            for inj in faults.active:
                if inj.start < sent:
                    inj.params["truncated"] = True
                    self._truth(client, a, inj.truth(self._ts(inj.start), self._ts(sent - 1), "end"))

    def _publish_block(self, client: Any, a: int, source: Source, first: int, n: int) -> bool:
        """Publish the next ``n`` samples of one source; False once it has run out."""
        block = source.read(n)
        if len(block) == 0:
            return False
        started, ended = self._faults[a].apply(block, first)
        for inj in started:
            self.summary.faults.append(inj.injection_id)
            log.info(
                "fault_started",
                asset=inj.asset,
                injection_id=inj.injection_id,
                kind=inj.kind,
                sensors=list(inj.sensors),
                magnitude=inj.magnitude,
                seq=inj.start,
            )
            self._truth(client, a, inj.truth(self._ts(inj.start), self._ts(inj.end)))
        topic, sensors = self._topics[a][0], source.sensors
        edge = self._edge
        for j, row in enumerate(block.tolist()):
            if edge is not None:
                for sp_topic, sp_payload in edge.rows(a, round(self._ts(first + j) * 1000), np.asarray(row)):
                    if not self._publish(client, sp_topic, sp_payload, qos=0):
                        return False
                self.summary.messages[source.name] += 1
                continue
            payload = wire.encode_telemetry(self._ts(first + j), first + j, dict(zip(sensors, row)))
            if not self._publish(client, topic, payload):
                return False  # stop requested while the broker was stalled
            self.summary.messages[source.name] += 1
        for inj in ended:
            log.info("fault_ended", asset=inj.asset, injection_id=inj.injection_id, seq=inj.end)
            self._truth(client, a, inj.truth(self._ts(inj.start), self._ts(inj.end), "end"))
        return len(block) == n

    def _truth(self, client: Any, a: int, truth: wire.DrillTruth) -> None:
        if self._sparkplug is not None:  # the monitor's name of the device's asset
            truth = dataclasses.replace(truth, asset=self._sparkplug.asset(truth.asset))
        payload = truth.encode()
        if self._publish(client, self._topics[a][1], payload, qos=1):
            self.summary.truths += 1
            decoded = wire.decode_drill(payload)
            if isinstance(decoded, wire.DrillTruth):
                self.summary.sent_truths.append(decoded)

    def _publish(self, client: Any, topic: str, payload: bytes, qos: int | None = None) -> bool:
        """Publish once fewer than max_inflight are unacknowledged; False if stopped while waiting."""
        with self._cond:
            while self._sent - self._acked >= self._max_inflight:
                if self._stopping():
                    return False
                self._cond.wait(_TICK_S)
            self._sent += 1
        qos = self.qos if qos is None else qos
        info = client.publish(topic, payload, qos=qos, retain=False)
        if qos == 0 and info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:  # QoS 0 without a connection: paho drops it
            with self._cond:
                self._sent -= 1
            self.summary.dropped += 1
        return True

    def _drain(self) -> int:
        """Wait up to drain_timeout for outstanding acknowledgements; returns how many never came."""
        deadline = time.monotonic() + self._drain_timeout
        with self._cond:
            while self._acked < self._sent and time.monotonic() < deadline:
                self._cond.wait(min(_TICK_S, max(0.0, deadline - time.monotonic())))
            return max(0, self._sent - self._acked)
