"""The monitor's one configuration schema: TOML file < PLANTWATCH_* environment < command-line flags.

Every setting is a field of a frozen dataclass below, with a default and a
description; unknown keys are refused and every error names the dotted key
(and the environment variable or flag it came from), so a typo fails at
start-up instead of being silently ignored. :func:`load` is the whole story:
read the file, overlay the environment, overlay the flags, then
:func:`parse` once into validated objects.

>>> cfg = parse({"broker": {"url": "mqtt://broker:1883"}, "models": {"default": "m/"}})
>>> cfg.broker.url, cfg.metrics.port, cfg.client_id
('mqtt://broker:1883', 9108, 'plantwatch-monitor-default')
>>> parse({"brokr": {}, "models": {"default": "m/"}})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
monitor.errors.ConfigError: brokr: unknown key (known: instance, prefix, assets, max_assets, ...)

Every mistake of a file is reported at once, each with its key:

>>> for problem in check({"metrics": {"port": 70000, "bind": 1}, "models": {}})[1]:
...     print(problem)
metrics.bind: must be str, got int 1
metrics.port: must be 0-65535, got 70000
models.default: no model configured (give --model, models.default or [models.assets])
"""

from __future__ import annotations

import math
import os
import time
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from . import missing, wire
from .errors import ConfigError
from .maintenance import Schedule, overlapping, zone
from .mqtt import BrokerSettings, parse_url

ENV_PREFIX = "PLANTWATCH_"


def setting(default: Any, description: str, check: Callable[[Any], bool] | None = None, rule: str = "") -> Any:
    """A schema field: default, description (shown by ``describe``) and an optional rule."""
    meta = {"description": description, "check": check, "rule": rule}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def _name_ok(v: str) -> bool:
    return wire.valid_name(v)


def _prefix_ok(v: str) -> bool:
    try:
        wire.telemetry_filter(v)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class BrokerConfig:
    url: str = setting("mqtt://127.0.0.1:1883", "broker URL: mqtt://HOST:PORT or mqtts://HOST:PORT (TLS)")
    ca_file: str | None = setting(None, "CA certificate file for mqtts:// (default: the system CAs)")
    cert_file: str | None = setting(None, "client certificate file for mqtts:// (mutual TLS)")
    key_file: str | None = setting(None, "client private key file for mqtts://")
    username: str | None = setting(None, "username; the password comes from password_env or password_file")
    password_env: str | None = setting(None, "name of the environment variable holding the password")
    password_file: str | None = setting(None, "file holding the password (e.g. a systemd credential)")
    client_id: str | None = setting(
        None, "fixed client id of the persistent session (default: plantwatch-monitor-<instance>)"
    )
    protocol: int = setting(4, "MQTT protocol: 4 = 3.1.1, 5 = MQTT 5", lambda v: v in (4, 5), "must be 4 or 5")
    keepalive: int = setting(30, "keepalive interval, seconds", lambda v: 5 <= v <= 65535, "must be 5-65535")
    session_expiry: int = setting(
        86400,
        "MQTT 5 Session Expiry Interval, seconds: how long the broker keeps our queued messages while we are away",
        lambda v: 0 <= v <= 2**32 - 1,
        "must be 0-4294967295",
    )


@dataclass(frozen=True)
class MetricsConfig:
    bind: str = setting("127.0.0.1", "address the HTTP server (/metrics, /healthz, /readyz) listens on")
    port: int = setting(9108, "HTTP port (0 = any free port)", lambda v: 0 <= v <= 65535, "must be 0-65535")
    contributions: bool = setting(
        False,
        "export every sensor's contribution of every asset "
        "(asset x sensor series), not only the top sensors of assets in alarm",
    )
    web_config_file: str | None = setting(
        None,
        "web config file as Prometheus exporters read it (tls_server_config: cert_file/key_file; "
        "basic_auth_users: name -> bcrypt hash): HTTPS on the metrics port, a password for /metrics",
    )


@dataclass(frozen=True)
class ModelsConfig:
    default: str | None = setting(None, "model folder for assets that no pattern in [models.assets] matches")
    assets: dict[str, str] = setting({}, "asset name pattern (fnmatch, first match in file order) -> model folder")
    unknown_asset: str = setting(
        "default",
        "what to do with an asset no pattern matches: 'default' scores it "
        "with models.default, 'reject' counts it as unknown_asset",
        lambda v: v in ("default", "reject"),
        "must be 'default' or 'reject'",
    )
    shadow_interval: float = setting(
        60.0,
        "seconds between the lines a challenger's shadow scoring adds to <state_dir>/shadow-<instance>.jsonl "
        "(what 'plantwatch models compare' reads)",
        lambda v: 0.1 <= v <= 3600,
        "must be 0.1-3600",
    )


