"""Where a metric leaves: per-asset state rendered at scrape time by one custom collector.

The worker writes plain numbers into :class:`State` under its lock once per
micro-batch; :class:`Collector` turns them into Prometheus families when
/metrics is scraped. Nothing calls ``Gauge.set`` per message, and a family
with a closed label set (every rejection reason, every callback) is there at
0 from start-up, so ``rate()`` and alerts work before the first incident.

>>> reg = build_registry()
>>> state = State()
>>> reg.register(Collector(state))
>>> reg.get_sample_value("plantwatch_messages_rejected_total", {"reason": "not_json"})
0.0
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample

from .. import __version__
from ..wire import CONTROL_REFUSALS, FEEDBACK_LABELS, REJECTION_REASONS

LAG_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.025,
    0.03,
    0.04,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
#: ``stage`` of plantwatch_scoring_lag_seconds: since the message reached us, since its payload ``ts``.
LAG_STAGES = ("receive", "source")
CALLBACKS = ("connect", "disconnect", "subscribe", "message")
#: ``action`` of plantwatch_missing_rows_total
MISSING_ACTIONS = ("filled", "dropped")
RELOAD_RESULTS = ("ok", "failed")
EVICTION_REASONS = ("idle", "configured_asset")
#: ``kind`` of plantwatch_jetstream_messages_total: of this instance's partitions, of another's, delivered again
JETSTREAM_KINDS = ("own", "foreign", "redelivered")
#: ``result`` of plantwatch_checkpoints_total (KV checkpoints of a JetStream source, per asset)
CHECKPOINT_RESULTS = ("written", "write_failed", "restored", "refused_corrupt", "refused_format", "refused_model")


class Histogram:
    """A histogram filled a whole batch at a time with numpy (no lock, no per-value call).

    >>> h = Histogram((0.1, 1.0))
    >>> h.observe_many(np.array([0.05, 0.5, 5.0]))
    >>> h.cumulative(), h.count
    ([1, 2, 3], 3)
    """

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        self._edges = np.asarray(self.bounds)
        self.counts = np.zeros(len(bounds) + 1, dtype=np.int64)
        self.sum = 0.0

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def observe_many(self, values: np.ndarray) -> None:
        if len(values) == 0:
            return
        v = np.maximum(values, 0.0)  # a clock ahead of ours must not make _sum negative
        self.counts += np.bincount(np.searchsorted(self._edges, v, side="left"), minlength=len(self.counts))
        self.sum += float(v.sum())

    def cumulative(self) -> list[int]:
        return np.cumsum(self.counts).tolist()

    def buckets(self) -> list[tuple[str, float]]:
        les = [repr(b) for b in self.bounds] + ["+Inf"]
        return list(zip(les, (float(c) for c in self.cumulative())))


@dataclass
class AssetStats:
    """What /metrics and the live view show about one asset; written by the worker under ``State.lock``."""

    asset: str
    model: str
    version: str
    sensors: tuple[str, ...]
    messages: int = 0
    gaps: int = 0
    alarms: int = 0
    missing_filled: int = 0  # messages scored with a held value ([missing] hold)
    missing_dropped: int = 0  # messages left unscored for a missing sensor ([missing] drop, or hold too old)
    outside: int = 0  # messages with a sensor far outside the model's training range
    late: int = 0  # messages scored after a later seq (within the reorder window); each was counted as a gap
    suppressed_until: float = math.nan  # end of the maintenance window in force (NaN: not suppressed)
    drift: float = math.nan  # the largest sensor drift of the recent inputs, in training sd (NaN: none yet)
    drift_top: tuple[tuple[str, float], ...] = ()  # the sensors drifting most, with their drift
    outside_share: float = math.nan  # share of recent messages with a value outside the training range
    episode: str = ""  # id of the alarm episode in force ("" when not in alarm)
    score: float = math.nan
    threshold: float = math.nan
    alarm: bool = False
    warming_up: bool = True
    online: bool = True  # False after a Sparkplug death, until the next birth
    last_ts: float = math.nan
    first_seq: int = -1
    last_seq: int = -1
    top: tuple[int, ...] = ()  # sensor indices, largest contribution first
    contrib: np.ndarray | None = None  # (d,) contributions of the last scored row
    challenger: str = ""  # version of the challenger scoring it in shadow ("" none)
    ch_score: float = math.nan  # the challenger's score and threshold of the last row
    ch_threshold: float = math.nan


@dataclass
class State:
    """Everything the collector renders; the worker and paho callbacks write it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    assets: dict[str, AssetStats] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REJECTION_REASONS, 0))
    callback_errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CALLBACKS, 0))
    reloads: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RELOAD_RESULTS, 0))
    evicted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EVICTION_REASONS, 0))
    #: operators' control requests by result: accepted, or the refusal reason
    control: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("accepted", *CONTROL_REFUSALS), 0))
    jetstream: dict[str, int] = field(default_factory=lambda: dict.fromkeys(JETSTREAM_KINDS, 0))
    checkpoints: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHECKPOINT_RESULTS, 0))
    partitions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("held", "waiting"), 0))
    windows_expired: int = 0  # one-off [[maintenance]] windows of the config that have ended (ignored)
    #: operators' labels of alarm episodes, by (asset, label), from the feedback file on
    feedback: dict[tuple[str, str], int] = field(default_factory=dict)
    worker_errors: int = 0
    connects: int = 0
    rebirth_requests: int = 0  # Sparkplug NCMD rebirth requests sent
    ignored_metrics: int = 0  # Sparkplug BIRTH metrics that no row uses (non-numeric, or not in the model)
    read_ahead_batches: int = 0  # Sparkplug batches whose payloads the read process read
    read_process_failures: int = 0  # times the read process died, hung or answered nonsense
    lag: dict[str, Histogram] = field(default_factory=lambda: {s: Histogram(LAG_BUCKETS) for s in LAG_STAGES})
    batch: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    contributions: bool = False
    instance: str = "default"
    queue_depth: Callable[[], int] = lambda: 0
    queue_capacity: int = 0
    broker_connected: Callable[[], bool] = lambda: False

    def count_callback_error(self, name: str) -> None:
        with self.lock:
            self.callback_errors[name] = self.callback_errors.get(name, 0) + 1


