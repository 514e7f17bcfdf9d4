"""A DATA payload's columns read apart from any state, one at a time or a batch in bytes (the read process's)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.sparkplug import payload as spb
from monitor.sparkplug.data_read import ReadBatch, read_data, read_many

D = spb.DataType


def test_what_the_fast_path_cannot_take_reads_as_none() -> None:
    assert read_data(b"\xff\xff") is None  # not a protobuf
    untimed = spb.Payload(seq=1, metrics=[spb.Payload.Metric(alias=1, double_value=1.0)])
    assert read_data(untimed.SerializeToString()) is None  # no payload timestamp
    both = spb.Payload(timestamp=5, seq=1)
    both.metrics.add(alias=1, double_value=1.0)
    both.metrics.add(alias=2, double_value=2.0, datatype=D.Double)  # a datatype column with one entry of two
    assert read_data(both.SerializeToString()) is None
    mixed = spb.Payload(timestamp=5, seq=1)
    mixed.metrics.add(alias=1, double_value=1.0)
    mixed.metrics.add(alias=2, float_value=2.0)  # two value columns
    assert read_data(mixed.SerializeToString()) is None


def test_metric_timestamps_are_read_as_a_third_column() -> None:
    p = spb.Payload(timestamp=5, seq=0)
    p.metrics.add(alias=1, double_value=1.0, timestamp=3)
    p.metrics.add(alias=2, double_value=math.nan, timestamp=4)
    got = read_data(p.SerializeToString())
    assert got is not None
    seq, ts_ms, _, aliases, values, stamps = got
    assert (seq, ts_ms, aliases, stamps) == (0, 5, [1, 2], [3, 4]) and math.isnan(values[1])


def _values(raw: bytes) -> tuple[object, ...] | None:
    got = read_data(raw)
    if got is None:
        return None
    return (*got[:4], [float(v) for v in got[4]])  # the batch carries doubles


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=60),
            st.builds(
                lambda ts, seq, values, dt: spb.data_payload(ts, seq, values, dt),
                st.integers(0, 2**45),
                st.integers(0, 255),
                st.lists(st.tuples(st.integers(0, 2**40), st.floats(width=32)), max_size=8),
                st.sampled_from([D.Double, D.Float]),
            ),
            st.builds(
                lambda ts, seq, values: spb.data_payload(ts, seq, values, D.UInt32),
                st.integers(1, 2**45),
                st.integers(1, 255),
                st.lists(st.tuples(st.integers(0, 9), st.integers(0, 2**32 - 1)), min_size=1, max_size=8),
            ),
        ),
        max_size=12,
    )
)
def test_a_batch_read_as_bytes_is_each_payload_read_alone(payloads: list[bytes]) -> None:
    reads = ReadBatch.decode(read_many(payloads))
    assert len(reads) == len(payloads)
    for i, raw in enumerate(payloads):
        got = reads.record(i)
        alone = _values(raw)
        if alone is None:
            assert got is None
        else:
            assert got is not None and got[5] is None
            assert [str(x) for x in got[:5]] == [str(x) for x in alone]


def test_text_values_and_impossible_seqs_are_left_to_the_worker_without_breaking_the_batch() -> None:
    text = spb.Payload(timestamp=5, seq=1)
    text.metrics.add(alias=4, string_value="running")  # a status text changed, nothing else
    huge = spb.Payload(timestamp=5, seq=2**64 - 1)  # no edge node sends it; anyone on the broker can
    huge.metrics.add(alias=1, double_value=1.0)
    good = spb.data_payload(5, 3, [(1, 2.0)])
    reads = ReadBatch.decode(read_many([text.SerializeToString(), huge.SerializeToString(), good]))
    assert reads.record(0) is None and reads.record(1) is None
    got = reads.record(2)
    assert got is not None and got[0] == 3 and got[4] == [2.0]


def test_bytes_that_are_not_one_whole_batch_are_refused() -> None:
    data = read_many([spb.data_payload(5, 1, [(1, 1.0)])])
    for bad in (b"", data[:-1], data + b"\0"):
        with pytest.raises(ValueError):
            ReadBatch.decode(bad)