@dataclass(frozen=True)
class DetectorConfig:
    threshold_method: str | None = setting(
        None,
        "override the models' rolling threshold: quantile, spot or static",
        lambda v: v in ("quantile", "spot", "static"),
        "must be quantile, spot or static",
    )
    on_delay: int | None = setting(
        None, "override: samples above threshold before an alarm is raised", lambda v: v >= 1, "must be >= 1"
    )
    off_delay: int | None = setting(
        None, "override: samples below the clear level before it clears", lambda v: v >= 1, "must be >= 1"
    )
    deadband: float | None = setting(
        None, "override: clear level as a fraction of the threshold", lambda v: 0 < v <= 1, "must be in (0, 1]"
    )
    top_k: int = setting(
        3, "sensors named per alarm and exported for assets in alarm", lambda v: 0 <= v <= 50, "must be 0-50"
    )


@dataclass(frozen=True)
class WorkerConfig:
    queue_size: int = setting(
        2000,
        "messages buffered between the MQTT thread and the worker; when full, "
        "intake waits and the backlog stays at the broker (not in our memory)",
        lambda v: 1 <= v <= 10**7,
        "must be 1-10000000",
    )
    batch_max_size: int = setting(
        1000, "most messages scored in one forward pass", lambda v: 1 <= v <= 100000, "must be 1-100000"
    )
    batch_max_time: float = setting(
        0.005,
        "seconds a batch waits to fill once its first message is in",
        lambda v: 0 <= v <= 1,
        "must be 0-1 seconds",
    )


def _finite(v: float | None) -> bool:
    return v is None or math.isfinite(v)


@dataclass(frozen=True)
class SensorConfig:
    min: float | None = setting(
        None, "lowest plausible value (default: from the model's training range)", _finite, "must be a finite number"
    )
    max: float | None = setting(
        None, "highest plausible value (default: from the model's training range)", _finite, "must be a finite number"
    )


def _template_ok(v: str) -> bool:
    sample = {"group_id": "g", "edge_node_id": "n", "device_id": "d"}
    try:
        return wire.valid_asset(v.format(**sample))
    except (KeyError, IndexError, ValueError):
        return False


@dataclass(frozen=True)
class SourceConfig:
    kind: str = setting(
        "mqtt",
        "where telemetry comes from: 'mqtt' (the [broker], every asset) or 'jetstream' (a NATS JetStream "
        "stream partitioned by asset: this instance scores only the partitions p = instance_index mod instances)",
        lambda v: v in ("mqtt", "jetstream"),
        "must be 'mqtt' or 'jetstream'",
    )
    servers: list[str] = setting(
        ["nats://127.0.0.1:4222"], "jetstream: NATS server URLs (nats:// or tls://), any of the cluster's nodes"
    )
    stream: str = setting("PLANTWATCH", "jetstream: the telemetry stream (with its partitioning subject transform)")
    bucket: str = setting("plantwatch-state", "jetstream: the KV bucket holding each asset's checkpointed state")
    leases: str = setting(
        "plantwatch-leases",
        "jetstream: the KV bucket (with a TTL) of the partition leases: one instance pulls a partition at a time",
    )
    partitions: int = setting(
        12,
        "jetstream: partitions of the stream (its transform's partition(N, ...)); a mismatch is refused at start",
        lambda v: 1 <= v <= 4096,
        "must be 1-4096",
    )
    instances: int = setting(1, "jetstream: monitor instances sharing the partitions (N)", lambda v: 1 <= v <= 4096,
                             "must be 1-4096")  # fmt: skip
    instance_index: int = setting(
        0,
        "jetstream: this instance's index k (0..instances-1), e.g. from PLANTWATCH_SOURCE_INSTANCE_INDEX set by "
        "a systemd instance (%i) or a StatefulSet's pod index",
        lambda v: v >= 0,
        "must be >= 0",
    )
    user: str | None = setting(None, "jetstream: user name; the password from password_env or password_file")
    password_env: str | None = setting(None, "jetstream: environment variable holding the password")
    password_file: str | None = setting(None, "jetstream: file holding the password")
    creds_file: str | None = setting(None, "jetstream: NATS credentials file (JWT + nkey seed), instead of a user")
    ca_file: str | None = setting(None, "jetstream: CA certificate for tls:// servers (default: the system CAs)")
    cert_file: str | None = setting(None, "jetstream: client certificate (mutual TLS)")
    key_file: str | None = setting(None, "jetstream: client private key")
    max_ack_pending: int = setting(
        20000,
        "jetstream: messages a partition's consumer hands out before their acknowledgement (backpressure)",
        lambda v: 1 <= v <= 10**7,
        "must be 1-10000000",
    )
    ack_wait: float = setting(
        30.0,
        "jetstream: seconds before an unacknowledged message is delivered again",
        lambda v: 1 <= v <= 86400,
        "must be 1-86400 seconds",
    )
    checkpoint_interval: float = setting(
        1.0,
        "jetstream: seconds between checkpoints of the scored assets' state to the KV bucket; messages are "
        "acknowledged once a checkpoint covers them, so a restarted instance continues exactly. 0 = no "
        "checkpoints: acknowledged after scoring, a moved or restarted asset warms up again",
        lambda v: v == 0 or 0.05 <= v <= 3600,
        "must be 0 or 0.05-3600 seconds",
    )
    format: str = setting(
        "json",
        "telemetry format: 'json' (<prefix>/<asset>/telemetry, plantwatch's contract) or 'sparkplug' "
        "(Sparkplug B: spBv1.0/<group_id>/... births, data and deaths)",
        lambda v: v in ("json", "sparkplug"),
        "must be 'json' or 'sparkplug'",
    )
    group_ids: list[str] = setting(
        [],
        "Sparkplug group ids to subscribe to (format = 'sparkplug' needs at least one)",
        lambda v: all(wire.valid_name(g) for g in v) and len(set(v)) == len(v),
        "must be distinct valid topic levels (no '/', '+', '#')",
    )
    device_asset: str = setting(
        "{edge_node_id}/{device_id}",
        "Sparkplug: the asset name of a device; fields {group_id}, {edge_node_id}, {device_id}",
        _template_ok,
        "must format into 1-3 topic levels from {group_id}, {edge_node_id}, {device_id}",
    )
    node_asset: str = setting(
        "{edge_node_id}",
        "Sparkplug: the asset name of an edge node's own metrics (NDATA); fields {group_id}, {edge_node_id}",
        lambda v: "{device_id}" not in v and _template_ok(v),
        "must format into 1-3 topic levels from {group_id}, {edge_node_id}",
    )
    sample_period: float = setting(
        0.0,
        "Sparkplug: 0 makes a row of every BIRTH and DATA message; > 0 a row every this many seconds (period "
        "boundaries on the payload clock) of the values held then, as history recorded at a fixed rate has",
        lambda v: v >= 0,
        "must be >= 0 seconds",
    )
    stale_after: float = setting(
        0.0,
        "Sparkplug: seconds a metric's last reported value stays current (report-by-exception sends only "
        "changes); a row with an older one is incomplete and not scored (stale_metric). 0 = while the node lives",
        lambda v: v >= 0,
        "must be >= 0 seconds",
    )
    stale_after_metrics: dict[str, float] = setting(
        {}, "Sparkplug: metric name pattern (fnmatch, first match) -> its own stale_after, seconds"
    )
    rebirth: bool = setting(
        False,
        "Sparkplug: send a rebirth request (NCMD Node Control/Rebirth) after DATA before BIRTH, an unknown "
        "alias, a datatype change or a seq gap. Off by default: writing commands to a plant is the operator's call",
    )
    rebirth_interval: float = setting(
        30.0, "Sparkplug: seconds between two rebirth requests to one edge node", lambda v: v >= 1, "must be >= 1"
    )
    read_process: bool = setting(
        True,
        "Sparkplug: while a backlog drains, read DATA payloads in a helper process (python -m "
        "monitor.sparkplug.read_server) one batch ahead of scoring, on a second core (not with a sample_period "
        "or stale_after limits); false reads them in the worker",
    )


