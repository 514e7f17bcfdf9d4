"""The wire contract: every MQTT topic and payload plantwatch speaks, spelt once.

The simulator, the monitor, the recorder, the drills and the tests all go
through this module, so a change of topic or schema is a change in one place.

Topics (``prefix`` defaults to ``plant``)::

    <prefix>/<asset>/telemetry            {"ts": float, "seq": int, "values": {sensor: float}}
    <prefix>/<asset>/alarm                retained current alarm state (JSON)
    <prefix>/<asset>/drill                drill ground truth (JSON)
    <prefix>/_monitor/<instance>/status   retained "online"; Last Will "offline"
    <prefix>/_monitor/control/<user>      operator requests (suppress, unsuppress); <user> is the broker login,
                                          which the ACL lets write only its own topic
    <prefix>/_monitor/<instance>/reply/<user>   each monitor's answer to a request

Decoding never raises: it returns the decoded value or a :class:`Rejection`
whose ``reason`` is one of :data:`REJECTION_REASONS`, a closed list the
monitor exports as a metric label from start-up.

>>> payload = encode_telemetry(1700000000.0, 7, {"T1": 20.5})
>>> decode_telemetry(payload)
Telemetry(ts=1700000000.0, seq=7, values={'T1': 20.5})
>>> decode_telemetry(b"{").reason
'not_json'
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

_NUMBERS = frozenset((float, int))

SCHEMA_VERSION = 1
DEFAULT_PREFIX = "plant"
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_NAME_LENGTH = 128
STATUS_ONLINE = b"online"
STATUS_OFFLINE = b"offline"
MONITOR_LEVEL = "_monitor"
MAX_SEQ = 2**63 - 1  # seq is an integer 0..MAX_SEQ (int64); beyond it bad_seq, never a float
MAX_ASSET_LEVELS = 3  # JSON assets are one level; Sparkplug asset names may have up to three

#: Every reason a message can be rejected for; closed so metrics can pre-create them.
REJECTION_REASONS: tuple[str, ...] = (
    "bad_topic",  # topic is not <prefix>/<asset>/telemetry with a valid asset name
    "too_large",  # payload longer than MAX_PAYLOAD_BYTES
    "not_json",  # payload is not UTF-8 JSON
    "not_object",  # JSON, but not an object (or "values" is not an object)
    "missing_field",  # one of ts, seq, values absent
    "bad_ts",  # ts not a finite, non-negative number
    "bad_seq",  # seq not an integer 0..2**63-1
    "non_numeric",  # a sensor value is not a number (strings, bools, null ...)
    "non_finite",  # a sensor value is NaN or infinite (or overflows float)
    "out_of_range",  # a sensor value outside its plausible bounds ([sensors.NAME] min/max, else from training)
    "unknown_sensor",  # a sensor the asset's model was not trained on
    "missing_sensor",  # a sensor the asset's model needs is absent
    "unknown_asset",  # no model is configured for this asset
    "too_many_assets",  # the max_assets cap is reached
    "duplicate",  # seq already scored for this asset (redelivery); Sparkplug: the node's previous seq again
    "ts_out_of_range",  # ts further ahead of the monitor's clock than [time] skew (or older than [time] max_age)
    "seq_jump",  # seq more than [sequence] max_jump ahead of the asset's newest, not (yet) confirmed by a run
    "out_of_order",  # seq more than [sequence] reorder_window behind, not a restart; Sparkplug: behind the node's next
    "retained_stale",  # retained telemetry (stored at the broker) older than [time] skew, or not telemetry at all
)
#: Sparkplug B's own ([source] format = "sparkplug", monitor/sparkplug/); bad_topic, bad_ts, bad_seq, non_finite,
#: missing_field, unknown_sensor (once per BIRTH: those metrics are ignored), missing_sensor, unknown_asset,
#: too_many_assets, duplicate, out_of_order, ts_out_of_range and out_of_range apply to it too
SPARKPLUG_REASONS: tuple[str, ...] = (
    "undecodable",  # payload is not a Sparkplug B protobuf
    "data_before_birth",  # DATA (or DBIRTH, DDEATH) with no current BIRTH of its node or device
    "unknown_alias",  # DATA names an alias or metric the last BIRTH did not define
    "datatype_changed",  # a metric's datatype differs from its BIRTH's, without a rebirth
    "stale_metric",  # a sensor's last report is older than its staleness limit: the row is incomplete
    "stale_death",  # NDEATH whose bdSeq is not the current session's (an old will)
)
REJECTION_REASONS += SPARKPLUG_REASONS


class Rejection(NamedTuple):
    """Why a message was not scored; ``detail`` is for the (rate-limited) log only."""

    reason: str
    detail: str = ""


class Telemetry(NamedTuple):
    """One decoded telemetry sample of one asset."""

    ts: float
    seq: int
    values: dict[str, float]


# ---------------------------------------------------------------- topics


def valid_name(name: str) -> bool:
    """Whether ``name`` can be one MQTT topic level (asset, prefix part, instance)."""
    return 0 < len(name) <= MAX_NAME_LENGTH and not any(c in name for c in "/+#\x00") and name == name.strip()


def _check_name(kind: str, name: str) -> None:
    if not valid_name(name):
        raise ValueError(f"invalid {kind} name {name!r}: 1-{MAX_NAME_LENGTH} characters, no '/', '+', '#' or NUL")


def _check_prefix(prefix: str) -> None:
    if not prefix or any(not valid_name(part) for part in prefix.split("/")):
        raise ValueError(f"invalid topic prefix {prefix!r}: non-empty levels without '+', '#' or NUL")


def valid_asset(name: str) -> bool:
    """Whether ``name`` can name an asset: one topic level, or a few for Sparkplug ("edge_node/device")."""
    parts = name.split("/")
    return len(parts) <= MAX_ASSET_LEVELS and all(valid_name(p) for p in parts) and MONITOR_LEVEL not in parts


def _asset_topic(prefix: str, asset: str, kind: str) -> str:
    _check_prefix(prefix)
    if not valid_asset(asset):
        raise ValueError(f"invalid asset name {asset!r}: 1-{MAX_ASSET_LEVELS} topic levels without '+', '#' or NUL")
    return f"{prefix}/{asset}/{kind}"


def telemetry_topic(prefix: str, asset: str) -> str:
    _check_name("asset", asset)
    return _asset_topic(prefix, asset, "telemetry")


def alarm_topic(prefix: str, asset: str) -> str:
    """``<prefix>/<asset>/alarm``; a Sparkplug asset ``node/device`` makes it ``<prefix>/node/device/alarm``."""
    return _asset_topic(prefix, asset, "alarm")


def drill_topic(prefix: str, asset: str) -> str:
    return _asset_topic(prefix, asset, "drill")


def status_topic(prefix: str, instance: str) -> str:
    _check_prefix(prefix)
    _check_name("instance", instance)
    return f"{prefix}/{MONITOR_LEVEL}/{instance}/status"


def telemetry_filter(prefix: str, asset: str = "+") -> str:
    """Subscription filter for telemetry; ``asset`` may be ``+`` or a single asset."""
    _check_prefix(prefix)
    if asset != "+":
        _check_name("asset", asset)
    return f"{prefix}/{asset}/telemetry"


def alarm_filter(prefix: str) -> str:
    """Alarms of one-level (JSON) asset names; Sparkplug names (``node/device``) add levels: ``<prefix>/+/+/alarm``."""
    _check_prefix(prefix)
    return f"{prefix}/+/alarm"


def drill_filter(prefix: str) -> str:
    _check_prefix(prefix)
    return f"{prefix}/+/drill"


def asset_of(topic: str, prefix: str, kind: str = "telemetry") -> str | Rejection:
    """The asset named by a ``<prefix>/<asset>/<kind>`` topic, or a bad_topic rejection."""
    head = prefix + "/"
    tail = "/" + kind
    if not (topic.startswith(head) and topic.endswith(tail)):
        return Rejection("bad_topic", topic[:200])
    asset = topic[len(head) : len(topic) - len(tail)]
    if not valid_name(asset) or asset == MONITOR_LEVEL:
        return Rejection("bad_topic", topic[:200])
    return asset


# ---------------------------------------------------------------- telemetry


def encode_telemetry(ts: float, seq: int, values: Mapping[str, float]) -> bytes:
    """Serialise one sample; values must be finite (NaN is not JSON)."""
    return orjson.dumps({"ts": float(ts), "seq": int(seq), "values": {k: float(v) for k, v in values.items()}})


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def decode_object(payload: bytes | bytearray | memoryview | str) -> dict[str, Any] | Rejection:
    """Parse a JSON object payload with the size limit; shared by every decoder."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejection("too_large", f"{len(payload)} bytes")
    try:
        doc = orjson.loads(payload)
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        return Rejection("not_json", str(exc)[:200])
    if not isinstance(doc, dict):
        return Rejection("not_object", type(doc).__name__)
    return doc


