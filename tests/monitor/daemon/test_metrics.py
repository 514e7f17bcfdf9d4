"""The collector renders state at scrape time; closed label sets exist at 0; the fast decoder agrees with wire."""

from __future__ import annotations

import math
import shutil
import subprocess
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from monitor import wire
from monitor.daemon import LogSampler, metrics
from monitor.daemon.metrics import AssetStats, Collector, Histogram, State
from monitor.wire import RowDecoder

PROPERTY = settings(database=None, deadline=None, max_examples=300)


def registry(state: State) -> Any:
    reg = metrics.build_registry()
    reg.register(Collector(state))
    return reg


def test_every_closed_label_set_exists_at_zero_from_start_up() -> None:
    reg = registry(State())
    for reason in wire.REJECTION_REASONS:
        assert reg.get_sample_value("plantwatch_messages_rejected_total", {"reason": reason}) == 0.0
    for cb in metrics.CALLBACKS:
        assert reg.get_sample_value("plantwatch_callback_errors_total", {"callback": cb}) == 0.0
    for result in metrics.RELOAD_RESULTS:
        assert reg.get_sample_value("plantwatch_config_reloads_total", {"result": result}) == 0.0
    for stage in metrics.LAG_STAGES:
        assert reg.get_sample_value("plantwatch_scoring_lag_seconds_count", {"stage": stage}) == 0.0
    assert reg.get_sample_value("plantwatch_broker_connected") == 0.0
    assert reg.get_sample_value("plantwatch_queue_depth") == 0.0
    assert reg.get_sample_value("process_resident_memory_bytes") is not None  # process collectors too


def stats(asset: str, alarm: bool) -> AssetStats:
    a = AssetStats(
        asset,
        "m1",
        "abc123",
        ("T1", "T2", "P1"),
        messages=5,
        gaps=2,
        alarms=1,
        score=1.5,
        threshold=1.2,
        alarm=alarm,
        warming_up=False,
        last_ts=1700000000.0,
        top=(2, 0),
        contrib=np.array([0.5, 0.1, 1.4]),
    )
    return a


def test_the_collector_renders_each_asset_and_top_sensors_only_while_in_alarm() -> None:
    state = State()
    state.assets = {"boiler": stats("boiler", alarm=True), "pump": stats("pump", alarm=False)}
    reg = registry(state)
    for asset in ("boiler", "pump"):
        lab = {"asset": asset}
        assert reg.get_sample_value("plantwatch_messages_total", lab) == 5.0
        assert reg.get_sample_value("plantwatch_anomaly_score", lab) == 1.5
        assert reg.get_sample_value("plantwatch_threshold", lab) == 1.2
        assert reg.get_sample_value("plantwatch_alarms_total", lab) == 1.0
        assert reg.get_sample_value("plantwatch_sequence_gaps_total", lab) == 2.0
        assert reg.get_sample_value("plantwatch_last_message_timestamp_seconds", lab) == 1700000000.0
        assert reg.get_sample_value("plantwatch_asset_warming_up", lab) == 0.0
        assert reg.get_sample_value("plantwatch_model_info", {**lab, "model": "m1", "version": "abc123"}) == 1.0
    assert reg.get_sample_value("plantwatch_alarm", {"asset": "boiler"}) == 1.0
    assert reg.get_sample_value("plantwatch_alarm", {"asset": "pump"}) == 0.0
    top = {"asset": "boiler", "sensor": "P1"}
    assert reg.get_sample_value("plantwatch_top_sensor_contribution", top) == 1.4
    assert reg.get_sample_value("plantwatch_top_sensor_contribution", {"asset": "boiler", "sensor": "T2"}) is None
    assert reg.get_sample_value("plantwatch_top_sensor_contribution", {"asset": "pump", "sensor": "P1"}) is None
    state.contributions = True  # the opt-in: every sensor of every asset
    assert reg.get_sample_value("plantwatch_top_sensor_contribution", {"asset": "pump", "sensor": "T2"}) == 0.1


def test_an_asset_not_yet_scored_has_counters_but_no_score() -> None:
    state = State()
    state.assets = {"new": AssetStats("new", "m", "v", ("a",))}
    reg = registry(state)
    assert reg.get_sample_value("plantwatch_messages_total", {"asset": "new"}) == 0.0
    assert reg.get_sample_value("plantwatch_asset_warming_up", {"asset": "new"}) == 1.0
    assert reg.get_sample_value("plantwatch_anomaly_score", {"asset": "new"}) is None