@dataclass(frozen=True)
class MissingConfig:
    policy: str = setting(
        "fail",
        "a telemetry message without a value for one of its model's sensors: 'fail' rejects it "
        "(reason missing_sensor), 'drop' leaves it unscored, 'hold' or 'hold:N' scores it with that "
        "sensor's last value (at most N messages after the last real one, else it is dropped); "
        "filled and dropped messages are counted per asset (plantwatch_missing_rows_total)",
        missing.valid,
        missing.RULE,
    )
    sensors: dict[str, str] = setting(
        {},
        "sensor name pattern (fnmatch, first match in file order) -> policy, for those sensors instead of 'policy'",
        lambda v: all(missing.valid(p) for p in v.values()),
        "every value " + missing.RULE,
    )


def _zone_ok(v: str) -> bool:
    try:
        zone(v)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class MaintenanceConfig:
    """One ``[[maintenance]]`` window: fixed (start, end) or weekly (weekly, duration)."""

    assets: list[str] = setting([], "asset name patterns (fnmatch) the window applies to, e.g. ['boiler*']")
    reason: str = setting("", "why (logged, on the alarm topic and the dashboards), e.g. 'annual inspection'")
    start: datetime | None = setting(
        None, "start of a one-off window, a TOML date-time without quotes (2026-12-24T06:00:00), in timezone"
    )
    end: datetime | None = setting(None, "end of a one-off window, as start")
    weekly: str | None = setting(None, "a weekly window's days and local start: 'Sat 22:00', 'Mon-Fri 06:30'")
    duration: str | None = setting(None, "a weekly window's length: 90m, 4h, 1h30m")
    timezone: str | None = setting(None, "time zone of this window (default: the top-level timezone)", _zone_ok,
                                   "must be an IANA time zone such as Europe/Berlin")  # fmt: skip


@dataclass(frozen=True)
class SuppressionConfig:
    warmup_rows: int = setting(
        30,
        "messages an asset is scored after a maintenance window ends before it may alarm again "
        "(the re-start transient; plantwatch_asset_warming_up is 1 meanwhile)",
        lambda v: 0 <= v <= 10**6,
        "must be 0-1000000",
    )