def _header(doc: dict[str, Any]) -> tuple[float, int, dict[str, Any]] | Rejection:
    for key in ("ts", "seq", "values"):
        if key not in doc:
            return Rejection("missing_field", key)
    ts, seq, values = doc["ts"], doc["seq"], doc["values"]
    if not _is_number(ts) or not math.isfinite(ts) or ts < 0:
        return Rejection("bad_ts", repr(ts)[:100])
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
        return Rejection("bad_seq", repr(seq)[:100])
    if not isinstance(values, dict):
        return Rejection("not_object", "values is " + type(values).__name__)
    return float(ts), seq, values


def _value(name: str, v: Any) -> float | Rejection:
    if not _is_number(v):
        return Rejection("non_numeric", f"{name}={v!r}"[:200])
    try:
        f = float(v)
    except OverflowError:
        return Rejection("non_finite", f"{name} overflows")
    if not math.isfinite(f):
        return Rejection("non_finite", name)
    return f


def _decode_header(payload: bytes | bytearray | memoryview | str) -> tuple[float, int, dict[str, Any]] | Rejection:
    """A telemetry payload's ts, seq and raw values, before the values are checked."""
    doc = decode_object(payload)
    if isinstance(doc, Rejection):
        return doc
    return _header(doc)


def decode_telemetry(payload: bytes | bytearray | memoryview | str) -> Telemetry | Rejection:
    """Decode a telemetry payload without knowing the model's sensors."""
    head = _decode_header(payload)
    if isinstance(head, Rejection):
        return head
    ts, seq, raw = head
    values: dict[str, float] = {}
    for name, v in raw.items():
        f = _value(name, v)
        if isinstance(f, Rejection):
            return f
        values[name] = f
    return Telemetry(ts, seq, values)


