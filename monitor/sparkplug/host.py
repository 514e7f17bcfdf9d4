"""A Sparkplug B host application's view of the plant: edge nodes, devices, births, deaths and ``seq``.

:meth:`Host.handle` takes one message (topic, payload) in arrival order and says what it means for one
asset: a row of sensor values to score, lifecycle changes (online after a BIRTH, offline after a DEATH
matched by ``bdSeq``), sequence gaps, a rebirth request to send, or the rejection reason. It knows
nothing of models or MQTT clients: ``bind`` says which sensors an asset's rows need (None: the asset is
not wanted), so the monitor and ``plantwatch record`` share it.

Rules (Sparkplug 3.0, chapters 5-6):

* ``seq`` runs 0..255 per edge node over NBIRTH, NDATA, DBIRTH, DDATA and DDEATH and wraps. Ahead of
  the expected value by 1-127: the difference is counted as a gap and the message is used. The previous
  value again: ``duplicate``. Further behind: ``out_of_order``. Both are rejected and change nothing.
* NBIRTH starts a node session (its ``bdSeq``, its metrics); its devices must be born again.
  NDEATH counts only if its ``bdSeq`` is the current session's (else ``stale_death``: an old will).
* DATA for a node or device with no current BIRTH is ``data_before_birth``; the host then asks for a
  rebirth when allowed (``rebirth_interval`` not None), at most once per interval per edge node.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
from google.protobuf.message import DecodeError

from .. import logs
from ..wire import Rejection
from . import topics
from .data_read import DataRead, read_columns, read_data
from .payload import BD_SEQ, DataView, decode, rebirth_request
from .table import MetricTable, Staleness

log = logs.get("sparkplug")

#: why an asset went offline or online, as the alarm topic says it
NODE_DEATH, DEVICE_DEATH, BIRTH = "node_death", "device_death", "birth"
MAX_CATCHUP = 100  # rows made at most for the period boundaries one message shows have passed
ALL_SENSORS: tuple[str, ...] = ("*",)  # bind() answer: every numeric metric of the BIRTH (recording)


@dataclass(frozen=True)
class Naming:
    """How an asset is named from its Sparkplug identity (str.format fields group_id, edge_node_id, device_id)."""

    device: str = "{edge_node_id}/{device_id}"
    node: str = "{edge_node_id}"

    def device_asset(self, group_id: str, edge_node_id: str, device_id: str) -> str:
        return self.device.format(group_id=group_id, edge_node_id=edge_node_id, device_id=device_id)

    def node_asset(self, group_id: str, edge_node_id: str) -> str:
        return self.node.format(group_id=group_id, edge_node_id=edge_node_id)


@dataclass
class Stream:
    """One asset (a device, or an edge node's own metrics) and its current BIRTH."""

    asset: str
    table: MetricTable | None = None
    wanted: bool = False
    online: bool = False
    rows: int = 0  # rows handed out: the asset's sequence for the worker, consecutive across births
    next_due: float = 0.0  # with a sample period: the next period boundary (ms) a row is due at


@dataclass
class Node:
    stream: Stream
    devices: dict[str, Stream] = field(default_factory=dict)
    next_seq: int | None = None  # None: no current session
    bd_seq: int | None = None
    asked_rebirth: float = -1e18


@dataclass(slots=True)
class Outcome:
    """What one message means; ``asset`` is None when it names none (a bad topic, a node with no asset)."""

    asset: str | None = None
    row: tuple[float, ...] | None = None
    ts: float = 0.0  # seconds, payload time
    seq: int = 0
    rejection: Rejection | None = None
    gaps: int = 0
    events: tuple[tuple[str, bool, str], ...] = ()  # (asset, online, reason)
    restart: bool = False  # a BIRTH: the asset's stream starts again
    command: tuple[str, bytes] | None = None  # a rebirth request to publish (topic, payload)
    rows: tuple[tuple[float, int, tuple[float, ...]], ...] = ()  # with a sample period: (ts s, seq, row) each
    ignored: tuple[str, ...] = ()  # metrics of a BIRTH that rows do not use


class Host:
    """Sparkplug state of every edge node seen; :meth:`handle` one message at a time, in arrival order."""

    def __init__(
        self,
        bind: Callable[[str], Sequence[str] | None],
        naming: Naming | None = None,
        staleness: Staleness | None = None,
        rebirth_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sample_period: float = 0.0,
        optional: Callable[[str], Collection[str]] = lambda asset: (),
    ) -> None:
        """``sample_period`` (s): 0, a row per BIRTH and DATA message; else a row per period boundary, made
        of the values held at it (in ``Outcome.rows``, emitted when a later message shows time has passed).
        ``optional``: the sensors of an asset that may be missing from a row (NaN there, for the monitor's
        ``[missing]`` policy) rather than make it incomplete."""
        self.bind, self.naming, self.optional = bind, naming or Naming(), optional
        self.period_ms = sample_period * 1000.0
        self.staleness = staleness or Staleness()
        self.rebirth_interval, self.clock = rebirth_interval, clock
        self.nodes: dict[tuple[str, str], Node] = {}
        self.topics: dict[str, tuple[topics.SparkplugTopic, Node, Stream]] = {}

    def handle(self, topic: str, payload: bytes) -> Outcome:
        known = self.topics.get(topic)
        if known is None:
            parsed = topics.parse(topic)
            if isinstance(parsed, Rejection):
                return Outcome(rejection=parsed)
            known = self._place(topic, parsed)
        t, node, stream = known
        kind = t.kind
        if kind == "DDATA" or kind == "NDATA":
            return self._data(t, node, stream, payload)
        if kind == "DBIRTH" or kind == "NBIRTH":
            return self._birth(t, node, stream, payload)
        if kind == "DDEATH":
            return self._device_death(t, node, stream, payload)
        if kind == "NDEATH":
            return self._node_death(t, node, payload)
        return Outcome(stream.asset, rejection=Rejection("bad_topic", f"{kind} is written by hosts, not read"))

    def take(self, topic: str, payload: bytes) -> tuple[str, np.ndarray, float, int] | None:
        """The common DATA message, applied with the fewest steps: (asset, row, ts in s, the row's seq).

        Common: DATA on a known topic of a device whose BIRTH is current and wanted, with exactly the
        expected ``seq``, a payload timestamp, columns the fast path reads (:mod:`.data_read`), and rows that
        are the held values alone (no sample period, no staleness limit in play, no rejection possible). It
        means what :meth:`handle` would make of it. None, with nothing changed: anything else, for :meth:`handle`.
        """
        fast = self._fast(topic)
        if fast is None:
            return None
        read = read_data(payload)
        return None if read is None else self._take(fast, read)

    @property
    def takes(self) -> bool:
        """:meth:`take` can apply at all: no sample period, no staleness limit (else rows need report times)."""
        return not self.period_ms and self.staleness.never

    def take_read(self, topic: str, read: DataRead | None) -> tuple[str, np.ndarray, float, int] | None:
        """:meth:`take` of a payload whose columns were read already (by a read process, ahead of the worker)."""
        if read is None:
            return None
        fast = self._fast(topic)
        return None if fast is None else self._take(fast, read)

    def _fast(self, topic: str) -> tuple[Node, Stream, MetricTable] | None:
        known = self.topics.get(topic)
        if known is None or self.period_ms:
            return None
        t, node, s = known
        table = s.table
        if (t.kind != "DDATA" and t.kind != "NDATA") or table is None or not s.wanted or not table.timeless:
            return None
        return None if table.fast_field is None else (node, s, table)

    def _take(
        self, fast: tuple[Node, Stream, MetricTable], read: DataRead
    ) -> tuple[str, np.ndarray, float, int] | None:
        node, s, table = fast
        seq, ts_ms, field, aliases, values, stamps = read
        if seq != node.next_seq or not table.apply_columns(field, aliases, values, stamps, ts_ms):
            return None
        node.next_seq = (seq + 1) % 256
        n = s.rows
        s.rows = n + 1
        return s.asset, table.values(), ts_ms / 1000.0, n

    def rebind(self) -> None:
        """Ask ``bind`` again for every asset (the models changed); held values are kept."""
        for node in self.nodes.values():
            for s in (node.stream, *node.devices.values()):
                if s.table is not None:
                    self._bind(s)

    # ------------------------------------------------------------ messages

    def _place(self, topic: str, t: topics.SparkplugTopic) -> tuple[topics.SparkplugTopic, Node, Stream]:
        key = (t.group_id, t.edge_node_id)
        node = self.nodes.get(key)
        if node is None:
            node = self.nodes[key] = Node(Stream(self.naming.node_asset(t.group_id, t.edge_node_id)))
        stream = node.stream
        if t.device_id is not None:
            stream = node.devices.get(t.device_id) or node.devices.setdefault(
                t.device_id, Stream(self.naming.device_asset(t.group_id, t.edge_node_id, t.device_id))
            )
        if len(self.topics) < 100_000:  # bounded: a flood of made-up topics is parsed each time instead
            self.topics[topic] = (t, node, stream)
        return t, node, stream

    def _data(self, t: topics.SparkplugTopic, node: Node, s: Stream, payload: bytes) -> Outcome:
        out = Outcome(s.asset)
        try:
            view = DataView.FromString(payload)
        except DecodeError:
            view = None
        if view is None:
            out.rejection = Rejection("undecodable", "not a Sparkplug B payload")
            return out
        if not self._sequence(out, node, view.seq if view.HasField("seq") else None, t):
            return out
        table = s.table
        if table is None:
            out.rejection = Rejection(
                "data_before_birth", f"{t.kind} before {'N' if t.device_id is None else 'D'}BIRTH"
            )
            self._ask_rebirth(out, t, node)
            return out
        if not s.wanted:
            out.rejection = Rejection("unknown_asset", s.asset)
            return out
        if not view.HasField("timestamp"):
            out.rejection = Rejection("bad_ts", "no payload timestamp")
            return out
        ts_ms = view.timestamp
        if self.period_ms:
            self._due(out, s, table, ts_ms, inclusive=False)  # boundaries before this message: the values held
        cols = None if table.fast_field is None else read_columns(view.metrics, payload)
        if cols is None or not table.apply_columns(*cols, ts_ms):
            full = decode(payload)
            problem = full if isinstance(full, Rejection) else table.apply_metrics(full.metrics, ts_ms)
            if problem is not None:
                out.rejection = problem
                if problem.reason in ("unknown_alias", "datatype_changed"):
                    self._ask_rebirth(out, t, node)
                return out
        return self._row(out, s, table, ts_ms)

    def _row(self, out: Outcome, s: Stream, table: MetricTable, ts_ms: float) -> Outcome:
        if self.period_ms:
            return self._due(out, s, table, ts_ms, inclusive=True)
        row = table.row(ts_ms)
        if isinstance(row, Rejection):
            out.rejection = row
            return out
        out.row, out.ts, out.seq = row, ts_ms / 1000.0, s.rows
        s.rows += 1
        return out

    def _due(self, out: Outcome, s: Stream, table: MetricTable, ts_ms: float, inclusive: bool) -> Outcome:
        """Rows at the period boundaries up to ``ts_ms``; a long silence skips to the last MAX_CATCHUP of them."""
        period = self.period_ms
        due = s.next_due
        if due < ts_ms - MAX_CATCHUP * period:
            due += ((ts_ms - due) // period - MAX_CATCHUP) * period
        rows = list(out.rows)
        while due < ts_ms or (inclusive and due == ts_ms):
            row = table.row(due)
            if isinstance(row, Rejection):
                out.rejection = row
            else:
                rows.append((due / 1000.0, s.rows, row))
                s.rows += 1
            due += period
        s.next_due = due
        out.rows = tuple(rows)
        return out

    def _birth(self, t: topics.SparkplugTopic, node: Node, s: Stream, payload: bytes) -> Outcome:
        out = Outcome(s.asset)
        p = decode(payload)
        if isinstance(p, Rejection):
            out.rejection = p
            return out
        seq = p.seq if p.HasField("seq") else None
        if t.kind == "NBIRTH":
            if seq is None or not 0 <= seq <= 255:
                out.rejection = Rejection("bad_seq", f"NBIRTH seq {seq}")
                return out
            node.next_seq = seq  # a new session: seq starts again here
            node.bd_seq = next((m.long_value for m in p.metrics if m.name == BD_SEQ), None)
            for d in node.devices.values():  # their aliases belong to the old session: born again or nothing
                d.table = None
        elif node.next_seq is None:
            out.rejection = Rejection("data_before_birth", "DBIRTH before NBIRTH")
            self._ask_rebirth(out, t, node)
            return out
        if not self._sequence(out, node, seq, t):
            return out
        if not p.HasField("timestamp"):
            out.rejection = Rejection("bad_ts", "no payload timestamp")
            return out
        s.table = MetricTable(p.metrics, p.timestamp)
        if t.kind == "NBIRTH" and not s.table.names:
            s.wanted = False  # an edge node with no process values of its own is no asset
            return out
        left_out = self._bind(s)
        out.ignored = (*s.table.ignored, *left_out)
        if not s.wanted:
            out.rejection = Rejection("unknown_asset", s.asset)
            return out
        if left_out:
            out.rejection = Rejection("unknown_sensor", ",".join(left_out[:5]))
        if not s.online:
            out.events = (*out.events, (s.asset, True, BIRTH))
        s.online, out.restart = True, True
        if self.period_ms:  # the stream starts again: rows from the first boundary at or after the BIRTH
            s.next_due = math.ceil(p.timestamp / self.period_ms) * self.period_ms
        return self._row(out, s, s.table, p.timestamp)

    def _bind(self, s: Stream) -> list[str]:
        assert s.table is not None
        sensors = self.bind(s.asset)
        s.wanted = sensors is not None and len(sensors) > 0
        if sensors is None or sensors == ALL_SENSORS:
            return []
        return s.table.bind(sensors, self.staleness, self.optional(s.asset))

    def _device_death(self, t: topics.SparkplugTopic, node: Node, s: Stream, payload: bytes) -> Outcome:
        out = Outcome(s.asset)
        p = decode(payload)
        if isinstance(p, Rejection):
            out.rejection = p
            return out
        if node.next_seq is None:
            out.rejection = Rejection("data_before_birth", "DDEATH before NBIRTH")
            return out
        if not self._sequence(out, node, p.seq if p.HasField("seq") else None, t):
            return out
        self._offline(out, s, DEVICE_DEATH)
        return out

    def _node_death(self, t: topics.SparkplugTopic, node: Node, payload: bytes) -> Outcome:
        out = Outcome(node.stream.asset)
        p = decode(payload)
        if isinstance(p, Rejection):
            out.rejection = p
            return out
        bd_seq = next((m.long_value for m in p.metrics if m.name == BD_SEQ), None)
        if node.next_seq is None or (node.bd_seq is not None and bd_seq != node.bd_seq):
            out.rejection = Rejection("stale_death", f"NDEATH bdSeq {bd_seq}, current session {node.bd_seq}")
            return out
        node.next_seq = None
        for d in node.devices.values():
            self._offline(out, d, NODE_DEATH)
        self._offline(out, node.stream, NODE_DEATH)
        return out

    def _offline(self, out: Outcome, s: Stream, reason: str) -> None:
        if s.online and s.wanted:
            out.events = (*out.events, (s.asset, False, reason))
        s.online, s.table = False, None

    # ------------------------------------------------------------ seq and rebirth

    def _sequence(self, out: Outcome, node: Node, seq: int | None, t: topics.SparkplugTopic) -> bool:
        """Check ``seq`` against the node's expected one; False (with the rejection set) to drop the message."""
        if seq is None or not 0 <= seq <= 255:
            out.rejection = Rejection("bad_seq", f"seq {seq}")
            return False
        expected = node.next_seq
        if expected is None:
            return True  # no session: the caller rejects as data_before_birth
        ahead = (seq - expected) % 256
        if ahead == 255:
            out.rejection = Rejection("duplicate", f"seq {seq} again")
            return False
        if ahead >= 128:
            out.rejection = Rejection("out_of_order", f"seq {seq}, expected {expected}")
            return False
        node.next_seq = (seq + 1) % 256
        if ahead:
            out.gaps = ahead  # a message in between never came: the held values may have missed a change
            self._ask_rebirth(out, t, node)
        return True

    def _ask_rebirth(self, out: Outcome, t: topics.SparkplugTopic, node: Node) -> None:
        if self.rebirth_interval is None:
            return
        now = self.clock()
        if now - node.asked_rebirth < self.rebirth_interval:
            return
        node.asked_rebirth = now
        out.command = (
            topics.message_topic("NCMD", t.group_id, t.edge_node_id),
            rebirth_request(int(time.time() * 1000)),
        )
