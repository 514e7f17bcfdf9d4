"""What one BIRTH defined, the values held since, and the row they make for a model's sensors.

Sparkplug data is report-by-exception: a DATA message carries only the metrics that changed, often by
alias alone. A :class:`MetricTable` is built from a BIRTH (names, aliases, datatypes, first values),
applies each DATA to the held values, and makes the row of the sensors it is bound to. A sensor is
*current* while its last report is within its staleness limit of the row's time; a row with a sensor
that is not current (never reported, or stale) is incomplete and is not scored.

Two ways to apply a DATA message, one result. The common message (aliases, one numeric value field
shared by every metric of the device, optional metric timestamps, nothing else) is read as columns
through :class:`.payload.DataView` with no Python work per field; anything else is read metric by
metric from the full :class:`.payload.Payload`, which is also the one definition of every rejection.
"""

from __future__ import annotations

import math
import operator
from array import array
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import numpy as np

from ..wire import Rejection
from .payload import BD_SEQ, CONTROL_PREFIXES, NUMERIC, datatype_name, numeric_value

NEVER = -math.inf
_NUMERIC_FIELDS = frozenset(field for field, _ in NUMERIC.values())
_DATETIME = 13  # DataType.DateTime: a number on the wire (long_value), not a process value


@dataclass(frozen=True)
class Staleness:
    """How old (seconds) a held value may be; 0 = never stale. ``per_metric``: fnmatch pattern -> seconds."""

    default: float = 0.0
    per_metric: tuple[tuple[str, float], ...] = ()

    @property
    def never(self) -> bool:
        """No held value ever goes stale: rows can be the held values alone."""
        return self.default <= 0 and all(seconds <= 0 for _, seconds in self.per_metric)

    def limit_ms(self, name: str) -> float:
        for pattern, seconds in self.per_metric:
            if fnmatchcase(name, pattern):
                return seconds * 1000.0 if seconds > 0 else math.inf
        return self.default * 1000.0 if self.default > 0 else math.inf


@dataclass(frozen=True)
class Defined:
    """A numeric metric of the BIRTH: its slot in the held values and how its value is read."""

    name: str
    slot: int
    datatype: int
    field: str
    convert: Callable[[Any], float] | None


def _getter(slots: list[int]) -> Callable[[Sequence[float]], tuple[float, ...]]:
    if not slots:
        return lambda held: ()
    if len(slots) == 1:
        only = slots[0]
        return lambda held: (held[only],)
    return operator.itemgetter(*slots)  # a tuple for two or more slots