def decode_row(
    payload: bytes | bytearray | memoryview | str,
    sensor_index: Mapping[str, int],
    out: Any,
    optional: frozenset[str] = frozenset(),
) -> tuple[float, int] | Rejection:
    """Decode straight into ``out`` (a float row of len(sensor_index)) for the hot path.

    Every sensor of the model must be present and no other, except that the
    ``optional`` ones may be absent: their place in ``out`` is then NaN (the
    monitor's ``[missing]`` policy fills or drops the row). ``out`` may be
    partly written when a rejection is returned.
    """
    head = _decode_header(payload)
    if isinstance(head, Rejection):
        return head
    ts, seq, raw = head
    for name, v in raw.items():
        i = sensor_index.get(name)
        if i is None:
            return Rejection("unknown_sensor", str(name)[:200])
        f = _value(name, v)
        if isinstance(f, Rejection):
            return f
        out[i] = f
    if len(raw) != len(sensor_index):
        missing = [s for s in sensor_index if s not in raw]
        required = [s for s in missing if s not in optional]
        if required:
            return Rejection("missing_sensor", ",".join(required[:5]))
        for name in missing:
            out[sensor_index[name]] = math.nan
    return ts, seq


# ---------------------------------------------------------------- alarms


class RowDecoder:
    """:func:`decode_row` with a fast path for the common well-formed payload.

    The fast path accepts only what ``decode_row`` accepts (sensors in the
    model's order, plain JSON numbers) and writes the same row; anything else,
    valid or not, goes to ``decode_row``, which stays the one definition of
    validity and of the rejection reason.
    """

    def __init__(self, sensors: Sequence[str], optional: Iterable[str] = ()) -> None:
        self.sensors = list(sensors)
        self.index = sensor_index(sensors)
        self.optional = frozenset(optional)  # may be absent: NaN in the row (see decode_row)

    def decode(self, payload: bytes, out: Any) -> tuple[float, int] | Rejection:
        if len(payload) <= MAX_PAYLOAD_BYTES:
            try:
                doc = orjson.loads(payload)
            except orjson.JSONDecodeError:
                doc = None
            if type(doc) is dict:
                values, ts, seq = doc.get("values"), doc.get("ts"), doc.get("seq")
                if (
                    type(values) is dict
                    and type(seq) is int
                    and 0 <= seq <= MAX_SEQ
                    and (type(ts) is float or type(ts) is int)
                    and ts >= 0
                    and list(values) == self.sensors
                ):
                    row = list(values.values())
                    if _NUMBERS.issuperset(map(type, row)):
                        out[:] = row
                        return float(ts), seq
        return decode_row(payload, self.index, out, self.optional)