def test_histograms_count_values_into_le_buckets_like_prometheus() -> None:
    state = State()
    state.lag["receive"].observe_many(np.array([0.001, 0.002, 0.2, 100.0, -1.0]))
    state.batch.observe_many(np.array([1000.0]))
    reg = registry(state)
    get = reg.get_sample_value
    assert get("plantwatch_scoring_lag_seconds_bucket", {"stage": "receive", "le": "0.001"}) == 2.0  # -1 clamps to 0
    assert get("plantwatch_scoring_lag_seconds_bucket", {"stage": "receive", "le": "0.0025"}) == 3.0
    assert get("plantwatch_scoring_lag_seconds_bucket", {"stage": "receive", "le": "0.25"}) == 4.0
    assert get("plantwatch_scoring_lag_seconds_bucket", {"stage": "receive", "le": "+Inf"}) == 5.0
    assert get("plantwatch_scoring_lag_seconds_count", {"stage": "receive"}) == 5.0
    assert math.isclose(get("plantwatch_scoring_lag_seconds_sum", {"stage": "receive"}), 100.203)
    assert get("plantwatch_batch_size_bucket", {"le": "1000.0"}) == 1.0
    assert get("plantwatch_batch_size_bucket", {"le": "500.0"}) == 0.0


def test_the_exposition_passes_promtool_check_metrics() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (bash tests/run installs it)")
    state = State()
    state.assets = {"boiler": stats("boiler", alarm=True)}
    state.lag["source"].observe_many(np.array([0.01]))
    text = generate_latest(registry(state))
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()


def test_histogram_cumulative_counts_are_monotone() -> None:
    h = Histogram((1.0, 2.0, 3.0))
    h.observe_many(np.array([3.0, 0.5, 2.5, 9.0]))
    assert h.cumulative() == [1, 1, 3, 4] and h.count == 4


def test_the_log_sampler_lets_one_line_per_key_through_each_period_and_counts_the_rest() -> None:
    s = LogSampler(10.0)
    assert s.take("a", now=0.0) == 0
    assert [s.take("a", now=t) for t in (1.0, 2.0, 3.0)] == [None, None, None]
    assert s.take("b", now=3.0) == 0
    assert s.take("a", now=10.5) == 3
    assert s.take("a", now=11.0) is None


SENSORS = ["a", "b", "c"]
DECODER = RowDecoder(SENSORS)
scalars = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**63), 2**64 - 1),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
docs = st.fixed_dictionaries(
    {},
    optional={
        "ts": scalars,
        "seq": scalars,
        "values": st.one_of(scalars, st.dictionaries(st.sampled_from([*SENSORS, "d"]), scalars, max_size=4)),
        "extra": scalars,
    },
)


@PROPERTY
@given(docs)
def test_the_fast_row_decoder_gives_exactly_what_wire_decode_row_gives(doc: dict[str, Any]) -> None:
    payload = orjson.dumps(doc)
    fast, slow = np.full(3, -7.0), np.full(3, -7.0)
    got, want = DECODER.decode(payload, fast), wire.decode_row(payload, DECODER.index, slow)
    if isinstance(want, wire.Rejection):
        assert isinstance(got, wire.Rejection) and got.reason == want.reason
    else:
        assert got == want and type(got[0]) is float
        assert np.array_equal(fast, slow)


@PROPERTY
@given(st.binary(max_size=64))
def test_the_fast_row_decoder_agrees_on_arbitrary_bytes(payload: bytes) -> None:
    got = DECODER.decode(payload, np.zeros(3))
    want = wire.decode_row(payload, DECODER.index, np.zeros(3))
    assert type(got) is type(want) and (
        got == want if not isinstance(want, wire.Rejection) else got.reason == want.reason
    )


def test_the_fast_path_takes_sensors_in_the_model_order_and_falls_back_for_other_orders() -> None:
    out = np.zeros(3)
    assert DECODER.decode(b'{"ts":1,"seq":2,"values":{"a":1,"b":2.5,"c":-3}}', out) == (1.0, 2)
    assert out.tolist() == [1.0, 2.5, -3.0]
    assert DECODER.decode(b'{"ts":1.5,"seq":3,"values":{"c":3,"a":1,"b":2}}', out) == (1.5, 3)
    assert out.tolist() == [1.0, 2.0, 3.0]
    assert DECODER.decode(b'{"ts":1,"seq":3,"values":{"a":true,"b":2,"c":3}}', out).reason == "non_numeric"  # type: ignore[union-attr]
