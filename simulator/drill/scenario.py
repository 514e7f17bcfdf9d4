"""The drill scenario file: TOML, every key checked, errors naming the dotted key.

::

    name = "demo drill"
    prefix = "plant"                 # topic prefix of the monitor
    rate = 2.0                       # samples per second of each drill stream
    gan = "gans/demo"                # GAN folder for gan:<class> injections (--gan overrides)
    cooldown_s = 30                  # clean stream after the last injection
    [sparkplug]                      # optional: publish the drill copies as Sparkplug B, not JSON
    group_id = "plantwatch"          # one the monitor's [source] group_ids has
    edge_node_id = "plantwatch-drill" # the drill's own edge node; a copy is the device <asset>-drill,
                                     # the asset <edge_node_id>/<asset>-drill at the monitor
    [broker]
    url = "mqtt://127.0.0.1:1883"    # --broker overrides
    username = "plantwatch-drill"    # optional login, as the monitor's [broker] keys (--username overrides)
    password_file = "drill-password" # or password_env = "VAR"; never the password itself
    [monitor]
    metrics_url = "http://127.0.0.1:9108/metrics"      # --metrics-url overrides
    prometheus_url = "http://127.0.0.1:9090"           # optional; --prometheus-url overrides
    alert = "PlantwatchAssetInAlarm"                   # the alert rule whose firing is checked
    [[assets]]                       # a copy of this asset is published as <name>-drill
    name = "asset01"
    source = "demo"                  # "demo": the process of 'plantwatch demo'; "replay": a CSV
    [[injections]]
    asset = "asset01"
    kind = "bias"                    # a parametric kind or "gan:<class>"
    sensors = ["TI101"]              # optional: default a seeded choice (parametric), every GAN sensor (gan)
    magnitude = 5.0                  # optional: std units (parametric), a scale factor (gan)
    start_s = 40                     # seconds after the drill starts
    duration_s = 40
    [criteria]
    max_time_to_detect_s = 20
    max_false_alarms_per_hour = 60
    min_detection_rate = 1.0

Relative paths (``gan``, ``replay``, the broker's ``password_file`` and TLS
files) are relative to the scenario file. The [broker] table takes the
login keys of the monitor's (:mod:`monitor.broker_options`).
:func:`load` reads and :func:`parse` validates into frozen objects.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from monitor import broker_login, wire
from monitor.config import broker_paths_relative_to
from monitor.errors import ConfigError, InputError
from monitor.mqtt import parse_url

from ..faults import FaultSpec, parse_fault

SOURCES = ("demo", "replay")
DRILL_SUFFIX = "-drill"
DEFAULT_ALERT = "PlantwatchAssetInAlarm"


@dataclass(frozen=True)
class AssetSpec:
    """An asset whose copy the drill publishes under ``drill_name``, scored by the asset's model."""

    name: str
    source: str = "demo"
    replay: str | None = None
    drill_name: str = ""
    seed: int = 7  # the demo's process seed (simulator.demo.SEED)
    realization: int = 2  # another run of the same simulated plant than the live demo (0) and its history (1)


@dataclass(frozen=True)
class InjectionSpec:
    asset: str
    kind: str
    start_s: float
    duration_s: float
    sensors: tuple[str, ...] | None = None
    magnitude: float | None = None

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(frozen=True)
class Criteria:
    max_time_to_detect_s: float = 30.0
    max_false_alarms_per_hour: float = 60.0
    min_detection_rate: float = 1.0


@dataclass(frozen=True)
class Scenario:
    name: str = "drill"
    prefix: str = wire.DEFAULT_PREFIX
    rate: float = 2.0
    gan: str | None = None
    seed: int = 0
    cooldown_s: float = 30.0
    grace_s: float | None = None  # after an injection's end an alarm still counts (default: max TTD)
    scrape_interval_s: float = 1.0
    broker_url: str | None = None
    broker: Mapping[str, Any] = field(default_factory=dict)  # [broker] login keys but url, paths absolute
    metrics_url: str | None = None
    prometheus_url: str | None = None
    alert: str = DEFAULT_ALERT
    assets: tuple[AssetSpec, ...] = ()
    injections: tuple[InjectionSpec, ...] = ()
    criteria: Criteria = field(default_factory=Criteria)
    sparkplug: tuple[str, str] | None = None  # (group_id, edge_node_id) to publish as Sparkplug B

    @property
    def grace(self) -> float:
        return self.criteria.max_time_to_detect_s if self.grace_s is None else self.grace_s

    @property
    def duration_s(self) -> float:
        return max(i.end_s for i in self.injections) + self.cooldown_s

    def asset(self, name: str) -> AssetSpec:
        return next(a for a in self.assets if a.name == name)

    def fault_spec(self, inj: InjectionSpec) -> FaultSpec:
        """The injection in samples, on the drill copy of its asset."""
        start = round(inj.start_s * self.rate)
        duration = max(1, round(inj.duration_s * self.rate))
        return parse_fault(
            str(FaultSpec(inj.kind, start, duration, self.asset(inj.asset).drill_name, inj.sensors, inj.magnitude))
        )

    def broker_table(self) -> dict[str, Any]:
        """The [broker] table as :func:`monitor.broker_login.settings` takes it."""
        return {**self.broker, **({"url": self.broker_url} if self.broker_url is not None else {})}

    def with_overrides(self, **kw: Any) -> Scenario:
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