@dataclass(frozen=True)
class SequenceConfig:
    reorder_window: int = setting(
        1000,
        "how far behind the newest seq of an asset a skipped number may still arrive and be scored (late); "
        "further behind it is out_of_order, unless the publisher restarted its numbering",
        lambda v: 1 <= v <= 100000,
        "must be 1-100000",
    )
    max_jump: int = setting(
        100000,
        "a seq further ahead of the newest than this is not believed from one message: seq_jump, until the "
        "third consecutive number out there moves the stream on (no gaps counted)",
        lambda v: 1 <= v <= 2**62,
        "must be 1-4611686018427387904",
    )


@dataclass(frozen=True)
class TimeConfig:
    skew: float = setting(
        300.0,
        "seconds a payload ts may lie ahead of the monitor's clock (further: ts_out_of_range); "
        "retained telemetry older than this is not scored (retained_stale, counted once)",
        lambda v: 0 < v <= 10**9,
        "must be > 0 seconds",
    )
    max_age: float = setting(
        0.0,
        "seconds a payload ts may lie behind the monitor's clock (older: ts_out_of_range); "
        "0 = any age, so a backlog after an outage and replayed history are scored",
        lambda v: 0 <= v <= 10**10,
        "must be >= 0 seconds",
    )


@dataclass(frozen=True)
class DriftConfig:
    window: int = setting(
        3600,
        "messages in each asset's input drift window (exponentially weighted): plantwatch_input_drift compares "
        "them with the model's training data",
        lambda v: 10 <= v <= 10**8,
        "must be 10-100000000",
    )


@dataclass(frozen=True)
class MonitorConfig:
    instance: str = setting(
        "default",
        "instance name: status topic and default client id",
        _name_ok,
        "must be a valid topic level (no '/', '+', '#')",
    )
    prefix: str = setting(
        wire.DEFAULT_PREFIX,
        "topic prefix: telemetry is <prefix>/<asset>/telemetry",
        _prefix_ok,
        "must be topic levels without '+', '#'",
    )
    assets: list[str] = setting(
        [],
        "assets this monitor subscribes to (one shard of a plant, e.g. with the "
        "plantwatch@.service template); empty = every asset under the prefix",
        lambda v: all(wire.valid_name(a) for a in v) and len(set(v)) == len(v),
        "must be distinct valid topic levels (no '/', '+', '#')",
    )
    max_assets: int = setting(
        1000,
        "assets tracked at most; later ones are rejected as too_many_assets (protects memory and metric cardinality)",
        lambda v: 1 <= v <= 10**6,
        "must be 1-1000000",
    )
    asset_idle_timeout: float = setting(
        3600.0,
        "seconds without a valid message after which an asset's slot may go to a new asset once max_assets is "
        "reached (its stream state is dropped; it is admitted again as new when it comes back); 0 = never",
        lambda v: v >= 0,
        "must be >= 0 seconds",
    )
    broker: BrokerConfig = field(default_factory=BrokerConfig, metadata={"description": "MQTT connection"})
    source: SourceConfig = field(
        default_factory=SourceConfig, metadata={"description": "telemetry format: JSON contract or Sparkplug B"}
    )
    metrics: MetricsConfig = field(default_factory=MetricsConfig, metadata={"description": "HTTP endpoint"})
    models: ModelsConfig = field(
        default_factory=ModelsConfig, metadata={"description": "which model scores which asset"}
    )
    detector: DetectorConfig = field(default_factory=DetectorConfig, metadata={"description": "run-time overrides"})
    worker: WorkerConfig = field(default_factory=WorkerConfig, metadata={"description": "queue and micro-batches"})
    sensors: dict[str, SensorConfig] = setting(
        {},
        "plausible bounds per sensor name ([sensors.NAME] min/max): a message with a value outside them is "
        "rejected as out_of_range; default: 100 training spans beyond the model's training range",
    )
    missing: MissingConfig = field(
        default_factory=MissingConfig, metadata={"description": "messages with a sensor missing"}
    )
    sequence: SequenceConfig = field(
        default_factory=SequenceConfig, metadata={"description": "per-asset seq rules: reordering, jumps"}
    )
    time: TimeConfig = field(default_factory=TimeConfig, metadata={"description": "payload timestamps we believe"})
    timezone: str = setting(
        "UTC", "the plant's time zone (IANA name) for [[maintenance]] times", _zone_ok, "must be an IANA time zone"
    )
    state_dir: str | None = setting(
        None,
        "folder for state that survives a restart: operator suppressions, each asset's seq bookkeeping "
        "(so that redeliveries after a crash are not scored twice) and stream state; default: "
        "$STATE_DIRECTORY (systemd's StateDirectory), else none (all lost on restart, said at start-up)",
    )
    state_interval: float = setting(
        10.0,
        "seconds between two saves of the stream states in state_dir (each asset's seq is saved before "
        "its messages are acknowledged, within 50 ms)",
        lambda v: 0.1 <= v <= 86400,
        "must be 0.1-86400 seconds",
    )
    maintenance: list[MaintenanceConfig] = setting(
        [], "scheduled maintenance windows ([[maintenance]] tables): assets scored, no alarms"
    )
    suppression: SuppressionConfig = field(
        default_factory=SuppressionConfig, metadata={"description": "maintenance windows and operator suppressions"}
    )
    drift: DriftConfig = field(
        default_factory=DriftConfig, metadata={"description": "recent inputs against the training data"}
    )

    def schedules(self) -> list[Schedule]:
        """The [[maintenance]] windows as schedules (the config was checked: they build)."""
        return [_schedule(i, m, self.timezone) for i, m in enumerate(self.maintenance)]

    def state_folder(self, env: Mapping[str, str] | None = None) -> str | None:
        """``state_dir``, else systemd's ``$STATE_DIRECTORY`` (its first path); None: nothing is kept."""
        given = (os.environ if env is None else env).get("STATE_DIRECTORY", "")
        return self.state_dir or given.split(":")[0] or None

    @property
    def client_id(self) -> str:
        return self.broker.client_id or f"plantwatch-monitor-{self.instance}"

    def broker_settings(self) -> BrokerSettings:
        return broker_settings(self.broker, self.client_id)

    def sensor_bounds(self) -> dict[str, tuple[float | None, float | None]]:
        """Sensor name -> (min, max) overrides of the models' plausible bounds (None: the model's)."""
        return sensor_bounds(self.sensors)

    def model_paths(self) -> list[str]:
        """Every distinct model folder named, default first."""
        paths = ([self.models.default] if self.models.default else []) + list(self.models.assets.values())
        return list(dict.fromkeys(paths))