@dataclass(frozen=True)
class AlarmEvent:
    """Retained current alarm state of one asset; also the raise/clear event."""

    asset: str
    state: str  # "raised" or "cleared"
    ts: float  # time of this event (payload time of the sample)
    started: float  # when the episode started
    score: float
    threshold: float
    peak: float
    top_sensors: tuple[str, ...] = ()
    ended: float | None = None
    schema: int = SCHEMA_VERSION
    reason: str = ""  # why, for "offline"/"online" (node_death, device_death, birth) and resets
    until: float | None = None  # "suppressed": when the window ends; "rearming": when the warm-up began
    episode: str = ""  # raised/cleared: the episode's stable id (episode_id), for 'plantwatch feedback'

    def encode(self) -> bytes:
        d = self.__dict__.copy()
        d["top_sensors"] = list(self.top_sensors)
        for key, empty in (("reason", ""), ("until", None), ("episode", "")):
            if d[key] == empty:
                del d[key]
        return orjson.dumps(d)


def episode_id(asset: str, start: float) -> str:
    """An alarm episode's stable id: the same in its raise and clear events, logs and metrics, and after a
    restart (it depends only on the asset and the episode's first sample time).

    >>> episode_id("boiler", 1700000000.0)
    'e-ade9e2bf559b'
    """
    return "e-" + hashlib.sha256(f"{asset}\x00{start!r}".encode()).hexdigest()[:12]


#: "offline": a Sparkplug death, no scoring until the next birth; "online": that birth came;
#: "suppressed": a maintenance window (scored, no alarms) until ``until``; "rearming": the warm-up after it
ALARM_STATES = ("raised", "cleared", "offline", "online", "suppressed", "rearming")


def decode_alarm(payload: bytes | str) -> AlarmEvent | Rejection:
    doc = decode_object(payload)
    if isinstance(doc, Rejection):
        return doc
    try:
        if doc["state"] not in ALARM_STATES:
            return Rejection("not_object", f"state {doc['state']!r}")
        return AlarmEvent(
            asset=str(doc["asset"]),
            state=doc["state"],
            ts=float(doc["ts"]),
            started=float(doc["started"]),
            score=float(doc["score"]),
            threshold=float(doc["threshold"]),
            peak=float(doc["peak"]),
            top_sensors=tuple(str(s) for s in doc.get("top_sensors", ())),
            ended=None if doc.get("ended") is None else float(doc["ended"]),
            schema=int(doc.get("schema", SCHEMA_VERSION)),
            reason=str(doc.get("reason", "")),
            until=None if doc.get("until") is None else float(doc["until"]),
            episode=str(doc.get("episode", "")),
        )
    except KeyError as exc:
        return Rejection("missing_field", str(exc))
    except (TypeError, ValueError) as exc:
        return Rejection("non_numeric", str(exc)[:200])


# ---------------------------------------------------------------- control (operators -> monitors)

CONTROL_LEVEL = "control"
REPLY_LEVEL = "reply"
#: what an operator may ask of the monitors
CONTROL_ACTIONS = ("suppress", "unsuppress", "feedback", "list", "accept")
#: what an operator may say of an alarm episode
FEEDBACK_LABELS = ("false_alarm", "confirmed")
#: every reason a control request is refused for; closed so metrics can pre-create them
CONTROL_REFUSALS = (
    "malformed",  # not a JSON object of the request's fields and types
    "bad_action",  # an action not in CONTROL_ACTIONS
    "bad_pattern",  # an empty or over-long asset pattern
    "unknown_asset",  # the pattern matches no asset this monitor knows
    "expired",  # the window ends before now
    "overlapping",  # an asset it names is already in an ad hoc window
    "no_such_suppression",  # unsuppress of a pattern no ad hoc window has
    "unknown_episode",  # feedback for an episode this monitor never raised on that asset
    "bad_label",  # feedback with a label not in FEEDBACK_LABELS
)
MAX_REASON_LENGTH = 500


