"""Sparkplug B payloads: the protobuf schema (``sparkplug_b.proto``), numeric datatypes, encoders.

Decoding is protobuf's (the generated :mod:`.sparkplug_b_pb2`, never a hand-written parser); this module
says which datatypes are numbers to plantwatch and how a value of each is read, and builds the few
payloads plantwatch writes (the simulator's births, data and deaths; the monitor's rebirth request).

>>> raw = data_payload(1700000000000, 3, [(1, 20.5), (2, 7.0)])
>>> p = decode(raw)
>>> p.seq, [(m.alias, m.double_value) for m in p.metrics]
(3, [(1, 20.5), (2, 7.0)])
>>> numeric_value(DataType.Int16, "int_value", 65535), numeric_value(DataType.Boolean, "boolean_value", True)
(-1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from google.protobuf.message import DecodeError

from ..wire import Rejection
from . import sparkplug_b_pb2 as pb

DataType: Any = pb.DataType
Payload: Any = pb.Payload
DataView: Any = pb.DataView
MetricCount: Any = pb.MetricCount

BD_SEQ = "bdSeq"
NODE_REBIRTH = "Node Control/Rebirth"
#: metric name prefixes that are Sparkplug's own controls, never process values
CONTROL_PREFIXES = ("Node Control/", "Device Control/", "Properties/")


def _signed(bits: int) -> Callable[[int], float]:
    """Two's complement, read either way implementations write it: within ``bits`` or sign-extended."""
    wide = 64 if bits == 64 else 32

    def convert(v: int) -> float:
        if v >= 1 << (wide - 1):
            return float(v - (1 << wide))
        if bits < wide and (1 << (bits - 1)) <= v < (1 << bits):
            return float(v - (1 << bits))
        return float(v)

    return convert


#: numeric datatype -> (the Metric value field that carries it, conversion or None for as-is)
NUMERIC: dict[int, tuple[str, Callable[[Any], float] | None]] = {
    DataType.Int8: ("int_value", _signed(8)),
    DataType.Int16: ("int_value", _signed(16)),
    DataType.Int32: ("int_value", _signed(32)),
    DataType.Int64: ("long_value", _signed(64)),
    DataType.UInt8: ("int_value", None),
    DataType.UInt16: ("int_value", None),
    DataType.UInt32: ("int_value", None),
    DataType.UInt64: ("long_value", None),
    DataType.Float: ("float_value", None),
    DataType.Double: ("double_value", None),
    DataType.Boolean: ("boolean_value", None),
}


def datatype_name(code: int) -> str:
    try:
        return str(DataType.Name(code))
    except ValueError:
        return f"datatype {code}"


def numeric_value(datatype: int, field: str, raw: Any) -> float:
    """A numeric metric's value as a float (booleans 0/1); ``field`` must be ``NUMERIC[datatype][0]``."""
    convert = NUMERIC[datatype][1]
    return convert(raw) if convert is not None else float(raw)


def decode(raw: bytes) -> Any | Rejection:
    """The whole :class:`Payload`, or an ``undecodable`` rejection."""
    try:
        return Payload.FromString(raw)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        return Rejection("undecodable", str(exc)[:200])


# ---------------------------------------------------------------- encoders (simulator, rebirth requests)

Value = float | int | bool


def _set_value(m: Any, datatype: int, value: Value | None) -> None:
    if value is None:
        m.is_null = True
        return
    if datatype not in NUMERIC:  # String, Text: carried as text (plantwatch reads numbers only)
        m.string_value = str(value)
        return
    field = NUMERIC[datatype][0]
    if field in ("int_value", "long_value"):
        bits = 32 if field == "int_value" else 64
        setattr(m, field, int(value) & ((1 << bits) - 1))
    else:
        setattr(m, field, value)


def birth_payload(
    ts_ms: int,
    seq: int,
    metrics: Sequence[tuple[str, int, int, Value | None]],
    bd_seq: int | None = None,
    rebirth_metric: bool = False,
) -> bytes:
    """An NBIRTH or DBIRTH: every metric with name, alias, datatype and current value (None: is_null)."""
    p = Payload(timestamp=ts_ms, seq=seq)
    if bd_seq is not None:
        p.metrics.add(name=BD_SEQ, datatype=DataType.Int64, long_value=bd_seq, timestamp=ts_ms)
    if rebirth_metric:
        p.metrics.add(name=NODE_REBIRTH, datatype=DataType.Boolean, boolean_value=False, timestamp=ts_ms)
    for name, alias, datatype, value in metrics:
        m = p.metrics.add(name=name, alias=alias, datatype=datatype, timestamp=ts_ms)
        _set_value(m, datatype, value)
    return bytes(p.SerializeToString())


def data_payload(ts_ms: int, seq: int, values: Iterable[tuple[int, Value]], datatype: int = DataType.Double) -> bytes:
    """An NDATA or DDATA by alias only, as report-by-exception sends it: just the metrics that changed."""
    p = Payload(timestamp=ts_ms, seq=seq)
    for alias, value in values:
        _set_value(p.metrics.add(alias=alias), datatype, value)
    return bytes(p.SerializeToString())


def death_payload(ts_ms: int, bd_seq: int | None = None, seq: int | None = None) -> bytes:
    """An NDEATH (``bd_seq``, no seq) or a DDEATH (``seq``)."""
    p = Payload(timestamp=ts_ms)
    if seq is not None:
        p.seq = seq
    if bd_seq is not None:
        p.metrics.add(name=BD_SEQ, datatype=DataType.Int64, long_value=bd_seq)
    return bytes(p.SerializeToString())


def rebirth_request(ts_ms: int) -> bytes:
    """The NCMD a host sends to ask an edge node for new births (Node Control/Rebirth = true)."""
    p = Payload(timestamp=ts_ms)
    p.metrics.add(name=NODE_REBIRTH, datatype=DataType.Boolean, boolean_value=True, timestamp=ts_ms)
    return bytes(p.SerializeToString())


def asks_rebirth(raw: bytes) -> bool:
    """Whether an NCMD payload asks for a rebirth (for edge nodes: the simulator's)."""
    p = decode(raw)
    if isinstance(p, Rejection):
        return False
    return any(
        m.name == NODE_REBIRTH and m.WhichOneof("value") == "boolean_value" and m.boolean_value for m in p.metrics
    )