TOP_KEYS = {
    "name",
    "prefix",
    "rate",
    "gan",
    "seed",
    "cooldown_s",
    "grace_s",
    "scrape_interval_s",
    "broker",
    "monitor",
    "assets",
    "injections",
    "criteria",
    "sparkplug",
}


def load(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: no such scenario file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(doc, base=path.parent)


def _sparkplug(doc: Mapping[str, Any]) -> tuple[str, str] | None:
    if "sparkplug" not in doc:
        return None
    t = _table(doc, "sparkplug", {"group_id", "edge_node_id"})
    group = _get(t, "group_id", str, "plantwatch", wire.valid_name, key="sparkplug.group_id")
    node = _get(t, "edge_node_id", str, "plantwatch-drill", wire.valid_name, key="sparkplug.edge_node_id")
    return group, node


def parse(doc: Mapping[str, Any], base: Path = Path(".")) -> Scenario:
    """Validate a scenario mapping; ConfigError names the first bad key."""
    _known("", doc, TOP_KEYS)
    broker, monitor = (
        _table(doc, "broker", set(broker_login.KEYS)),
        _table(doc, "monitor", {"metrics_url", "prometheus_url", "alert"}),
    )
    broker_login.check_table(broker)
    login = {k: v for k, v in broker.items() if k != "url"}
    broker_paths_relative_to(login, base)
    s = Scenario(
        name=_get(doc, "name", str, "drill"),
        prefix=_get(doc, "prefix", str, wire.DEFAULT_PREFIX),
        rate=_get(doc, "rate", float, 2.0, _positive),
        gan=_path(base, _get(doc, "gan", str, None)),
        seed=_get(doc, "seed", int, 0, lambda v: v >= 0),
        cooldown_s=_get(doc, "cooldown_s", float, 30.0, _non_negative),
        grace_s=_get(doc, "grace_s", float, None, _non_negative),
        scrape_interval_s=_get(doc, "scrape_interval_s", float, 1.0, lambda v: 0.05 <= v <= 60),
        broker_url=_get(broker, "url", str, None, key="broker.url"),
        broker=login,
        metrics_url=_get(monitor, "metrics_url", str, None, key="monitor.metrics_url"),
        prometheus_url=_get(monitor, "prometheus_url", str, None, key="monitor.prometheus_url"),
        alert=_get(monitor, "alert", str, DEFAULT_ALERT, key="monitor.alert"),
        assets=tuple(_asset(a, i, base) for i, a in enumerate(_list(doc, "assets"))),
        injections=tuple(_injection(d, i) for i, d in enumerate(_list(doc, "injections"))),
        criteria=_criteria(
            _table(doc, "criteria", {"max_time_to_detect_s", "max_false_alarms_per_hour", "min_detection_rate"})
        ),
        sparkplug=_sparkplug(doc),
    )
    check(s)
    return s


def check(s: Scenario) -> None:
    """Rules across keys: names, assets, overlaps, fault specs."""
    try:
        wire.telemetry_filter(s.prefix)
    except ValueError as exc:
        raise ConfigError(f"prefix: {exc}") from None
    if s.broker_url is not None:
        parse_url(s.broker_url)
    if not s.assets:
        raise ConfigError("assets: at least one [[assets]] table is needed")
    if not s.injections:
        raise ConfigError("injections: at least one [[injections]] table is needed")
    names = [a.name for a in s.assets]
    drills = [a.drill_name for a in s.assets]
    if len(set(names)) != len(names) or len(set(drills)) != len(drills) or set(names) & set(drills):
        raise ConfigError(
            "assets: names and drill_names must be distinct (a drill copy never reuses a live asset's name)"
        )
    for i, inj in enumerate(s.injections):
        if inj.asset not in names:
            raise ConfigError(f"injections[{i}].asset: {inj.asset!r} is not one of the [[assets]] ({', '.join(names)})")
        try:
            s.fault_spec(inj)
        except InputError as exc:
            raise ConfigError(f"injections[{i}]: {exc}") from None
    for a in s.assets:
        mine = sorted((i for i in s.injections if i.asset == a.name), key=lambda i: i.start_s)
        for x, y in itertools.pairwise(mine):
            if y.start_s < x.end_s + s.grace:
                raise ConfigError(
                    f"injections: on {a.name}, the one at {y.start_s:g}s starts before the one at "
                    f"{x.start_s:g}s has ended plus the grace period ({s.grace:g}s); a detection "
                    f"could not be told apart"
                )


# ---------------------------------------------------------------- small parsing helpers


def _known(prefix: str, doc: Mapping[str, Any], keys: set[str]) -> None:
    for k in doc:
        if k not in keys:
            raise ConfigError(f"{prefix}{k}: unknown key (known: {', '.join(sorted(keys))})")


def _table(doc: Mapping[str, Any], name: str, keys: set[str]) -> Mapping[str, Any]:
    t = doc.get(name, {})
    if not isinstance(t, dict):
        raise ConfigError(f"{name}: must be a table ([{name}])")
    _known(name + ".", t, keys)
    return t


def _list(doc: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    v = doc.get(name, [])
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        raise ConfigError(f"{name}: must be an array of tables ([[{name}]])")
    return v


def _positive(v: float) -> bool:
    return math.isfinite(v) and v > 0


def _non_negative(v: float) -> bool:
    return math.isfinite(v) and v >= 0


def _get(
    doc: Mapping[str, Any],
    name: str,
    kind: type,
    default: Any,
    rule: Callable[[Any], bool] | None = None,
    key: str | None = None,
) -> Any:
    key = key or name
    if name not in doc:
        return default
    v = doc[name]
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, kind) or (isinstance(v, bool) and kind is not bool):
        raise ConfigError(
            f"{key}: must be {'a number' if kind is float else 'an integer' if kind is int else 'a string'}, got {v!r}"
        )
    if rule is not None and not rule(v):
        raise ConfigError(f"{key}: {v!r} is out of range")
    return v


def _path(base: Path, value: str | None) -> str | None:
    if value is None:
        return None
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else base / p)