# ---------------------------------------------------------------- parsing


def _coerce(key: str, tp: Any, value: Any) -> Any:
    args = typing.get_args(tp)
    if type(None) in args:  # X | None
        tp = next(a for a in args if a is not type(None))
    if typing.get_origin(tp) is list and is_dataclass(typing.get_args(tp)[0]):  # an array of tables
        if not isinstance(value, list):
            raise ConfigError(f"{key}: must be an array of tables ([[{key}]])")
        item = typing.get_args(tp)[0]
        problems: list[str] = []
        built = [_build(item, sub, f"{key}[{i}]", problems) for i, sub in enumerate(value)]
        if problems:
            raise ConfigError(*problems)
        return built
    if typing.get_origin(tp) is dict and is_dataclass(typing.get_args(tp)[1]):  # a table of tables
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: must be a table of tables")
        item = typing.get_args(tp)[1]
        problems = []
        tables = {name: _build(item, sub, f"{key}.{name}", problems) for name, sub in value.items()}
        if problems:
            raise ConfigError(*problems)
        return tables
    if typing.get_origin(tp) is dict and typing.get_args(tp)[1] is float:
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
            for k, v in value.items()
        ):
            raise ConfigError(f"{key}: must be a table of numbers >= 0")
        return {k: float(v) for k, v in value.items()}
    if typing.get_origin(tp) is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ConfigError(f"{key}: must be a table of strings")
        return dict(value)
    if typing.get_origin(tp) is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: must be a list of strings")
        return list(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: must be {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type, data: Any, path: str, problems: list[str]) -> Any:
    """``cls`` from a table; every problem is added to ``problems`` (and its field keeps its default),
    so one pass reports every mistake in a file."""
    if not isinstance(data, dict):
        problems.append(f"{path}: must be a table")
        return cls()
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    for name in data:
        if name not in known:
            where = f"{path}.{name}" if path else name
            problems.append(f"{where}: unknown key (known: {', '.join(known)})")
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        key = f"{path}.{f.name}" if path else f.name
        tp = hints[f.name]
        if is_dataclass(tp):
            kwargs[f.name] = _build(tp, data[f.name], key, problems)  # type: ignore[arg-type]  # is_dataclass narrows to an instance
            continue
        if typing.get_origin(tp) is list and is_dataclass(typing.get_args(tp)[0]) and isinstance(data[f.name], list):
            item = typing.get_args(tp)[0]  # an array of tables: each table's problems, the others still checked
            kwargs[f.name] = [_build(item, sub, f"{key}[{i}]", problems) for i, sub in enumerate(data[f.name])]
            continue
        try:
            value = _coerce(key, tp, data[f.name])
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        check = f.metadata.get("check")
        if check is not None and value is not None and not check(value):
            problems.append(f"{key}: {f.metadata['rule']}, got {value!r}")
            continue
        kwargs[f.name] = value
    return cls(**kwargs)


def broker_settings(b: BrokerConfig, client_id: str | None = None) -> BrokerSettings:
    """How to connect as ``b`` says; every command that connects to the broker goes through here."""
    host, port, tls = parse_url(b.url)
    return BrokerSettings(
        host=host,
        port=port,
        tls=tls,
        ca_file=b.ca_file,
        cert_file=b.cert_file,
        key_file=b.key_file,
        username=b.username,
        password_env=b.password_env,
        password_file=b.password_file,
        client_id=client_id,
        protocol=b.protocol,
        keepalive=b.keepalive,
        session_expiry=b.session_expiry,
    )


def broker_problems(b: BrokerConfig) -> list[str]:
    """Rules across the [broker] keys, and the password readable now (not at the first reconnect)."""
    try:
        _, _, tls = parse_url(b.url)
    except ConfigError as exc:
        return [f"broker.url: {exc}"]
    problems = []
    for name in ("ca_file", "cert_file", "key_file"):
        value = getattr(b, name)
        if value and not tls:
            problems.append(f"broker.{name}: only used with an mqtts:// broker.url")
        elif value and not Path(value).is_file():
            problems.append(f"broker.{name}: no such file {value}")
    if b.password_env and b.password_file:
        problems.append("broker.password_file: give password_env or password_file, not both")
    elif (b.password_env or b.password_file) and not b.username:
        problems.append("broker.username: a password is configured but no username")
    if b.client_id is not None and not (0 < len(b.client_id) <= 256):
        problems.append("broker.client_id: must be 1-256 characters")
    if not (b.password_env and b.password_file):
        try:
            broker_settings(b).password()  # names the key when the env var or file is missing
        except ConfigError as exc:
            problems.extend(exc.problems)
    return problems


def check_broker(b: BrokerConfig) -> None:
    """:func:`broker_problems` as one ConfigError naming them all."""
    problems = broker_problems(b)
    if problems:
        raise ConfigError(*problems)


def build_broker(data: Mapping[str, Any]) -> BrokerConfig:
    """A [broker] table alone, its keys' names and types checked (for commands that connect but are not
    the monitor); :func:`check_broker` checks the rest."""
    problems: list[str] = []
    b: BrokerConfig = _build(BrokerConfig, dict(data), "broker", problems)
    if problems:
        raise ConfigError(*problems)
    return b


def parse_broker(data: Mapping[str, Any]) -> BrokerConfig:
    """:func:`build_broker` and :func:`check_broker`."""
    b = build_broker(data)
    check_broker(b)
    return b


def sensor_bounds(sensors: Mapping[str, SensorConfig]) -> dict[str, tuple[float | None, float | None]]:
    return {name: (s.min, s.max) for name, s in sensors.items()}


def _sensor_problems(sensors: Mapping[str, SensorConfig], path: str = "sensors") -> list[str]:
    return [
        f"{path}.{name}: min must be below max, got min={s.min!r} max={s.max!r}"
        for name, s in sensors.items()
        if s.min is not None and s.max is not None and not s.min < s.max
    ]


def _check_sensors(sensors: Mapping[str, SensorConfig], path: str = "sensors") -> None:
    problems = _sensor_problems(sensors, path)
    if problems:
        raise ConfigError(*problems)


def read_sensor_bounds(path: str | Path) -> dict[str, tuple[float | None, float | None]]:
    """The [sensors] table of a TOML file (e.g. the monitor's config), for ``plantwatch score --bounds``.

    Other tables are ignored, so the monitor's own config file gives ``score`` the bounds the monitor uses.
    """
    data = read_file(path)
    table = data.get("sensors", {})
    try:
        sensors = _coerce("sensors", dict[str, SensorConfig], table)
        _check_sensors(sensors)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return sensor_bounds(sensors)


def _cross_check(cfg: MonitorConfig) -> list[str]:
    m = cfg.models
    problems = _sensor_problems(cfg.sensors) + broker_problems(cfg.broker)
    problems += jetstream_problems(cfg)
    if cfg.source.format == "sparkplug" and not cfg.source.group_ids:
        problems.append("source.group_ids: format 'sparkplug' needs the group ids to subscribe to")
    if cfg.source.format == "sparkplug" and cfg.assets:
        problems.append("assets: applies to format 'json' only; shard Sparkplug plants by source.group_ids")
    problems += maintenance_problems(cfg.maintenance, cfg.timezone)
    if not m.default and not m.assets:
        problems.append("models.default: no model configured (give --model, models.default or [models.assets])")
    elif m.unknown_asset == "default" and not m.default:
        problems.append(
            "models.unknown_asset: 'default' needs models.default; set it to 'reject' or give a default model"
        )
    return problems


def jetstream_problems(cfg: MonitorConfig) -> list[str]:
    """Rules of ``[source] kind = "jetstream"``: who this instance is, and what it needs."""
    s = cfg.source
    if s.kind != "jetstream":
        return []
    problems = []
    if s.instance_index >= s.instances:
        problems.append(
            f"source.instance_index: {s.instance_index} is out of range for instances = {s.instances} "
            f"(0-{s.instances - 1})"
        )
    if s.instances > s.partitions:
        problems.append(f"source.instances: {s.instances} instances for {s.partitions} partitions leaves some idle")
    if s.format != "json":
        problems.append("source.format: kind 'jetstream' takes the JSON telemetry contract only")
    if cfg.assets:
        problems.append("assets: not used with source.kind 'jetstream' (the partitions choose the assets)")
    if not s.servers or not all(u.startswith(("nats://", "tls://")) for u in s.servers):
        problems.append("source.servers: give nats:// or tls:// URLs")
    if s.password_env and s.password_file:
        problems.append("source.password_file: give password_env or password_file, not both")
    elif (s.password_env or s.password_file) and not s.user:
        problems.append("source.user: a password is configured but no user")
    if s.creds_file and s.user:
        problems.append("source.creds_file: give a credentials file or a user, not both")
    if s.password_env and s.password_env not in os.environ:
        problems.append(f"source.password_env: the environment variable {s.password_env} is not set")
    for name in ("password_file", "creds_file", "ca_file", "cert_file", "key_file"):
        value = getattr(s, name)
        if value and not Path(value).is_file():
            problems.append(f"source.{name}: no such file {value}")
    return problems


def _schedule(i: int, m: MaintenanceConfig, tz: str) -> Schedule:
    where, sid = m.timezone or tz, f"maintenance[{i}]"
    if m.weekly is not None:
        return Schedule.weekly(m.assets, m.reason, m.weekly, m.duration or "", where, sid)
    assert m.start is not None and m.end is not None
    return Schedule.fixed(m.assets, m.reason, m.start, m.end, where, sid)


def maintenance_problems(windows: list[MaintenanceConfig], tz: str) -> list[str]:
    """Each [[maintenance]] window complete and valid, and no two overlapping for an asset both name."""
    problems: list[str] = []
    built: list[Schedule] = []
    for i, m in enumerate(windows):
        key = f"maintenance[{i}]"
        if not m.assets or not all(a.strip() for a in m.assets):
            problems.append(f"{key}.assets: name the assets, e.g. assets = ['boiler*']")
        if not m.reason.strip():
            problems.append(f"{key}.reason: say why (it is logged and shown on the alarm topic)")
        fixed, weekly = m.start is not None or m.end is not None, m.weekly is not None or m.duration is not None
        if fixed == weekly:
            problems.append(f"{key}: give start and end, or weekly and duration (one of the two)")
            continue
        if fixed and (m.start is None or m.end is None):
            problems.append(f"{key}.{'end' if m.end is None else 'start'}: a one-off window needs start and end")
            continue
        if weekly and (m.weekly is None or m.duration is None):
            problems.append(f"{key}.{'duration' if m.duration is None else 'weekly'}: a weekly window needs both")
            continue
        try:
            built.append(_schedule(i, m, tz))
        except ValueError as exc:
            problems.append(f"{key}: {exc}")
    now = time.time()
    for j, b in enumerate(built):
        for a in built[:j]:
            if overlapping(a, b, now) is not None:
                problems.append(
                    f"{b.id}: overlaps {a.id} for assets both name ({b.describe()} and {a.describe()}); "
                    "merge them or narrow the assets"
                )
    return problems


def _key(problem: str) -> str:
    return problem.split(":", 1)[0]


def check(data: Mapping[str, Any]) -> tuple[MonitorConfig, list[str]]:
    """Every problem of a merged mapping, and the config it describes (defaults where a value is bad)."""
    problems: list[str] = []
    cfg: MonitorConfig = _build(MonitorConfig, dict(data), "", problems)
    reported = {_key(p) for p in problems}  # a rule across keys says nothing new about a key already bad
    problems += [p for p in _cross_check(cfg) if _key(p) not in reported]
    return cfg, problems


def parse(data: Mapping[str, Any]) -> MonitorConfig:
    """Validate a merged mapping into a :class:`MonitorConfig`; one ConfigError names every bad dotted key."""
    cfg, problems = check(data)
    if problems:
        raise ConfigError(*problems)
    return cfg


# ---------------------------------------------------------------- sources


def read_file(path: str | Path) -> dict[str, Any]:
    """The TOML file as a mapping; relative model and TLS paths are made relative to the file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    base = path.resolve().parent
    models, broker, metrics = data.get("models"), data.get("broker"), data.get("metrics")
    source = data.get("source")
    if isinstance(source, dict):
        for k in ("password_file", "creds_file", "ca_file", "cert_file", "key_file"):
            if k in source:
                source[k] = _relative(base, source[k])
    if isinstance(metrics, dict) and "web_config_file" in metrics:
        metrics["web_config_file"] = _relative(base, metrics["web_config_file"])
    if isinstance(models, dict):
        if "default" in models:
            models["default"] = _relative(base, models["default"])
        if isinstance(models.get("assets"), dict):
            models["assets"] = {k: _relative(base, v) for k, v in models["assets"].items()}
    if isinstance(broker, dict):
        broker_paths_relative_to(broker, base)
    return data


def _relative(base: Path, v: Any) -> Any:
    return str(base / v) if isinstance(v, str) and v and not Path(v).is_absolute() else v


def broker_paths_relative_to(broker: dict[str, Any], base: Path) -> None:
    """Make a [broker] table's file paths relative to the folder of the file it was read from (in place)."""
    for k in ("ca_file", "cert_file", "key_file", "password_file"):
        if k in broker:
            broker[k] = _relative(base, broker[k])


def env_keys(cls: type = MonitorConfig, path: str = "") -> dict[str, tuple[str, Any]]:
    """PLANTWATCH_SECTION_KEY -> (dotted key, type) for every scalar setting."""
    out: dict[str, tuple[str, Any]] = {}
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        key = f"{path}.{f.name}" if path else f.name
        if is_dataclass(hints[f.name]):
            out.update(env_keys(hints[f.name], key))
        elif typing.get_origin(hints[f.name]) is not dict and f.name != "maintenance":  # tables: file only
            out[ENV_PREFIX + key.replace(".", "_").upper()] = (key, hints[f.name])
    return out


def _from_text(name: str, key: str, tp: Any, text: str) -> Any:
    if typing.get_origin(tp) is list:  # PLANTWATCH_ASSETS=boiler,pump
        return [a.strip() for a in text.split(",") if a.strip()]
    base = next((a for a in typing.get_args(tp) if a is not type(None)), tp)
    try:
        if base is bool:
            if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("1", "true", "yes")
        return base(text)
    except ValueError:
        raise ConfigError(f"{key} (from {name}): must be {base.__name__}, got {text!r}") from None


def _put(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = data
    for p in parents:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{p}: must be a table")
        node = child
    node[last] = value


FLAG_KEYS = {"broker": "broker.url", "model": "models.default", "metrics_port": "metrics.port", "prefix": "prefix"}


@dataclass(frozen=True)
class Sources:
    """Where the settings come from; :meth:`load` re-reads them all (SIGHUP)."""

    path: str | None = None
    flags: Mapping[str, Any] = field(default_factory=dict)

    def load(self, environ: Mapping[str, str] | None = None) -> MonitorConfig:
        cfg, problems = self.check(environ)
        if problems:
            raise ConfigError(*problems)
        return cfg

    def check(self, environ: Mapping[str, str] | None = None) -> tuple[MonitorConfig, list[str]]:
        """The config and every problem in it, each naming its key and where it was set."""
        data = read_file(self.path) if self.path else {}
        flags = {
            key: ("--" + attr.replace("_", "-"), self.flags[attr])
            for attr, key in FLAG_KEYS.items()
            if self.flags.get(attr) is not None
        }
        problems: list[str] = []
        origin = overlay(data, os.environ if environ is None else environ, env_keys(), flags, problems)
        cfg, found = check(data)
        return cfg, problems + [blame_one(p, origin, self.path) for p in found]


def overlay(
    data: dict[str, Any],
    environ: Mapping[str, str],
    known: Mapping[str, tuple[str, Any]],
    flags: Mapping[str, tuple[str, Any]],
    problems: list[str] | None = None,
) -> dict[str, str]:
    """Put the ``known`` environment variables, then ``flags`` (dotted key -> (flag, value)), over ``data``
    in place; returns dotted key -> the variable or flag it came from, for :func:`blame`. A variable that
    does not parse is added to ``problems`` (raised at once without it)."""
    origin: dict[str, str] = {}
    for name, text in environ.items():
        if name in known:
            key, tp = known[name]
            try:
                _put(data, key, _from_text(name, key, tp, text))
            except ConfigError as exc:
                if problems is None:
                    raise
                problems.extend(exc.problems)
                continue
            origin[key] = name
    for key, (flag, value) in flags.items():
        _put(data, key, value)
        origin[key] = flag
    return origin


def blame(exc: ConfigError, origin: Mapping[str, str], path: str | None = None) -> ConfigError:
    """``exc`` with each problem naming where its key was set (see :func:`blame_one`)."""
    return ConfigError(*(blame_one(p, origin, path) for p in exc.problems))


def blame_one(problem: str, origin: Mapping[str, str], path: str | None = None) -> str:
    """A problem naming where its key was set: the variable or flag from :func:`overlay`, else the file."""
    key = _key(problem)
    if key in origin:
        return f"{key} (from {origin[key]}):{problem.split(':', 1)[1]}"
    return f"{path}: {problem}" if path else problem


def load(
    path: str | None = None, flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> MonitorConfig:
    """File, then environment, then flags (flags win), validated once."""
    return Sources(path, dict(flags or {})).load(environ)


def describe(cls: type = MonitorConfig, path: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, default, description) of every setting, for documentation."""
    out: list[tuple[str, Any, str]] = []
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        key = f"{path}.{f.name}" if path else f.name
        if is_dataclass(hints[f.name]):
            out.extend(describe(hints[f.name], key))
        else:
            default = f.default_factory() if callable(f.default_factory) else f.default
            out.append((key, default, f.metadata["description"]))
    return out
