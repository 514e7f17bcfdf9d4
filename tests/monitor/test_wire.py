"""The wire contract: every rejection reason, decoders that never raise, round trips, topic names."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import wire
from monitor.wire import REJECTION_REASONS, Rejection, Telemetry

#: No example database in the work tree, no per-example deadline on a shared machine.
PROPERTY = settings(database=None, deadline=None, max_examples=150)

INDEX = wire.sensor_index(["a", "b"])
#: Reasons only the monitor's pipeline produces, not the decoders tested here.
PIPELINE_REASONS = {  # decided by the worker (tests/monitor/daemon), not by the decoder
    "unknown_asset",
    "too_many_assets",
    "duplicate",
    "out_of_range",
    "ts_out_of_range",
    "seq_jump",
    "out_of_order",
    "retained_stale",
    *wire.SPARKPLUG_REASONS,  # tests/monitor/sparkplug
}


def doc(**overrides: Any) -> bytes:
    d: dict[str, Any] = {"ts": 1700000000.5, "seq": 3, "values": {"a": 1.0, "b": 2}}
    d.update(overrides)
    return orjson.dumps({k: v for k, v in d.items() if v is not ...})


def rejected(result: Any, reason: str) -> None:
    assert isinstance(result, Rejection) and result.reason == reason, result


def both(payload: bytes | str, reason: str) -> None:
    """The same payload is rejected for the same reason by both decoders."""
    rejected(wire.decode_telemetry(payload), reason)
    rejected(wire.decode_row(payload, INDEX, np.zeros(2)), reason)


def test_a_topic_that_is_not_prefix_asset_telemetry_is_a_bad_topic() -> None:
    for topic in [
        "plant/a/alarm",
        "other/a/telemetry",
        "plant/telemetry",
        "plant//telemetry",
        "plant/a/b/telemetry",
        "plant/_monitor/telemetry",
        "plant/+/telemetry",
        "plant/ a/telemetry",
    ]:
        rejected(wire.asset_of(topic, "plant"), "bad_topic")
    assert wire.asset_of("plant/boiler 1/telemetry", "plant") == "boiler 1"
    assert wire.asset_of("site/plant/b/drill", "site/plant", "drill") == "b"


def test_an_oversized_payload_is_too_large() -> None:
    both(b" " * (wire.MAX_PAYLOAD_BYTES + 1), "too_large")


@pytest.mark.parametrize("payload", [b"{", b"", b"\xff\xfe", b"{'ts': 1}", b"NaN", b"[1e400]"])
def test_a_payload_that_is_not_utf8_json_is_not_json(payload: bytes) -> None:
    both(payload, "not_json")


@pytest.mark.parametrize("payload", [b"[]", b"3", b'"x"', b"null", doc(values=[1.0, 2.0]), doc(values=None)])
def test_json_that_is_not_an_object_or_values_that_is_not_one_is_not_object(payload: bytes) -> None:
    both(payload, "not_object")


@pytest.mark.parametrize("field", ["ts", "seq", "values"])
def test_each_missing_header_field_is_missing_field(field: str) -> None:
    both(doc(**{field: ...}), "missing_field")


@pytest.mark.parametrize("ts", [-1.0, "1", True, None, [1]])
def test_a_negative_or_non_numeric_ts_is_bad_ts(ts: Any) -> None:
    both(doc(ts=ts), "bad_ts")


@pytest.mark.parametrize("seq", [-1, 1.0, "1", False, None, 2**63, 2**64 - 1])
def test_a_seq_that_is_not_an_integer_0_to_2_63_minus_1_is_bad_seq(seq: Any) -> None:
    """2**64-1 used to be scored, as a float seq in the log and gaps of 1.8e19 (issue 14)."""
    both(doc(seq=seq), "bad_seq")


def test_the_largest_seq_is_an_exact_int() -> None:
    t = wire.decode_telemetry(doc(seq=wire.MAX_SEQ))
    assert isinstance(t, wire.Telemetry) and t.seq == 2**63 - 1 and type(t.seq) is int


@pytest.mark.parametrize("value", ["1.0", True, None, [1.0], {"x": 1}])
def test_a_sensor_value_that_is_not_a_number_is_non_numeric(value: Any) -> None:
    both(doc(values={"a": value, "b": 1.0}), "non_numeric")


def test_non_finite_values_never_get_through_because_json_cannot_carry_them() -> None:
    """orjson refuses NaN, Infinity and 1e400, so the decoders answer not_json before
    non_finite could apply; non_finite stays for payload paths that bypass JSON."""
    for text in (
        '{"ts":1,"seq":1,"values":{"a":NaN,"b":1}}',
        '{"ts":1,"seq":1,"values":{"a":1e400,"b":1}}',
        '{"ts":1,"seq":1,"values":{"a":-Infinity,"b":1}}',
    ):
        both(text, "not_json")
    assert wire._value("a", float("inf")) == Rejection("non_finite", "a")


def test_a_sensor_the_model_does_not_know_is_unknown_sensor() -> None:
    rejected(wire.decode_row(doc(values={"a": 1.0, "b": 2.0, "c": 3.0}), INDEX, np.zeros(2)), "unknown_sensor")


def test_a_sensor_the_model_needs_but_is_absent_is_missing_sensor() -> None:
    result = wire.decode_row(doc(values={"a": 1.0}), INDEX, np.zeros(2))
    rejected(result, "missing_sensor")
    assert isinstance(result, Rejection) and result.detail == "b"


def test_an_optional_sensor_may_be_absent_and_leaves_nan_in_its_place_on_both_decoder_paths() -> None:
    """[missing] hold/drop sensors: absent is not a rejection; the row says which value is missing."""
    out = np.array([7.0, 7.0])
    assert wire.decode_row(doc(values={"a": 1.0}), INDEX, out, frozenset({"b"})) == (1700000000.5, 3)
    assert out[0] == 1.0 and math.isnan(out[1])
    decoder = wire.RowDecoder(["a", "b"], optional=["b"])
    out[:] = 7.0
    assert decoder.decode(doc(values={"a": 1.0}), out) == (1700000000.5, 3) and math.isnan(out[1])
    assert decoder.decode(doc(values={"a": 2.0, "b": 3.0}), out) == (1700000000.5, 3) and out.tolist() == [2.0, 3.0]
    rejected(decoder.decode(doc(values={"b": 1.0}), out), "missing_sensor")


#: One example per decoder reason; a new reason in wire fails the test below until it has one here.
EXAMPLES = {
    "bad_topic": lambda: wire.asset_of("plant/a/alarm", "plant"),
    "too_large": lambda: wire.decode_telemetry(b" " * (wire.MAX_PAYLOAD_BYTES + 1)),
    "not_json": lambda: wire.decode_telemetry(b"{"),
    "not_object": lambda: wire.decode_telemetry(b"[]"),
    "missing_field": lambda: wire.decode_telemetry(doc(seq=...)),
    "bad_ts": lambda: wire.decode_telemetry(doc(ts=-1)),
    "bad_seq": lambda: wire.decode_telemetry(doc(seq=-1)),
    "non_numeric": lambda: wire.decode_telemetry(doc(values={"a": "1"})),
    "non_finite": lambda: wire._value("a", math.nan),
    "unknown_sensor": lambda: wire.decode_row(doc(values={"z": 1}), INDEX, np.zeros(2)),
    "missing_sensor": lambda: wire.decode_row(doc(values={"a": 1}), INDEX, np.zeros(2)),
}


def test_every_decoder_reason_has_an_example_that_produces_it() -> None:
    assert set(EXAMPLES) == set(REJECTION_REASONS) - PIPELINE_REASONS
    for reason, example in EXAMPLES.items():
        rejected(example(), reason)


def test_a_good_payload_decodes_into_the_row_in_model_order() -> None:
    out = np.zeros(2)
    assert wire.decode_row(doc(values={"b": 2.5, "a": -1}), INDEX, out) == (1700000000.5, 3)
    assert out.tolist() == [-1.0, 2.5]
    assert wire.decode_telemetry(doc()) == Telemetry(1700000000.5, 3, {"a": 1.0, "b": 2.0})


# ------------------------------------------------------------ properties

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
headers = st.fixed_dictionaries({}, optional={"ts": json_values, "seq": json_values, "values": json_values})
names = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20)
finite = st.floats(allow_nan=False, allow_infinity=False)


def check(result: Any) -> None:
    assert isinstance(result, (Telemetry, Rejection, tuple))
    if isinstance(result, Rejection):
        assert result.reason in REJECTION_REASONS


@PROPERTY
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_and_give_a_known_reason(payload: bytes) -> None:
    check(wire.decode_telemetry(payload))
    check(wire.decode_row(payload, INDEX, np.zeros(2)))


@PROPERTY
@given(st.one_of(json_values, headers))
def test_arbitrary_json_never_raises_and_gives_a_known_reason(obj: Any) -> None:
    payload = orjson.dumps(obj)
    for result in (
        wire.decode_telemetry(payload),
        wire.decode_telemetry(payload.decode()),
        wire.decode_row(payload, INDEX, np.zeros(2)),
    ):
        check(result)


@PROPERTY
@given(
    st.fixed_dictionaries(
        {
            "ts": json_values,
            "seq": json_values,
            "values": st.dictionaries(st.sampled_from(["a", "b", "c"]), json_values),
        }
    )
)
def test_arbitrary_headers_and_values_never_raise(obj: dict[str, Any]) -> None:
    check(wire.decode_telemetry(orjson.dumps(obj)))
    check(wire.decode_row(orjson.dumps(obj), INDEX, np.zeros(2)))


@PROPERTY
@given(st.floats(0, 1e12, allow_nan=False), st.integers(0, 2**63 - 1), st.dictionaries(names, finite, max_size=20))
def test_encode_then_decode_gives_back_the_same_sample(ts: float, seq: int, values: dict[str, float]) -> None:
    decoded = wire.decode_telemetry(wire.encode_telemetry(ts, seq, values))
    assert decoded == Telemetry(ts, seq, values)
    index = wire.sensor_index(values)
    out = np.full(len(values), math.nan)
    assert wire.decode_row(wire.encode_telemetry(ts, seq, values), index, out) == (ts, seq)
    assert out.tolist() == list(values.values())


# ------------------------------------------------------------ topics

BAD_NAMES = ["", "a/b", "+", "#", "a+b", "x#", "nul\x00", " lead", "trail ", "x" * (wire.MAX_NAME_LENGTH + 1)]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_topic_helpers_refuse_names_that_are_not_one_topic_level(name: str) -> None:
    for helper in (wire.telemetry_topic, wire.alarm_topic, wire.drill_topic):
        if name == "a/b" and helper is not wire.telemetry_topic:
            continue  # a Sparkplug asset (edge node/device): see the test below
        with pytest.raises(ValueError, match="invalid asset name"):
            helper("plant", name)
    with pytest.raises(ValueError, match="invalid instance name"):
        wire.status_topic("plant", name)
    if name != "+":
        with pytest.raises(ValueError, match="invalid asset name"):
            wire.telemetry_filter("plant", name)


@pytest.mark.parametrize("prefix", ["", "a//b", "/a", "a/", "a/+", "#", "a/\x00"])
def test_topic_helpers_refuse_bad_prefixes(prefix: str) -> None:
    for helper in (wire.telemetry_topic, wire.alarm_topic, wire.drill_topic, wire.status_topic):
        with pytest.raises(ValueError, match="invalid topic prefix"):
            helper(prefix, "a")
    for make_filter in (wire.telemetry_filter, wire.alarm_filter, wire.drill_filter):
        with pytest.raises(ValueError, match="invalid topic prefix"):
            make_filter(prefix)


def test_valid_names_make_the_documented_topics() -> None:
    assert wire.telemetry_topic("site/plant", "boiler 1") == "site/plant/boiler 1/telemetry"
    assert wire.drill_topic("plant", "a") == "plant/a/drill" and wire.alarm_topic("plant", "a") == "plant/a/alarm"
    assert wire.status_topic("plant", "m1") == "plant/_monitor/m1/status"
    assert wire.telemetry_filter("plant") == "plant/+/telemetry" and wire.drill_filter("plant") == "plant/+/drill"


@PROPERTY
@given(names)
def test_asset_of_inverts_telemetry_topic_and_the_topic_refuses_what_asset_of_would(name: str) -> None:
    if wire.valid_name(name):
        expected = name if name != wire.MONITOR_LEVEL else Rejection("bad_topic", f"plant/{name}/telemetry")
        assert wire.asset_of(wire.telemetry_topic("plant", name), "plant") == expected
    else:
        with pytest.raises(ValueError, match="invalid asset name"):
            wire.telemetry_topic("plant", name)


def test_sparkplug_asset_names_of_up_to_three_levels_have_alarm_topics_and_filters_that_match() -> None:
    assert wire.alarm_topic("plant", "gw1/boiler") == "plant/gw1/boiler/alarm"
    for bad in ("a/b/c/d", "a//b", "a/_monitor", "a/+"):
        with pytest.raises(ValueError, match="invalid asset name"):
            wire.alarm_topic("plant", bad)
