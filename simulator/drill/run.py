"""Running a drill: publish the drill copies with their injections, record what the monitoring chain does.

Order: with Prometheus, check that it has the alert rule loaded (a drill
that could not have seen the alert fails at once, not after its run); follow
the alarm topics (so nothing is missed), start scraping /metrics, publish the
scenario in real time (the :class:`simulator.publish.Publisher` sends the
ground truth on the drill topic as each injection starts and ends, and keeps
what it sent for the report), wait a moment for the last alarms; with Prometheus, wait (bounded by the
rule's keep_firing_for) for the alerts to resolve, then read the alert's
firing spans. Nothing here judges; the records go to :mod:`.report`.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor import logs, wire
from monitor.errors import InputError
from monitor.mqtt import BrokerSettings

from ..faults import FaultTarget, Injection, PatternSource, bind_faults
from ..process import AssetProcess
from ..publish import Publisher, PublishSummary
from ..sparkplug_edge import SparkplugSettings
from .alerts import AlertRule, Span, alert_rule, firing_spans, wait_resolved
from .observe import AlarmFollower, AlarmRecord, MetricsScraper, Scrape, describe, fetch
from .scenario import AssetSpec, Scenario

log = logs.get("drill")

SETTLE_S = 3.0  # after the last sample, for the monitor's last alarm events to arrive


class DrillCopy:
    """A source published under the drill asset's name (a :class:`simulator.publish.Source`)."""

    def __init__(self, inner: Any, name: str) -> None:
        if not wire.valid_name(name):
            raise InputError(f"drill asset name {name!r} cannot be an MQTT topic level")
        self.inner, self.name = inner, name
        self.sensors = list(inner.sensors)

    @property
    def sensor_std(self) -> np.ndarray:
        return np.asarray(self.inner.sensor_std, dtype=np.float64)

    def read(self, n: int) -> np.ndarray:
        return self.inner.read(n)

    def target(self) -> FaultTarget:
        process = self.inner if isinstance(self.inner, AssetProcess) else None
        return FaultTarget(self.name, self.sensors, self.sensor_std, process)


def make_source(a: AssetSpec) -> DrillCopy:
    if a.source == "demo":
        return DrillCopy(AssetProcess(a.seed, int(a.name[5:]), realization=a.realization), a.drill_name)
    from ..replay import load_replay

    assert a.replay is not None
    return DrillCopy(load_replay(a.replay, a.drill_name, loop=True), a.drill_name)


@dataclass
class DrillRecord:
    """Everything observed during one drill, for :mod:`.report`."""

    scenario: Scenario
    started: float  # wall clock when publishing began (sample 0 is due then)
    ended: float
    injections: list[Injection]
    truths: list[wire.DrillTruth]
    alarms: list[AlarmRecord]
    scrapes: list[Scrape]
    sensors: dict[str, list[str]]  # drill asset -> its sensors
    summary: PublishSummary
    interrupted: bool = False
    scrape_failures: int = 0
    alerts: dict[str, list[Span]] | None = None  # firing spans per drill asset, with Prometheus
    alert_rule: AlertRule | None = None
    problems: list[str] = field(default_factory=list)


def injections_for(s: Scenario, sources: list[DrillCopy], patterns: PatternSource | None) -> list[Injection]:
    specs = [s.fault_spec(inj) for inj in s.injections]
    return bind_faults(specs, [src.target() for src in sources], s.seed, patterns)


def run(s: Scenario, settings: BrokerSettings, patterns: PatternSource | None, stop: threading.Event) -> DrillRecord:
    """Publish the scenario against the live monitor and record its reaction; blocks for the drill's duration.

    ``settings`` is how to reach and log in to the broker (:func:`monitor.broker_options.settings`)."""
    assert s.metrics_url is not None, "the metrics URL is resolved by the caller"
    sources = [make_source(a) for a in s.assets]
    injections = injections_for(s, sources, patterns)
    try:
        fetch(s.metrics_url)
    except (OSError, ValueError) as exc:
        raise InputError(
            f"cannot scrape the monitor's metrics at {s.metrics_url}: {describe(exc)} "
            "(is the monitor running? --metrics-url or the scenario's [monitor] metrics_url)"
        ) from None
    rule = None
    if s.prometheus_url:
        try:
            rule = alert_rule(s.prometheus_url, s.alert)
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(
                f"cannot check alert {s.alert} at Prometheus {s.prometheus_url}: {describe(exc)}"
            ) from None
    # every change reported (deadband 0): a drill measures the detection chain, not a gateway's deadband
    sparkplug = None if s.sparkplug is None else SparkplugSettings(*s.sparkplug, deadband=0.0)
    # the monitor's names of the copies: <asset>-drill, or <edge_node_id>/<asset>-drill over Sparkplug
    named = {src.name: src.name if sparkplug is None else sparkplug.asset(src.name) for src in sources}
    drill_assets = list(named.values())
    follower = AlarmFollower(settings, s.prefix, drill_assets)
    follower.start()
    scraper = MetricsScraper(s.metrics_url, drill_assets, s.scrape_interval_s)
    publisher = Publisher(
        settings,
        sources,
        rate=s.rate,
        prefix=s.prefix,
        qos=1,
        injections=injections,
        duration=s.duration_s,
        stop_event=stop,
        client_id=f"plantwatch-drill-{uuid.uuid4().hex[:8]}",
        sparkplug=sparkplug,
    )
    log.info(
        "drill_started",
        scenario=s.name,
        assets=drill_assets,
        injections=len(injections),
        duration_s=round(s.duration_s, 1),
        broker=settings.url,
        user=settings.username,
        metrics=s.metrics_url,
        prometheus=s.prometheus_url,
    )
    scraper.start()
    started = time.time()
    try:
        summary = publisher.run()
        stop.wait(SETTLE_S)
    finally:
        scraper.stop()
        follower.stop()
    ended = time.time()
    summary.messages = {named[k]: v for k, v in summary.messages.items()}
    alarms, truths = follower.snapshot(), summary.sent_truths
    record = DrillRecord(
        s,
        started,
        ended,
        injections,
        truths,
        alarms,
        scraper.scrapes,
        {named[src.name]: src.sensors for src in sources},
        summary,
        interrupted=stop.is_set(),
        scrape_failures=scraper.failures,
    )
    if s.prometheus_url and rule is not None:
        record.alert_rule = rule
        try:
            still = wait_resolved(s.prometheus_url, rule, drill_assets, stop)
            record.alerts = firing_spans(s.prometheus_url, s.alert, drill_assets, started - 60, time.time(), still)
        except (OSError, ValueError, KeyError) as exc:
            record.problems.append(f"Prometheus query at {s.prometheus_url} failed: {describe(exc)}")
        else:
            if still:
                record.problems.append(
                    f"alert {s.alert} still firing for {', '.join(sorted(still))} "
                    f"{rule.resolve_wait_s:.0f}s after the drill (keep_firing_for "
                    f"{rule.keep_firing_for_s:g}s): has the monitor's alarm cleared?"
                )
    log.info(
        "drill_finished",
        alarms=len(alarms),
        truths=len(truths),
        scrapes=len(scraper.scrapes),
        messages=sum(summary.messages.values()),
        interrupted=record.interrupted,
    )
    return record