class MetricTable:
    """The metrics of one BIRTH and their held values; :meth:`bind` picks the sensors a row is made of."""

    def __init__(self, metrics: Sequence[Any], ts_ms: float) -> None:
        """``metrics``: the BIRTH's Metric messages; ``ts_ms``: the BIRTH's payload timestamp."""
        self.defined: list[Defined] = []
        self.by_alias: dict[int, int] = {}
        self.by_name: dict[str, int] = {}
        self.other: dict[int | str, int] = {}  # non-numeric metric (alias and name) -> datatype: ignored
        self.ignored: list[str] = []
        held: list[float] = []
        stamps: list[float] = []
        for m in metrics:
            name = m.name
            if name == BD_SEQ or name.startswith(CONTROL_PREFIXES):
                continue
            spec = NUMERIC.get(m.datatype)
            if spec is None or not name or name in self.by_name:
                self.ignored.append(f"{name or '?'} ({datatype_name(m.datatype)})")
                self.other[name] = m.datatype
                if m.HasField("alias"):
                    self.other[m.alias] = m.datatype
                continue
            slot = len(self.defined)
            self.defined.append(Defined(name, slot, m.datatype, *spec))
            self.by_name[name] = slot
            if m.HasField("alias"):
                self.by_alias[m.alias] = slot
            has_value = not m.is_null and m.WhichOneof("value") == spec[0]
            held.append(numeric_value(m.datatype, spec[0], getattr(m, spec[0])) if has_value else math.nan)
            stamps.append((m.timestamp if m.HasField("timestamp") else ts_ms) if has_value else NEVER)
        self.sink = len(self.defined)  # the slot of a sensor the BIRTH did not define: never current
        # doubles side by side, not a list of float objects: applying a value writes 8 bytes, and the row is
        # one gather through a numpy view (a list's 52 boxed floats, scattered over the heap, were touched
        # one by one for every row)
        self.held = array("d", [*held, math.nan])
        self._held_view = np.frombuffer(self.held, dtype=np.float64)
        self.stamps = [*stamps, NEVER]
        fields = {d.field for d in self.defined}
        #: the value field the column fast path reads: every metric carries it, none needs conversion
        self.fast_field = fields.pop() if len(fields) == 1 and all(d.convert is None for d in self.defined) else None
        self.names = [d.name for d in self.defined]
        self.bind(self.names, Staleness())

    # ------------------------------------------------------------ binding to a model's sensors

    def bind(self, sensors: Sequence[str], staleness: Staleness, optional: Collection[str] = ()) -> list[str]:
        """Make rows of ``sensors`` (in this order); returns the numeric metrics the rows leave out.

        An ``optional`` sensor that is not current is NaN in the row (the monitor's ``[missing]`` policy
        holds or drops it) instead of making the row incomplete."""
        slots = [self.by_name.get(s, self.sink) for s in sensors]
        self.sensors = list(sensors)
        self._optional = frozenset(optional)
        self._values = _getter(slots)
        self._cols = np.array(slots, dtype=np.intp)
        limits = [staleness.limit_ms(s) for s in sensors]
        uniform = len(set(limits)) <= 1
        self._limit = limits[0] if uniform and limits else math.inf  # one limit for all: a min() suffices
        self._limits = None if uniform else limits
        self._sink_bound = self.sink in slots
        self._refresh()
        wanted = set(sensors)
        return [n for n in self.names if n not in wanted]

    def _refresh(self) -> None:
        """Whether rows need no report times at all: no staleness limit, and every metric has a value.

        Then a row is always complete and the column path writes values only; any null or limit turns it off.
        """
        self._timeless = (
            self._limit == math.inf
            and self._limits is None
            and not self._sink_bound
            and NEVER not in self.stamps[: self.sink]
        )

    @property
    def timeless(self) -> bool:
        """Rows are the held values alone (no staleness limit, every bound metric has a value): :meth:`values`."""
        return self._timeless

    def values(self) -> np.ndarray:
        """The bound sensors' held values, as a new array: the row, when the table is :attr:`timeless`."""
        return self._held_view[self._cols]

    def row(self, ts_ms: float) -> tuple[float, ...] | Rejection:
        """The bound sensors' held values at ``ts_ms``, or why they are not a complete row."""
        if self._timeless:
            return self._values(self.held)
        stamps = self._values(self.stamps)
        if not stamps:
            return Rejection("missing_sensor", "the BIRTH has no numeric metric")
        oldest = min(stamps)
        if (
            oldest == NEVER
            or ts_ms - oldest > self._limit
            or (self._limits is not None and self._stale_any(stamps, ts_ms))
        ):
            return self._incomplete(stamps, ts_ms)
        return self._values(self.held)

    def _stale_any(self, stamps: tuple[float, ...], ts_ms: float) -> bool:
        assert self._limits is not None
        return any(ts_ms - t > lim for t, lim in zip(stamps, self._limits))

    def _incomplete(self, stamps: tuple[float, ...], ts_ms: float) -> tuple[float, ...] | Rejection:
        limits = self._limits or [self._limit] * len(stamps)
        late = [t == NEVER or ts_ms - t > lim for t, lim in zip(stamps, limits)]
        optional = self._optional
        never = [s for s, t in zip(self.sensors, stamps) if t == NEVER and s not in optional]
        if never:
            return Rejection("missing_sensor", ",".join(never[:5]))
        stale = [s for s, is_late in zip(self.sensors, late) if is_late and s not in optional]
        if stale:
            return Rejection("stale_metric", ",".join(stale[:5]))
        return tuple(math.nan if is_late else v for v, is_late in zip(self._values(self.held), late))

    # ------------------------------------------------------------ applying DATA

    def apply_columns(
        self, field: str, aliases: list[int], values: list[float], stamps: list[int] | None, ts_ms: float
    ) -> bool:
        """The fast path: True if it applied a DATA message's columns, False (nothing written) if the
        message needs :meth:`apply_metrics`, which names what is wrong.

        The columns' entry ``i`` belongs to metric ``i`` (:func:`monitor.sparkplug.data_read.read_columns`
        checked it); ``field``, their value column, must be the one every metric of the BIRTH has.
        """
        if field != self.fast_field:
            return False
        try:
            slots = list(map(self.by_alias.__getitem__, aliases))
        except KeyError:
            return False  # an alias the BIRTH did not define: the slow path names it
        if (field == "double_value" or field == "float_value") and not math.isfinite(sum(values)):
            return False  # NaN or infinity somewhere: the slow path names it
        held, held_ts = self.held, self.stamps
        if self._timeless:  # report times are never read: values only
            for slot, v in zip(slots, values):
                held[slot] = v
        elif stamps is None:
            for slot, v in zip(slots, values):
                held[slot] = v
                held_ts[slot] = ts_ms
            self._refresh()
        else:
            for slot, v, t in zip(slots, values, stamps):
                held[slot] = v
                held_ts[slot] = t
            self._refresh()
        return True

    def apply_metrics(self, metrics: Sequence[Any], ts_ms: float) -> Rejection | None:
        """The slow path and the definition of validity: check every metric, then apply them all (or none)."""
        updates: list[tuple[int, float, float]] = []
        for m in metrics:
            d, problem = self._defined(m)
            if problem is not None:
                return problem
            if d is None:  # a non-numeric metric of the BIRTH: ignored
                continue
            stamp = m.timestamp if m.HasField("timestamp") else ts_ms
            if m.is_null:
                updates.append((d.slot, math.nan, NEVER))
                continue
            v = numeric_value(d.datatype, d.field, getattr(m, d.field))
            if not math.isfinite(v):
                return Rejection("non_finite", d.name)
            updates.append((d.slot, v, stamp))
        for slot, v, stamp in updates:
            self.held[slot], self.stamps[slot] = v, stamp
        self._refresh()
        return None

    def _defined(self, m: Any) -> tuple[Defined | None, Rejection | None]:
        key: int | str
        if m.HasField("alias"):
            key, slot = m.alias, self.by_alias.get(m.alias)
        else:
            key, slot = m.name, self.by_name.get(m.name)
        if slot is None:
            if key in self.other:
                return None, self._changed_other(m, key)
            return None, Rejection("unknown_alias", f"{'alias' if isinstance(key, int) else 'name'} {key!r}")
        d = self.defined[slot]
        kind = m.WhichOneof("value")
        if (m.HasField("datatype") and m.datatype != d.datatype) or (kind is not None and kind != d.field):
            got = datatype_name(m.datatype) if m.HasField("datatype") else kind
            return None, Rejection("datatype_changed", f"{d.name}: born {datatype_name(d.datatype)}, now {got}")
        if kind is None and not m.is_null:
            return None, Rejection("missing_field", f"{d.name}: no value and not is_null")
        return d, None

    def _changed_other(self, m: Any, key: int | str) -> Rejection | None:
        """A metric the BIRTH defined as not numeric (ignored) must still keep its datatype."""
        born = self.other[key]
        kind = m.WhichOneof("value")
        now_numeric = kind in _NUMERIC_FIELDS and not (born == _DATETIME and kind == "long_value")
        if (m.HasField("datatype") and m.datatype != born) or (now_numeric and born not in NUMERIC):
            got = datatype_name(m.datatype) if m.HasField("datatype") else kind
            return Rejection("datatype_changed", f"{key}: born {datatype_name(born)}, now {got}")
        return None