def control_topic(prefix: str, user: str) -> str:
    """``<prefix>/_monitor/control/<user>``: the broker's ACL lets only ``user`` write it, so it names who asks."""
    _check_prefix(prefix)
    _check_name("user", user)
    return f"{prefix}/{MONITOR_LEVEL}/{CONTROL_LEVEL}/{user}"


def control_filter(prefix: str) -> str:
    _check_prefix(prefix)
    return f"{prefix}/{MONITOR_LEVEL}/{CONTROL_LEVEL}/+"


def control_user(topic: str, prefix: str) -> str | None:
    """The user a control topic names, or None if ``topic`` is not one."""
    head = f"{prefix}/{MONITOR_LEVEL}/{CONTROL_LEVEL}/"
    if not topic.startswith(head):
        return None
    user = topic[len(head) :]
    return user if valid_name(user) else None


def reply_topic(prefix: str, instance: str, user: str) -> str:
    _check_prefix(prefix)
    _check_name("instance", instance)
    _check_name("user", user)
    return f"{prefix}/{MONITOR_LEVEL}/{instance}/{REPLY_LEVEL}/{user}"


def reply_filter(prefix: str, user: str) -> str:
    """Every monitor instance's replies to ``user``."""
    _check_prefix(prefix)
    _check_name("user", user)
    return f"{prefix}/{MONITOR_LEVEL}/+/{REPLY_LEVEL}/{user}"


@dataclass(frozen=True)
class ControlRequest:
    """An operator's request; ``until`` (payload time, seconds) for suppress, ``by`` the person behind the login."""

    id: str
    action: str
    asset: str  # fnmatch pattern of asset names
    reason: str = ""
    by: str = ""
    until: float | None = None
    episode: str = ""  # feedback: the episode's id (AlarmEvent.episode)
    label: str = ""  # feedback: one of FEEDBACK_LABELS
    sent: float | None = None  # the sender's clock: a request that waited at the broker too long is refused
    schema: int = SCHEMA_VERSION

    def encode(self) -> bytes:
        return orjson.dumps(self.__dict__)


def decode_control(payload: bytes | str) -> ControlRequest | Rejection:
    """A control request, or a Rejection whose reason is one of :data:`CONTROL_REFUSALS`.

    >>> decode_control(b'{"id": "1", "action": "suppress", "asset": "b*", "until": 5, "reason": "r"}').until
    5.0
    >>> decode_control(b'{"id": "1", "action": "reboot", "asset": "b*"}')
    Rejection(reason='bad_action', detail="action 'reboot' (known: suppress, unsuppress, feedback, list, accept)")
    """
    doc = decode_object(payload)
    if isinstance(doc, Rejection):
        return Rejection("malformed", f"{doc.reason}: {doc.detail}"[:200])
    text = {k: doc.get(k, "") for k in ("id", "action", "asset", "reason", "by", "episode", "label")}
    bad = [k for k, v in text.items() if not isinstance(v, str)]
    until, sent = doc.get("until"), doc.get("sent")
    for key, v in (("until", until), ("sent", sent)):
        if not bad and v is not None and (not _is_number(v) or not math.isfinite(v)):
            bad = [key]
    if bad:
        return Rejection("malformed", f"field {bad[0]} has the wrong type")
    if not text["id"] or len(text["id"]) > MAX_NAME_LENGTH:
        return Rejection("malformed", "id must be 1-128 characters")
    if text["action"] not in CONTROL_ACTIONS:
        return Rejection("bad_action", f"action {text['action']!r} (known: {', '.join(CONTROL_ACTIONS)})"[:200])
    if not text["asset"] or len(text["asset"]) > MAX_NAME_LENGTH or "\x00" in text["asset"]:
        return Rejection("bad_pattern", f"asset pattern {text['asset']!r}: 1-{MAX_NAME_LENGTH} characters"[:200])
    if text["action"] == "suppress" and (until is None or not text["reason"].strip()):
        return Rejection("malformed", "suppress needs until and a reason")
    if text["action"] == "accept" and not text["reason"].strip():
        return Rejection("malformed", "accept needs a reason (why this operating point is normal)")
    if text["action"] == "feedback":
        if text["label"] not in FEEDBACK_LABELS:
            return Rejection("bad_label", f"label {text['label']!r} (known: {', '.join(FEEDBACK_LABELS)})"[:200])
        if not text["episode"] or len(text["episode"]) > MAX_NAME_LENGTH:
            return Rejection("malformed", "feedback needs the episode id")
    if len(text["reason"]) > MAX_REASON_LENGTH or len(text["by"]) > MAX_NAME_LENGTH:
        return Rejection("malformed", f"reason over {MAX_REASON_LENGTH} or by over {MAX_NAME_LENGTH} characters")
    return ControlRequest(
        text["id"],
        text["action"],
        text["asset"],
        text["reason"],
        text["by"],
        None if until is None else float(until),
        text["episode"],
        text["label"],
        None if sent is None else float(sent),
    )