def _family(kind: type, name: str, doc: str, labels: list[str] | None = None) -> Metric:
    return kind(name, doc, labels=labels) if labels is not None else kind(name, doc)


class Collector:
    """Renders :class:`State` at scrape time; register one per monitor on an injected registry."""

    def __init__(self, state: State) -> None:
        self.state = state

    def describe(self) -> Iterator[Metric]:
        yield from self._families(sample=False)

    def collect(self) -> Iterator[Metric]:
        yield from self._families(sample=True)

    def _families(self, sample: bool) -> Iterator[Metric]:
        s = self.state
        fam = {
            "messages": _family(CounterMetricFamily, "plantwatch_messages", "Telemetry messages scored", ["asset"]),
            "rejected": _family(
                CounterMetricFamily,
                "plantwatch_messages_rejected",
                "Messages not scored (counted, acknowledged), by reason",
                ["reason"],
            ),
            "score": _family(
                GaugeMetricFamily,
                "plantwatch_anomaly_score",
                "Anomaly score of the last sample (1 = normal high level)",
                ["asset"],
            ),
            "threshold": _family(
                GaugeMetricFamily, "plantwatch_threshold", "Threshold in force for the last sample", ["asset"]
            ),
            "alarm": _family(GaugeMetricFamily, "plantwatch_alarm", "1 while an alarm is active", ["asset"]),
            "alarms": _family(CounterMetricFamily, "plantwatch_alarms", "Alarms raised", ["asset"]),
            "gaps": _family(
                CounterMetricFamily, "plantwatch_sequence_gaps", "Sequence numbers never received", ["asset"]
            ),
            "missing": _family(
                CounterMetricFamily,
                "plantwatch_missing_rows",
                "Messages lacking a sensor, by what the [missing] policy did: filled (held value) or dropped",
                ["asset", "action"],
            ),
            "outside": _family(
                CounterMetricFamily,
                "plantwatch_rows_outside_training",
                "Messages scored with a sensor far outside its training range (over 10 training standard "
                "deviations from its mean): their scores say 'unlike the training data', not which fault",
                ["asset"],
            ),
            "late": _family(
                CounterMetricFamily,
                "plantwatch_late_messages",
                "Messages scored after a later seq of their asset (within [sequence] reorder_window); "
                "each was counted in plantwatch_sequence_gaps_total when the later one came",
                ["asset"],
            ),
            "last_ts": _family(
                GaugeMetricFamily,
                "plantwatch_last_message_timestamp_seconds",
                "Payload timestamp of the last scored message",
                ["asset"],
            ),
            "warming": _family(
                GaugeMetricFamily,
                "plantwatch_asset_warming_up",
                "1 while the asset's stream has fewer samples than the model's window",
                ["asset"],
            ),
            "online": _family(
                GaugeMetricFamily,
                "plantwatch_asset_online",
                "0 while the asset is known dead (Sparkplug NDEATH/DDEATH) until its next birth, else 1",
                ["asset"],
            ),
            "suppressed": _family(
                GaugeMetricFamily,
                "plantwatch_suppressed",
                "1 while the asset is in a maintenance window (scored, no alarms, threshold not learning)",
                ["asset"],
            ),
            "suppressed_until": _family(
                GaugeMetricFamily,
                "plantwatch_suppressed_until_timestamp_seconds",
                "End of the maintenance window in force (only while suppressed)",
                ["asset"],
            ),
            "drift": _family(
                GaugeMetricFamily,
                "plantwatch_input_drift",
                "How far the asset's recent inputs are from its model's training data: the largest, over its "
                "sensors, of the recent mean's distance from the training mean and of the recent spread's "
                "difference from training's, in training standard deviations (model may be stale above ~2)",
                ["asset"],
            ),
            "drift_sensor": _family(
                GaugeMetricFamily,
                "plantwatch_input_drift_sensor",
                "Input drift of the asset's sensors drifting most (the top 3), as plantwatch_input_drift",
                ["asset", "sensor"],
            ),
            "outside_share": _family(
                GaugeMetricFamily,
                "plantwatch_input_outside_training_ratio",
                "Share of the asset's recent messages with a value outside its model's training range (min-max)",
                ["asset"],
            ),
            "windows_expired": _family(
                GaugeMetricFamily,
                "plantwatch_maintenance_windows_expired",
                "One-off [[maintenance]] windows in the config that have already ended (ignored: remove them)",
            ),
            "feedback": _family(
                CounterMetricFamily,
                "plantwatch_feedback",
                "Alarm episodes operators labelled (plantwatch feedback), by label: false_alarm or confirmed",
                ["asset", "label"],
            ),
            "episode": _family(
                GaugeMetricFamily,
                "plantwatch_alarm_episode",
                "1 for the alarm episode in force, by its id (the id plantwatch feedback takes)",
                ["asset", "episode"],
            ),
            "control": _family(
                CounterMetricFamily,
                "plantwatch_control_requests",
                "Operators' suppress/unsuppress requests by result: accepted or the refusal reason",
                ["result"],
            ),
            "rebirths": _family(
                CounterMetricFamily,
                "plantwatch_sparkplug_rebirth_requests",
                "Sparkplug rebirth requests sent to edge nodes ([source] rebirth = true)",
            ),
            "ignored": _family(
                CounterMetricFamily,
                "plantwatch_sparkplug_ignored_metrics",
                "Metrics defined by Sparkplug births that no row uses (not numeric, or not in the model)",
            ),
            "read_ahead": _family(
                CounterMetricFamily,
                "plantwatch_sparkplug_read_ahead_batches",
                "Sparkplug batches whose payloads the read process read while the batch before was scored",
            ),
            "read_failures": _family(
                CounterMetricFamily,
                "plantwatch_sparkplug_read_process_failures",
                "Times the Sparkplug read process died, hung or answered nonsense (the worker reads meanwhile)",
            ),
            "info": _family(
                GaugeMetricFamily,
                "plantwatch_model_info",
                "Model scoring each asset (value 1)",
                ["asset", "model", "version"],
            ),
            "challenger": _family(
                GaugeMetricFamily,
                "plantwatch_challenger_info",
                'Challenger scoring the asset in shadow (value 1; its score and threshold carry model="challenger")',
                ["asset", "model", "version"],
            ),
            "contrib": _family(
                GaugeMetricFamily,
                "plantwatch_top_sensor_contribution",
                "Contribution of a sensor to the score (top sensors of assets in alarm)",
                ["asset", "sensor"],
            ),
            "lag": _family(
                HistogramMetricFamily,
                "plantwatch_scoring_lag_seconds",
                "Seconds until a message is scored: since it was received (stage=receive) "
                "or since its payload timestamp (stage=source)",
                ["stage"],
            ),
            "batch": _family(HistogramMetricFamily, "plantwatch_batch_size", "Messages per micro-batch"),
            "queue": _family(GaugeMetricFamily, "plantwatch_queue_depth", "Messages waiting for the worker"),
            "capacity": _family(GaugeMetricFamily, "plantwatch_queue_capacity", "Size of the intake queue"),
            "connected": _family(GaugeMetricFamily, "plantwatch_broker_connected", "1 while connected to the broker"),
            "connects": _family(CounterMetricFamily, "plantwatch_broker_connects", "Successful broker connections"),
            "assets": _family(GaugeMetricFamily, "plantwatch_assets", "Assets tracked (capped by max_assets)"),
            "evicted": _family(
                CounterMetricFamily,
                "plantwatch_assets_evicted",
                "Assets whose slot went to a new one at max_assets: silent longer than asset_idle_timeout "
                "(reason=idle) or an unknown name giving way to a configured asset (reason=configured_asset)",
                ["reason"],
            ),
            "cb_errors": _family(
                CounterMetricFamily,
                "plantwatch_callback_errors",
                "Exceptions caught in MQTT callbacks (logged)",
                ["callback"],
            ),
            "w_errors": _family(
                CounterMetricFamily,
                "plantwatch_worker_errors",
                "Batches that failed to score (logged, left unacknowledged)",
            ),
            "reloads": _family(
                CounterMetricFamily, "plantwatch_config_reloads", "SIGHUP reloads by result", ["result"]
            ),
            "jetstream": _family(
                CounterMetricFamily,
                "plantwatch_jetstream_messages",
                "JetStream messages received: of this instance's partitions (own), of another's (foreign, "
                "should stay 0), delivered again after an unacknowledged delivery (redelivered)",
                ["kind"],
            ),
            "partitions": _family(
                GaugeMetricFamily,
                "plantwatch_jetstream_partitions",
                "JetStream partitions of this instance: leased and pulled (held), or leased by another instance "
                "still (waiting: during a rolling restart with a new instance count)",
                ["state"],
            ),
            "checkpoints": _family(
                CounterMetricFamily,
                "plantwatch_checkpoints",
                "Per-asset KV checkpoints: written, failed writes, restored, and refused at restore (the asset "
                "warms up afresh) because corrupt, of another format or of another model",
                ["result"],
            ),
            "build": _family(
                GaugeMetricFamily,
                "plantwatch_build_info",
                "Version and monitor instance name (value 1)",
                ["version", "monitor"],
            ),
        }
        if sample:
            with s.lock:
                self._fill(fam)
        yield from fam.values()

    def _fill(self, f: dict[str, Any]) -> None:
        s = self.state
        for reason, n in s.rejected.items():
            f["rejected"].add_metric([reason], float(n))
        for name, n in s.callback_errors.items():
            f["cb_errors"].add_metric([name], float(n))
        for result, n in s.reloads.items():
            f["reloads"].add_metric([result], float(n))
        for reason, n in s.evicted.items():
            f["evicted"].add_metric([reason], float(n))
        for kind, n in s.jetstream.items():
            f["jetstream"].add_metric([kind], float(n))
        for state, n in s.partitions.items():
            f["partitions"].add_metric([state], float(n))
        for result, n in s.checkpoints.items():
            f["checkpoints"].add_metric([result], float(n))
        for result, n in s.control.items():
            f["control"].add_metric([result], float(n))
        f["windows_expired"].add_metric([], float(s.windows_expired))
        labels = {(a, lab): 0 for a in s.assets for lab in FEEDBACK_LABELS}
        for (asset, lab), n in {**labels, **s.feedback}.items():
            f["feedback"].add_metric([asset, lab], float(n))
        for a in s.assets.values():
            self._asset(f, a)
        for stage, h in s.lag.items():
            f["lag"].add_metric([stage], h.buckets(), h.sum)
        f["batch"].add_metric([], s.batch.buckets(), s.batch.sum)
        f["queue"].add_metric([], float(s.queue_depth()))
        f["capacity"].add_metric([], float(s.queue_capacity))
        f["connected"].add_metric([], 1.0 if s.broker_connected() else 0.0)
        f["connects"].add_metric([], float(s.connects))
        f["assets"].add_metric([], float(len(s.assets)))
        f["w_errors"].add_metric([], float(s.worker_errors))
        f["rebirths"].add_metric([], float(s.rebirth_requests))
        f["ignored"].add_metric([], float(s.ignored_metrics))
        f["read_ahead"].add_metric([], float(s.read_ahead_batches))
        f["read_failures"].add_metric([], float(s.read_process_failures))
        f["build"].add_metric([__version__, s.instance], 1.0)

    def _asset(self, f: dict[str, Any], a: AssetStats) -> None:
        lab = [a.asset]
        f["messages"].add_metric(lab, float(a.messages))
        f["alarms"].add_metric(lab, float(a.alarms))
        f["gaps"].add_metric(lab, float(a.gaps))
        f["outside"].add_metric(lab, float(a.outside))
        f["late"].add_metric(lab, float(a.late))
        for action, n in zip(MISSING_ACTIONS, (a.missing_filled, a.missing_dropped)):
            f["missing"].add_metric([a.asset, action], float(n))
        f["info"].add_metric([a.asset, a.model, a.version], 1.0)
        f["warming"].add_metric(lab, 1.0 if a.warming_up else 0.0)
        f["online"].add_metric(lab, 1.0 if a.online else 0.0)
        if not math.isnan(a.drift):
            f["drift"].add_metric(lab, a.drift)
            f["outside_share"].add_metric(lab, a.outside_share)
            for sensor, value in a.drift_top:
                f["drift_sensor"].add_metric([a.asset, sensor], value)
        if a.episode and a.alarm:
            f["episode"].add_metric([a.asset, a.episode], 1.0)
        suppressed = not math.isnan(a.suppressed_until)
        f["suppressed"].add_metric(lab, 1.0 if suppressed else 0.0)
        if suppressed:
            f["suppressed_until"].add_metric(lab, a.suppressed_until)
        if a.messages == 0:
            return
        f["score"].add_metric(lab, a.score)
        f["threshold"].add_metric(lab, a.threshold)
        f["alarm"].add_metric(lab, 1.0 if a.alarm and a.online else 0.0)
        f["last_ts"].add_metric(lab, a.last_ts)
        if a.challenger:
            f["challenger"].add_metric([a.asset, a.model, a.challenger], 1.0)
            if not math.isnan(a.ch_score):  # the champion's series keep their labels; the challenger's add one
                for key, value in (("score", a.ch_score), ("threshold", a.ch_threshold)):
                    f[key].samples.append(Sample(f[key].name, {"asset": a.asset, "model": "challenger"}, value))
        if a.contrib is None:
            return
        shown = range(len(a.sensors)) if self.state.contributions else (a.top if a.alarm else ())
        for j in shown:
            f["contrib"].add_metric([a.asset, a.sensors[j]], float(a.contrib[j]))


def build_registry() -> CollectorRegistry:
    """A fresh registry with the process, platform and GC collectors (ours is added by the monitor)."""
    reg = CollectorRegistry(auto_describe=True)  # the process collector named too: ?name[]= can select it
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    GCCollector(registry=reg)
    return reg
