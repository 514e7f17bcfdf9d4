"""What the drill watches: the monitor's alarm topic and its /metrics (Prometheus' ALERTS: :mod:`.alerts`).

Each follower only records (MQTT callbacks append and return; the scraper
sleeps between scrapes); :mod:`.report` interprets the records afterwards.
"""

from __future__ import annotations

import math
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, ClassVar

from prometheus_client.parser import text_string_to_metric_families

from monitor import logs, wire
from monitor.errors import BrokerError
from monitor.mqtt import BrokerSettings, connect, make_client

log = logs.get("drill")

HTTP_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class AlarmRecord:
    event: wire.AlarmEvent
    received: float  # wall clock when it arrived


@dataclass(frozen=True)
class Scrape:
    """One asset's series in one scrape of /metrics (NaN when absent)."""

    t: float
    asset: str
    score: float
    threshold: float
    alarm: float
    messages: float


class AlarmFollower:
    """Subscribes to the alarm topics of the drill assets and keeps what arrives.

    Only alarms: the drill knows its ground truth from its own publisher, and
    a drill's broker login may read alarms but not the drill topics it writes
    (deploy/mosquitto/plantwatch.acl). Retained alarm states (left by an
    earlier run) are ignored: only events the monitor publishes while the
    drill runs count.
    """

    def __init__(self, settings: BrokerSettings, prefix: str, assets: list[str]) -> None:
        self.settings, self.assets = settings, assets
        self.filters = [(wire.alarm_topic(prefix, a), 1) for a in assets]
        self.alarms: list[AlarmRecord] = []
        self._lock = threading.Lock()
        self._answered = threading.Event()
        self._refused: str | None = None
        self._client = make_client(settings)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._refused = f"refused the connection: {reason}"
            self._answered.set()
        else:
            client.subscribe(self.filters)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        failed = [topic for (topic, _), r in zip(self.filters, reasons) if r.is_failure]
        if failed:
            self._refused = f"refused the subscription to {', '.join(failed)} (does its ACL let this user read alarms?)"
        self._answered.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            if msg.retain:
                return
            event = wire.decode_alarm(msg.payload)
            if isinstance(event, wire.AlarmEvent):
                with self._lock:
                    self.alarms.append(AlarmRecord(event, time.time()))
        except Exception:  # never let an exception kill paho's network thread
            log.exception("alarm_message_failed", topic=str(getattr(msg, "topic", ""))[:200])

    def start(self, timeout: float = 10.0) -> None:
        connect(self._client, self.settings, timeout=timeout)
        self._client.loop_start()
        if not self._answered.wait(timeout) or self._refused is not None:
            self.stop()
            raise BrokerError(f"broker {self.settings.url} {self._refused or f'sent no SUBACK within {timeout:.0f}s'}")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def snapshot(self) -> list[AlarmRecord]:
        with self._lock:
            return list(self.alarms)


class MetricsScraper(threading.Thread):
    """Scrapes /metrics every ``interval`` seconds for each drill asset's score, threshold and alarm."""

    FAMILIES: ClassVar[dict[str, str]] = {
        "plantwatch_anomaly_score": "score",
        "plantwatch_threshold": "threshold",
        "plantwatch_alarm": "alarm",
        "plantwatch_messages": "messages",
    }

    def __init__(self, url: str, assets: list[str], interval: float) -> None:
        super().__init__(name="drill-scraper", daemon=True)
        self.url, self.assets, self.interval = url, set(assets), interval
        self.scrapes: list[Scrape] = []
        self.failures = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            began = time.monotonic()
            try:
                self.scrapes += parse_metrics(fetch(self.url), self.assets, time.time())
            except (OSError, ValueError) as exc:
                self.failures += 1
                if self.failures == 1:
                    log.warning("metrics_scrape_failed", url=self.url, error=describe(exc)[:200])
            self._halt.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


def fetch(url: str) -> str:
    """The body at ``url``; OSError (urllib's errors are OSErrors) or ValueError (a malformed URL)."""
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as r:
        return r.read().decode("utf-8")


def describe(exc: BaseException) -> str:
    """Why an HTTP request failed, in words ('connection refused', 'HTTP 404 Not Found'), not a repr.

    >>> import urllib.error
    >>> describe(urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")))
    'connection refused'
    >>> describe(urllib.error.HTTPError("http://x/metrics", 404, "Not Found", None, None))  # type: ignore[arg-type]
    'HTTP 404 Not Found'
    """
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason: object = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return f"host not found (DNS: {reason.strerror or reason})"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer within {HTTP_TIMEOUT_S:g}s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror[:1].lower() + reason.strerror[1:]
    return str(reason)


def parse_metrics(text: str, assets: set[str], t: float) -> list[Scrape]:
    values: dict[str, dict[str, float]] = {a: {} for a in assets}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            field = MetricsScraper.FAMILIES.get(sample.name) or MetricsScraper.FAMILIES.get(family.name)
            asset = sample.labels.get("asset")
            if field and asset in values and not sample.name.endswith("_created"):
                values[asset][field] = float(sample.value)
    return [
        Scrape(
            t,
            a,
            v.get("score", math.nan),
            v.get("threshold", math.nan),
            v.get("alarm", math.nan),
            v.get("messages", math.nan),
        )
        for a, v in values.items()
        if v
    ]
