"""The Sparkplug host state machine, message by message: births, report-by-exception rows, deaths, seq."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import wire
from monitor.sparkplug import Host, Outcome, Staleness, topics
from monitor.sparkplug import payload as spb
from monitor.sparkplug.data_read import ReadBatch, read_many

D = spb.DataType
SENSORS = ["a", "b", "c"]
DEVICE = [("a", 1, D.Double, 1.0), ("b", 2, D.Double, 2.0), ("c", 3, D.Double, 3.0), ("label", 4, D.String, None)]


class Node:
    """An edge node 'gw' of group 'g' with device 'd1', writing messages by hand (seq kept here)."""

    def __init__(self, host: Host) -> None:
        self.host, self.seq = host, 0

    def send(self, kind: str, raw: bytes, device: str | None = "d1") -> Outcome:
        return self.host.handle(topics.message_topic(kind, "g", "gw", None if kind.startswith("N") else device), raw)

    def next(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def birth(self, bd_seq: int = 7, device: list[Any] = DEVICE) -> Outcome:
        self.seq = 0
        self.send("NBIRTH", spb.birth_payload(1000, 0, [], bd_seq=bd_seq, rebirth_metric=True))
        return self.send("DBIRTH", spb.birth_payload(1000, self.next(), device))

    def data(self, values: list[tuple[int, float]], ts: int = 2000, **kw: Any) -> Outcome:
        return self.send("DDATA", spb.data_payload(ts, self.next(), values, **kw))


def host(**kw: Any) -> Host:
    return Host(lambda asset: SENSORS if asset.startswith("gw") else None, **kw)


def reason(out: Outcome) -> str | None:
    return None if out.rejection is None else out.rejection.reason


def test_a_device_birth_is_a_row_and_brings_the_asset_online() -> None:
    out = Node(host()).birth()
    assert (out.asset, out.row, out.ts, out.restart) == ("gw/d1", (1.0, 2.0, 3.0), 1.0, True)
    assert out.events == (("gw/d1", True, "birth"),)
    assert out.ignored == ("label (String)",)


def test_data_by_alias_carries_only_what_changed_and_the_rest_is_held() -> None:
    n = Node(host())
    n.birth()
    out = n.data([(1, 5.0), (3, 6.0)])
    assert (out.row, out.seq) == ((5.0, 2.0, 6.0), 1)
    assert n.data([(2, -1.0)]).row == (5.0, -1.0, 6.0)


def test_metric_names_instead_of_aliases_and_booleans_as_zero_one() -> None:
    n = Node(host())
    n.birth(device=[("a", 1, D.Boolean, True), ("b", 2, D.Int16, 1), ("c", 3, D.Float, 0.5)])
    p = spb.Payload(timestamp=3000, seq=n.next())
    p.metrics.add(name="a", boolean_value=False)
    p.metrics.add(name="b", int_value=65535)  # Int16 -1, two's complement
    assert n.send("DDATA", p.SerializeToString()).row == (0.0, -1.0, 0.5)


def test_a_birth_with_a_metric_the_model_lacks_counts_unknown_sensor_once_and_still_makes_rows() -> None:
    n = Node(host())
    out = n.birth(device=[*DEVICE, ("extra", 5, D.Double, 9.0)])
    assert reason(out) == "unknown_sensor" and out.row == (1.0, 2.0, 3.0)
    assert reason(n.data([(5, 1.0), (1, 4.0)])) is None


def test_a_sensor_the_birth_does_not_define_makes_every_row_missing_sensor() -> None:
    n = Node(host())
    out = n.birth(device=DEVICE[:2])
    assert reason(out) == "missing_sensor" and out.rejection is not None and out.rejection.detail == "c"


def test_an_optional_sensor_that_is_missing_or_stale_is_nan_in_the_row_for_the_missing_policy() -> None:
    n = Node(host(staleness=Staleness(5.0), optional=lambda asset: {"c"}))
    row = n.birth(device=DEVICE[:2]).row  # c is not in the BIRTH
    assert row is not None and row[:2] == (1.0, 2.0) and math.isnan(row[2])
    assert reason(n.data([(2, 1.0)], ts=7000)) == "stale_metric"  # a is stale and not optional


def test_staleness_per_metric_makes_a_row_incomplete_until_the_metric_is_reported() -> None:
    n = Node(host(staleness=Staleness(0.0, (("b", 5.0),))))
    n.birth()
    assert n.data([(1, 1.5)], ts=5000).row is not None  # b reported at 1000: 4 s old
    assert reason(n.data([(1, 1.6)], ts=7000)) == "stale_metric"  # 6 s old
    assert n.data([(2, 2.5)], ts=7500).row == (1.6, 2.5, 3.0)


def test_with_a_sample_period_rows_fall_on_period_boundaries_with_the_values_held_then() -> None:
    n = Node(host(sample_period=1.0))
    birth = n.birth()  # at 1000 ms: on a boundary
    assert (birth.row, birth.rows) == (None, ((1.0, 0, (1.0, 2.0, 3.0)),))
    out = n.data([(1, 5.0)], ts=3500)  # 2000 and 3000 passed with the values before this message
    assert out.rows == ((2.0, 1, (1.0, 2.0, 3.0)), (3.0, 2, (1.0, 2.0, 3.0)))
    assert n.data([(2, 6.0)], ts=4000).rows == ((4.0, 3, (5.0, 6.0, 3.0)),)  # on a boundary: with it
    assert (
        len(n.data([(2, 7.0)], ts=10_000_000).rows) == 100 + 1
    )  # a long silence: its last 100 boundaries, and its own


def test_seq_wraps_at_255_and_a_gap_is_counted_and_the_message_used() -> None:
    n = Node(host())
    n.birth()
    for _ in range(300):
        assert reason(n.data([(1, 1.0)])) is None
    n.next()
    n.next()  # two messages lost
    out = n.data([(1, 2.0)])
    assert out.gaps == 2 and out.row is not None and out.command is None  # rebirth requests are off by default


def test_a_gap_asks_for_a_rebirth_when_allowed_at_most_once_per_interval() -> None:
    clock = [0.0]
    n = Node(host(rebirth_interval=30.0, clock=lambda: clock[0]))
    n.birth()
    n.next()
    out = n.data([(1, 2.0)])
    assert out.command is not None and out.command[0] == "spBv1.0/g/NCMD/gw"
    assert spb.asks_rebirth(out.command[1])
    n.next()
    assert n.data([(1, 2.0)]).command is None
    clock[0] = 31.0
    n.next()
    assert n.data([(1, 2.0)]).command is not None


def test_a_death_matched_by_bdseq_takes_the_node_and_its_devices_offline() -> None:
    n = Node(host())
    n.birth(bd_seq=7)
    out = n.send("NDEATH", spb.death_payload(3000, bd_seq=7))
    assert out.events == (("gw/d1", False, "node_death"),)
    assert reason(n.data([(1, 1.0)])) == "data_before_birth"
    out = n.birth(bd_seq=8)
    assert out.events == (("gw/d1", True, "birth"),) and out.restart


def test_a_device_death_takes_only_that_device_offline() -> None:
    n = Node(host())
    n.birth()
    out = n.send("DDEATH", spb.death_payload(3000, seq=n.next()))
    assert out.events == (("gw/d1", False, "device_death"),)


#: one message per Sparkplug rejection reason (and the shared ones a Sparkplug message can get)
def _undecodable(n: Node) -> Outcome:
    return n.send("DDATA", b"\xff\xff\xff")


def _data_before_birth(n: Node) -> Outcome:
    return n.send("DDATA", spb.data_payload(1000, n.next(), [(1, 1.0)]), device="other")


def _unknown_alias(n: Node) -> Outcome:
    return n.data([(99, 1.0)])


def _datatype_changed(n: Node) -> Outcome:
    return n.data([(1, 1.0)], datatype=D.Float)


def _duplicate(n: Node) -> Outcome:
    n.seq -= 1
    return n.data([(1, 1.0)])


def _out_of_order(n: Node) -> Outcome:
    n.seq = (n.seq - 10) % 256
    return n.data([(1, 1.0)])


def _stale_death(n: Node) -> Outcome:
    return n.send("NDEATH", spb.death_payload(3000, bd_seq=6))


def _stale_metric(n: Node) -> Outcome:
    n.host.staleness = Staleness(1.0)
    n.host.rebind()
    return n.data([(1, 1.0)], ts=9000)


def _non_finite(n: Node) -> Outcome:
    return n.data([(1, math.nan)])


def _bad_ts(n: Node) -> Outcome:
    p = spb.Payload(seq=n.next())
    p.metrics.add(alias=1, double_value=1.0)
    return n.send("DDATA", p.SerializeToString())


def _bad_seq(n: Node) -> Outcome:
    p = spb.Payload(timestamp=2000)
    p.metrics.add(alias=1, double_value=1.0)
    return n.send("DDATA", p.SerializeToString())


def _missing_field(n: Node) -> Outcome:
    p = spb.Payload(timestamp=2000, seq=n.next())
    p.metrics.add(alias=1)
    return n.send("DDATA", p.SerializeToString())


def _bad_topic(n: Node) -> Outcome:
    return n.host.handle("spBv1.0/g/DDATA/gw", b"")


def _unknown_asset(n: Node) -> Outcome:
    return n.host.handle(topics.message_topic("NBIRTH", "g", "plc"), spb.birth_payload(1000, 0, DEVICE[:1], bd_seq=1))


EXAMPLES = {
    "undecodable": _undecodable,
    "data_before_birth": _data_before_birth,
    "unknown_alias": _unknown_alias,
    "datatype_changed": _datatype_changed,
    "duplicate": _duplicate,
    "out_of_order": _out_of_order,
    "stale_death": _stale_death,
    "stale_metric": _stale_metric,
    "non_finite": _non_finite,
    "bad_ts": _bad_ts,
    "bad_seq": _bad_seq,
    "missing_field": _missing_field,
    "bad_topic": _bad_topic,
    "unknown_asset": _unknown_asset,
}


def test_every_sparkplug_reason_has_an_example() -> None:
    assert set(wire.SPARKPLUG_REASONS) <= set(EXAMPLES)


@pytest.mark.parametrize("expected", sorted(EXAMPLES))
def test_each_bad_message_gets_its_reason_and_does_not_poison_the_next(expected: str) -> None:
    n = Node(host())
    n.birth()
    assert reason(EXAMPLES[expected](n)) == expected
    node = n.host.nodes[("g", "gw")]
    assert node.next_seq is not None  # the session lives on
    n.seq = node.next_seq - 1  # a rejected seq did not move it
    out = n.data([(2, 4.0)], ts=9500)
    assert reason(out) == ("stale_metric" if expected == "stale_metric" else None)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([1, 2, 3]), st.floats(-1e6, 1e6), st.one_of(st.none(), st.integers(1000, 5000))),
        min_size=1,
        max_size=6,
    ),
    st.booleans(),
)
def test_the_column_fast_path_and_the_metric_by_metric_path_hold_the_same_values(
    metrics: list[Any], limited: bool
) -> None:
    rows = []
    for force_slow in (False, True):
        n = Node(host(staleness=Staleness(100.0 if limited else 0.0)))
        n.birth()
        p = spb.Payload(timestamp=6000, seq=n.next())
        for alias, value, ts in metrics:
            m = p.metrics.add(alias=alias, double_value=value)
            if ts is not None:
                m.timestamp = ts
        if force_slow:  # a datatype field on every metric: legal, but not the column path's shape
            for m in p.metrics:
                m.datatype = D.Double
        out = n.send("DDATA", p.SerializeToString())
        table = n.host.nodes[("g", "gw")].devices["d1"].table
        assert table is not None
        stamps = list(table.stamps) if limited else None  # without a staleness limit report times are unused
        rows.append((out.row, reason(out), table.held.tobytes(), stamps))  # bit for bit, NaN included
    assert rows[0] == rows[1]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH", "NCMD"]),
    st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda metrics, seq, ts: spb.birth_payload(ts, seq, metrics),
            st.lists(
                st.tuples(
                    st.sampled_from(["a", "b", "c", "bdSeq", ""]),
                    st.integers(0, 5),
                    st.sampled_from([D.Double, D.Int8, D.Boolean, D.String, D.Float, D.UInt64]),
                    st.one_of(st.none(), st.integers(-1, 1)),
                ),
                max_size=5,
            ),
            st.integers(0, 300),
            st.integers(0, 2**40),
        ),
    ),
)
def test_no_message_makes_the_host_raise(kind: str, raw: bytes) -> None:
    n = Node(host(rebirth_interval=1.0))
    n.birth()
    out = n.send(kind, raw)
    assert out.rejection is None or out.rejection.reason in wire.REJECTION_REASONS
    assert n.data([(1, 1.0)], ts=9000).asset == "gw/d1"  # and the host still answers


#: three devices of edge node 'gw' whose DATA the column path reads: doubles, floats, and 16-bit unsigned ints
DEVICES = {
    "d1": (D.Double, (1, 2, 3)),
    "d2": (D.Float, (10, 20, 30)),
    "d3": (D.UInt16, (100, 200, 300)),
}


def _script(seed: int, n: int = 400) -> list[tuple[str, bytes]]:
    """Births, report-by-exception data of three devices interleaved, and the messages take() must leave
    to handle(): a seq gap, a duplicate, an unknown alias, NaN, a null, an alias twice in one message,
    metric timestamps, names instead of aliases, a rebirth of the node."""
    import random

    rnd = random.Random(seed)
    seq = [0]
    out: list[tuple[str, bytes]] = []

    def next_seq() -> int:
        seq[0] = (seq[0] + 1) % 256
        return seq[0]

    def send(kind: str, raw: bytes, device: str | None = None) -> None:
        out.append((topics.message_topic(kind, "g", "gw", device), raw))

    def births() -> None:
        seq[0] = 0
        send("NBIRTH", spb.birth_payload(1000, 0, [], bd_seq=7))
        for device, (dt, aliases) in DEVICES.items():
            metrics = [(name, alias, dt, 1 + k) for k, (name, alias) in enumerate(zip(SENSORS, aliases))]
            send("DBIRTH", spb.birth_payload(1000, next_seq(), [*metrics, ("label", 4, D.String, None)]), device)

    def value(dt: int) -> float:
        return rnd.randint(0, 1000) if dt == D.UInt16 else round(rnd.uniform(-5, 5), 3)

    births()
    for i in range(n):
        device = rnd.choice(list(DEVICES))
        dt, aliases = DEVICES[device]
        pick = rnd.sample(aliases, rnd.randint(1, 3))
        odd = rnd.random()
        if odd < 0.03:
            next_seq()  # a gap
        if odd < 0.06 and i % 2:
            send("DDATA", spb.data_payload(2000 + i, seq[0], [(aliases[0], 1)], dt), device)  # the previous seq again
            continue
        values: list[tuple[int, float | None]] = [(a, value(dt)) for a in pick]
        if 0.06 <= odd < 0.08:
            values.append((9, 1))  # an alias the BIRTH did not define
        elif 0.08 <= odd < 0.10 and dt != D.UInt16:
            values[0] = (values[0][0], math.nan)
        elif 0.10 <= odd < 0.12:
            values[0] = (values[0][0], None)  # is_null: the row is incomplete until it is reported again
        elif 0.12 <= odd < 0.13:
            births()
            continue
        elif 0.13 <= odd < 0.15:
            values.append((values[0][0], value(dt)))  # the same metric twice: the last value holds
        elif 0.15 <= odd < 0.17:  # metric timestamps: a third column
            p = spb.Payload(timestamp=2000 + i, seq=next_seq())
            for a, v in values:
                field = spb.NUMERIC[dt][0]
                p.metrics.add(alias=a, timestamp=1990 + i, **{field: v})
            send("DDATA", p.SerializeToString(), device)
            continue
        send("DDATA", spb.data_payload(2000 + i, next_seq(), values, dt), device)  # type: ignore[arg-type]
    return out


def _summary(o: Outcome) -> tuple[Any, ...] | None:
    return (o.asset, o.row, o.ts, o.seq, reason(o)) if o.row or o.rejection else None


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("read_ahead", [False, True])
def test_take_means_what_handle_means_and_leaves_the_rest_to_it(seed: int, read_ahead: bool) -> None:
    """The same script through handle() alone, and through take() first (handle() when it declines):
    the same rows with the same seq and time, the same rejections, and take() did most of the work.
    read_ahead: take_read() of the payloads read beforehand as a batch, as the read process sends them."""
    messages = _script(seed)
    reads = ReadBatch.decode(read_many([raw for _, raw in messages]))
    one, two = host(), host()
    by_handle, by_take, taken = [], [], 0
    for i, (topic, raw) in enumerate(messages):
        by_handle.append(_summary(one.handle(topic, raw)))
        got = two.take_read(topic, reads.record(i)) if read_ahead else two.take(topic, raw)
        if got is None:
            by_take.append(_summary(two.handle(topic, raw)))
        else:
            taken += 1
            asset, row, ts, seq = got
            by_take.append((asset, tuple(row.tolist()), ts, seq, None))
    assert by_take == by_handle
    assert taken > len(messages) // 2
    assert {r[4] for r in by_handle if r} >= {None, "duplicate", "unknown_alias", "non_finite", "missing_sensor"}