def _asset(d: Mapping[str, Any], i: int, base: Path) -> AssetSpec:
    at = f"assets[{i}]."
    _known(at, d, {"name", "source", "replay", "drill_name", "seed", "realization"})
    name = _get(d, "name", str, None, wire.valid_name, key=at + "name")
    if name is None:
        raise ConfigError(f"{at}name: required")
    source = _get(d, "source", str, "demo", lambda v: v in SOURCES, key=at + "source")
    replay = _path(base, _get(d, "replay", str, None, key=at + "replay"))
    if (source == "replay") != (replay is not None):
        raise ConfigError(f'{at}replay: a CSV path is needed with source = "replay" and only then')
    if source == "demo" and not (name.startswith("asset") and name[5:].isdigit() and int(name[5:]) >= 1):
        raise ConfigError(f'{at}name: source "demo" copies a demo asset, asset01, asset02, ...; got {name!r}')
    drill = _get(d, "drill_name", str, name + DRILL_SUFFIX, wire.valid_name, key=at + "drill_name")
    return AssetSpec(
        name,
        source,
        replay,
        drill,
        _get(d, "seed", int, 7, key=at + "seed"),
        _get(d, "realization", int, 2, lambda v: v >= 1, key=at + "realization"),
    )


def _injection(d: Mapping[str, Any], i: int) -> InjectionSpec:
    at = f"injections[{i}]."
    _known(at, d, {"asset", "kind", "sensors", "magnitude", "start_s", "duration_s"})
    for required in ("asset", "kind", "start_s", "duration_s"):
        if required not in d:
            raise ConfigError(f"{at}{required}: required")
    sensors = d.get("sensors")
    if sensors is not None and not (isinstance(sensors, list) and sensors and all(isinstance(s, str) for s in sensors)):
        raise ConfigError(f"{at}sensors: must be a non-empty list of sensor names")
    return InjectionSpec(
        _get(d, "asset", str, None, key=at + "asset"),
        _get(d, "kind", str, None, key=at + "kind"),
        _get(d, "start_s", float, None, _non_negative, key=at + "start_s"),
        _get(d, "duration_s", float, None, _positive, key=at + "duration_s"),
        tuple(sensors) if sensors is not None else None,
        _get(d, "magnitude", float, None, math.isfinite, key=at + "magnitude"),
    )


def _criteria(d: Mapping[str, Any]) -> Criteria:
    c = Criteria()
    return Criteria(
        _get(d, "max_time_to_detect_s", float, c.max_time_to_detect_s, _positive, key="criteria.max_time_to_detect_s"),
        _get(
            d,
            "max_false_alarms_per_hour",
            float,
            c.max_false_alarms_per_hour,
            _non_negative,
            key="criteria.max_false_alarms_per_hour",
        ),
        _get(
            d,
            "min_detection_rate",
            float,
            c.min_detection_rate,
            lambda v: 0 <= v <= 1,
            key="criteria.min_detection_rate",
        ),
    )
