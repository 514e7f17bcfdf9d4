"""What the column fast path needs of a DATA payload, read without any state: seq, time, aliases, values.

Reading a payload's columns is most of a Sparkplug message's cost in the worker (two protobuf parses,
the list of present columns, two slices) and depends on nothing but the bytes, so a backlog's batch can
be read in another process while the worker scores the batch before it (:mod:`.read_process`). What is
read here is checked against the BIRTH's table by :meth:`monitor.sparkplug.Host.take_read`.

The fast path takes a payload only when every column it reads has exactly one entry per metric and no
other column is set, so entry ``i`` of each column belongs to metric ``i`` (``MetricCount`` counts the
metrics). Anything else is None here and goes through the metric-by-metric path, which names what is
wrong.

>>> from monitor.sparkplug.payload import data_payload
>>> read_data(data_payload(1700000000000, 7, [(1, 20.5), (2, 7.0)]))
(7, 1700000000000, 'double_value', [1, 2], [20.5, 7.0], None)
>>> reads = ReadBatch.decode(read_many([data_payload(5, 1, [(3, 1.5)]), b"\\xff"]))
>>> reads.record(0)[4], reads.record(1)
([1.5], None)
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from .payload import NUMERIC, DataView, MetricCount

#: every column of MetricColumns, by field number order: a read names its value column by index here
COLUMNS: tuple[str, ...] = tuple(f.name for f in DataView.DESCRIPTOR.fields_by_name["metrics"].message_type.fields)
_CODE = {name: i for i, name in enumerate(COLUMNS)}
_HEAD = struct.Struct("<IQ")
HEAD_SIZE = _HEAD.size
#: the value columns the fast path may read (numbers; :meth:`MetricTable.apply_columns` picks one per BIRTH)
NUMERIC_COLUMNS = frozenset(field for field, _ in NUMERIC.values())


#: a DATA payload's metrics as columns, entry ``i`` of each metric ``i``'s: the value column's name (every
#: metric's), aliases, values, and the metrics' own timestamps when they carry them. Plain tuples, not named
#: ones: made for every message on the worker's hot path (a NamedTuple costs ~0.3 us more each)
Columns = tuple[str, list[int], list[float], list[int] | None]
#: one DATA payload as the fast path reads it: ``seq``, timestamp (both present), then its :data:`Columns`
DataRead = tuple[int, int, str, list[int], list[float], list[int] | None]


def read_data(payload: bytes) -> DataRead | None:
    """The payload as the fast path reads it; None when the fast path cannot take it (not an error)."""
    try:
        view = DataView.FromString(payload)
    except DecodeError:
        return None
    seq, ts_ms = view.seq, view.timestamp
    # a proto2 field read as non-zero is present: HasField is asked only of a zero (~0.3 us a message)
    if (not seq and not view.HasField("seq")) or (not ts_ms and not view.HasField("timestamp")):
        return None
    cols = read_columns(view.metrics, payload)
    return None if cols is None else (seq, ts_ms, *cols)


def read_columns(merged: Any, payload: bytes) -> Columns | None:
    """``merged``: the payload's ``DataView.metrics`` (every metric merged into one message of columns)."""
    present = merged.ListFields()  # (field, column) of the non-empty columns, by field number
    count = len(MetricCount.FromString(payload).metrics)
    if len(present) == 2:
        (f_alias, aliases), (f_value, values) = present
        stamps = None
    elif len(present) == 3:
        (f_alias, aliases), (f_stamp, stamps), (f_value, values) = present
        if f_stamp.name != "timestamp" or len(stamps) != count:
            return None
        stamps = stamps[:]
    else:
        return None
    if f_alias.name != "alias" or len(values) != count or len(aliases) != count:
        return None
    # whole-column slices: protobuf makes each a list in one step (iterating a column goes
    # element by element through Python, three times slower)
    return f_value.name, aliases[:], values[:], stamps


def read_many(payloads: Sequence[bytes]) -> bytes:
    """:func:`read_data` of each payload, as the bytes :meth:`ReadBatch.decode` reads (no pickling).

    Layout: n and m (the metrics in all), then seq (int64, -1: not readable), timestamp (uint64), value
    column (int64 index into :data:`COLUMNS`), the start of each payload's metrics (int64, n + 1), then
    the m aliases (uint64) and values (float64: what the held values are).
    """
    n = len(payloads)
    seq = np.full(n, -1, np.int64)
    ts = np.zeros(n, np.uint64)
    code = np.zeros(n, np.int64)
    starts = np.zeros(n + 1, np.int64)
    aliases: list[int] = []
    values: list[float] = []
    for i, raw in enumerate(payloads):
        starts[i] = len(aliases)
        try:
            got = read_data(raw)
        except Exception:  # whatever a payload does, it is one the worker reads itself
            continue
        # text values, or a seq no edge node sends (0-255): not for the fast path, nor for these arrays
        if got is None or got[2] not in NUMERIC_COLUMNS or got[0] > 255:
            continue
        seq[i], ts[i], code[i] = got[0], got[1], _CODE[got[2]]
        aliases += got[3]
        values += got[4]
    starts[n] = len(aliases)
    return b"".join(
        (
            _HEAD.pack(n, len(aliases)),
            seq.tobytes(),
            ts.tobytes(),
            code.tobytes(),
            starts.tobytes(),
            np.array(aliases, np.uint64).tobytes(),
            np.array(values, np.float64).tobytes(),
        )
    )


class ReadBatch:
    """The reads of a batch, from :func:`read_many`'s bytes; :meth:`record` gives payload ``i``'s.

    The metrics' own timestamps are not carried (``stamps`` is None): a batch's reads are applied by
    :meth:`monitor.sparkplug.Host.take_read`, to tables whose rows never read report times.
    """

    def __init__(self, seq: list[int], ts: list[int], code: list[int], starts: list[int], aliases: list[int],
                 values: list[float]) -> None:  # fmt: skip
        self._seq, self._ts, self._code, self._starts = seq, ts, code, starts
        self._aliases, self._values = aliases, values

    def __len__(self) -> int:
        return len(self._seq)

    @classmethod
    def decode(cls, data: bytes) -> ReadBatch:
        """Raises ValueError when ``data`` is not one whole :func:`read_many` output."""
        if len(data) < _HEAD.size:
            raise ValueError(f"a read batch is at least {_HEAD.size} bytes, got {len(data)}")
        n, m = _HEAD.unpack_from(data)
        if len(data) != _HEAD.size + 8 * (4 * n + 1) + 16 * m:
            raise ValueError(f"a read batch of {n} payloads and {m} metrics is not {len(data)} bytes")
        at = _HEAD.size

        def take(dtype: type, k: int) -> list[int] | list[float]:
            nonlocal at
            out = np.frombuffer(data, dtype, k, at).tolist()
            at += 8 * k
            return out

        seq, ts, code, starts = take(np.int64, n), take(np.uint64, n), take(np.int64, n), take(np.int64, n + 1)
        return cls(seq, ts, code, starts, take(np.uint64, m), take(np.float64, m))  # type: ignore[arg-type]

    def record(self, i: int) -> DataRead | None:
        seq = self._seq[i]
        if seq < 0:
            return None
        a, b = self._starts[i], self._starts[i + 1]
        return seq, self._ts[i], COLUMNS[self._code[i]], self._aliases[a:b], self._values[a:b], None