@dataclass(frozen=True)
class ControlReply:
    """One monitor's answer: ``ok``, or the refusal ``reason`` (CONTROL_REFUSALS); ``message`` is one line."""

    id: str
    instance: str
    ok: bool
    message: str
    reason: str = ""
    assets: tuple[str, ...] = ()  # the assets the request applied to
    schema: int = SCHEMA_VERSION

    def encode(self) -> bytes:
        d = self.__dict__.copy()
        d["assets"] = list(self.assets)
        return orjson.dumps(d)


def decode_reply(payload: bytes | str) -> ControlReply | Rejection:
    doc = decode_object(payload)
    if isinstance(doc, Rejection):
        return doc
    try:
        return ControlReply(
            id=str(doc["id"]),
            instance=str(doc["instance"]),
            ok=bool(doc["ok"]),
            message=str(doc["message"]),
            reason=str(doc.get("reason", "")),
            assets=tuple(str(a) for a in doc.get("assets", ())),
        )
    except KeyError as exc:
        return Rejection("missing_field", str(exc))
    except TypeError as exc:
        return Rejection("not_object", str(exc)[:200])


# ---------------------------------------------------------------- drills


@dataclass(frozen=True)
class DrillTruth:
    """Ground truth of one injection, published when it starts (and again at its end).

    ``start``/``end`` are the payload timestamps (``ts``) of the first and the
    last affected sample, so scores can be matched to the truth exactly.
    """

    asset: str
    injection_id: str
    kind: str  # e.g. "bias", "drift", "stuck", "gan:4"
    sensors: tuple[str, ...]
    start: float
    end: float
    magnitude: float
    phase: str = "start"  # "start" when announced, "end" when finished
    params: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    def encode(self) -> bytes:
        d = self.__dict__.copy()
        d["sensors"] = list(self.sensors)
        return orjson.dumps(d)


def decode_drill(payload: bytes | str) -> DrillTruth | Rejection:
    doc = decode_object(payload)
    if isinstance(doc, Rejection):
        return doc
    try:
        return DrillTruth(
            asset=str(doc["asset"]),
            injection_id=str(doc["injection_id"]),
            kind=str(doc["kind"]),
            sensors=tuple(str(s) for s in doc["sensors"]),
            start=float(doc["start"]),
            end=float(doc["end"]),
            magnitude=float(doc["magnitude"]),
            phase=str(doc.get("phase", "start")),
            params=dict(doc.get("params", {})),
            schema=int(doc.get("schema", SCHEMA_VERSION)),
        )
    except KeyError as exc:
        return Rejection("missing_field", str(exc))
    except (TypeError, ValueError) as exc:
        return Rejection("non_numeric", str(exc)[:200])


def sensor_index(sensors: Iterable[str]) -> dict[str, int]:
    """Name -> column position, the lookup :func:`decode_row` needs."""
    return {name: i for i, name in enumerate(sensors)}


def assert_sensor_names(sensors: Sequence[str]) -> None:
    """Raise ValueError if sensor names cannot travel in a telemetry payload."""
    seen: set[str] = set()
    for s in sensors:
        if not s or len(s) > 256:
            raise ValueError(f"invalid sensor name {s!r}")
        if s in seen:
            raise ValueError(f"duplicate sensor name {s!r}")
        seen.add(s)
