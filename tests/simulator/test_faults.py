"""Fault injection: each kind changes exactly the rows and sensors its ground truth names."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pytest

from monitor.errors import InputError
from simulator.faults import (
    DEFAULT_MAGNITUDE,
    KINDS,
    AdditivePattern,
    FaultSpec,
    FaultTarget,
    Injection,
    InjectionSet,
    bind_faults,
    parse_fault,
    periodic_faults,
)
from simulator.process import AssetProcess

SEED, K, N = 11, 12, 1400
START, DURATION = 500, 600
BLOCKS = (1, 13, 250, 7, 400)  # uneven blocks: the result must not depend on them


def run(specs: Sequence[FaultSpec], blocks: Sequence[int] = BLOCKS) -> tuple[np.ndarray, list[Injection]]:
    """N samples of asset01 with the specs injected, generated and injected block by block."""
    p = AssetProcess(SEED, 1, K)
    injections = bind_faults(specs, [FaultTarget.of(p)], SEED)
    faults = InjectionSet(injections)
    out, i, b = [], 0, 0
    while i < N:
        block = p.generate(min(blocks[b % len(blocks)], N - i))
        faults.apply(block, i)
        out.append(block)
        i, b = i + len(block), b + 1
    return np.vstack(out), injections


CLEAN = AssetProcess(SEED, 1, K).generate(N)
STD = AssetProcess(SEED, 1, K).sensor_std


@pytest.mark.parametrize("kind", KINDS)
def test_each_fault_changes_only_its_rows_and_sensors(kind: str) -> None:
    x, (inj,) = run([FaultSpec(kind, START, DURATION)])
    changed = x != CLEAN
    rows, cols = np.nonzero(changed.any(axis=1))[0], np.nonzero(changed.any(axis=0))[0]
    assert rows.min() == inj.start == START and rows.max() == inj.end == START + DURATION - 1
    assert list(cols) == sorted(inj.columns) and [x for x in inj.sensors] == [
        AssetProcess(SEED, 1, K).sensors[c] for c in inj.columns
    ]
    if kind not in ("spikes", "intermittent"):  # these leave some rows of the window alone
        assert changed[START : START + DURATION][:, inj.columns].all()


@pytest.mark.parametrize("kind", KINDS)
def test_block_boundaries_do_not_change_a_fault(kind: str) -> None:
    a, _ = run([FaultSpec(kind, START, DURATION)])
    b, _ = run([FaultSpec(kind, START, DURATION)], blocks=(N,))
    assert np.array_equal(a, b)


def window(x: np.ndarray, inj: Injection) -> np.ndarray:
    return x[inj.start : inj.end + 1][:, inj.columns]


def test_bias_shifts_by_magnitude_standard_deviations() -> None:
    x, (inj,) = run([FaultSpec("bias", START, DURATION, magnitude=-2.5)])
    assert np.allclose(window(x - CLEAN, inj), -2.5 * STD[inj.columns])


def test_drift_ramps_up_to_the_full_magnitude_at_the_last_row() -> None:
    x, (inj,) = run([FaultSpec("drift", START, DURATION, magnitude=5)])
    ramp = np.arange(1, DURATION + 1)[:, None] / DURATION * 5 * STD[inj.columns]
    assert np.allclose(window(x - CLEAN, inj), ramp)


def test_stuck_sensor_holds_its_last_good_value() -> None:
    x, (inj,) = run([FaultSpec("stuck", START, DURATION)])
    assert (window(x, inj) == CLEAN[START - 1, inj.columns]).all()


def test_noise_adds_zero_mean_noise_of_magnitude_standard_deviations() -> None:
    x, (inj,) = run([FaultSpec("noise", START, DURATION, magnitude=3)])
    d = window(x - CLEAN, inj) / STD[inj.columns]
    assert np.allclose(d.std(axis=0), 3, rtol=0.15) and np.allclose(d.mean(axis=0), 0, atol=0.5)


def test_spikes_are_rare_full_magnitude_jumps_at_both_ends_of_the_window() -> None:
    x, (inj,) = run([FaultSpec("spikes", START, DURATION, magnitude=8)])
    d = window(x - CLEAN, inj) / STD[inj.columns]
    hit = ~np.isclose(d, 0)
    assert np.allclose(np.abs(d[hit]), 8) and hit[0].all() and hit[-1].all()
    assert 0.03 < hit.mean() < 0.2 and (d > 1).any() and (d < -1).any()


def test_intermittent_bias_switches_on_and_off_and_is_on_at_both_ends() -> None:
    x, (inj,) = run([FaultSpec("intermittent", START, DURATION, magnitude=4)])
    on = ~np.isclose(window(x - CLEAN, inj), 0).all(axis=1)
    assert np.allclose(window(x - CLEAN, inj)[on], 4 * STD[inj.columns])
    assert on[0] and on[-1] and 0.3 < on.mean() < 0.7


def test_coefficient_fault_makes_the_sensors_swing_wider_and_slower() -> None:
    x, (inj,) = run([FaultSpec("coefficient", START, DURATION, magnitude=3)])
    d = np.abs(window(x - CLEAN, inj))
    assert (d[:5].mean(axis=0) < d[-300:].mean(axis=0)).all()  # diverges from normal
    assert (window(x, inj).std(axis=0) > window(CLEAN, inj).std(axis=0)).all()


def test_decorrelate_fault_makes_the_sensors_follow_an_independent_latent() -> None:
    x, (inj,) = run([FaultSpec("decorrelate", START, DURATION)])
    for j in range(len(inj.columns)):
        assert np.corrcoef(window(x, inj)[:, j], window(CLEAN, inj)[:, j])[0, 1] < 0.9
    assert (window(x - CLEAN, inj).std(axis=0) > 0.2 * STD[inj.columns]).all()


def test_additive_pattern_adds_its_array_in_standard_deviations() -> None:
    p = AssetProcess(SEED, 1, K)
    pattern = np.linspace(0, 3, 40)[:, None] * np.array([[1.0, -2.0]])
    inj = AdditivePattern("asset01", "g1", "gan:4", 100, p.sensors[2:4], [2, 3], pattern, p.sensor_std)
    x = p.generate(300)
    InjectionSet([inj]).apply(x, 0)
    assert inj.end == 139 and inj.magnitude == 6.0
    assert np.allclose((x - CLEAN[:300])[100:140, 2:4], pattern * STD[2:4])
    assert np.array_equal(np.delete(x, [2, 3], axis=1), np.delete(CLEAN[:300], [2, 3], axis=1))


def test_additive_pattern_refuses_a_pattern_of_the_wrong_width() -> None:
    with pytest.raises(ValueError, match="shape"):
        AdditivePattern("asset01", "g1", "gan:4", 0, ["TI101"], [0], np.zeros((5, 2)), STD)


def test_injection_set_reports_when_each_fault_starts_and_ends() -> None:
    p = AssetProcess(SEED, 1, K)
    faults = InjectionSet(bind_faults([parse_fault("bias@10+5"), parse_fault("noise@12+1")], [FaultTarget.of(p)], SEED))
    seen = [faults.apply(p.generate(4), i) for i in range(0, 20, 4)]
    names = [([s.kind for s in started], [e.kind for e in ended]) for started, ended in seen]
    assert names == [([], []), ([], []), (["bias"], []), (["noise"], ["bias", "noise"]), ([], [])]
    assert faults.pending == 0


def test_truth_carries_the_timestamps_sensors_and_magnitude() -> None:
    (inj,) = bind_faults(
        [parse_fault("drift@5+10:sensors=TI101,magnitude=2")], [FaultTarget("asset01", ["TI101"], np.ones(1))], 0
    )
    t = inj.truth(100.0, 109.0, "end")
    assert (t.asset, t.kind, t.sensors, t.start, t.end, t.magnitude, t.phase) == (
        "asset01",
        "drift",
        ("TI101",),
        100.0,
        109.0,
        2.0,
        "end",
    )


# ------------------------------------------------------------ specs


def test_a_full_spec_parses_and_prints_back_the_same() -> None:
    spec = parse_fault(" bias@30+60:asset=asset02,sensors=TI101;PI102,magnitude=-4.5 ")
    assert spec == FaultSpec("bias", 30, 60, "asset02", ("TI101", "PI102"), -4.5)
    assert parse_fault(str(spec)) == spec


def test_defaults_are_the_first_asset_a_seeded_choice_of_sensors_and_the_kind_magnitude() -> None:
    targets = [FaultTarget.of(AssetProcess(0, i, 20)) for i in (1, 2)]
    (a,) = bind_faults([parse_fault("noise@0+5")], targets, seed=3)
    (b,) = bind_faults([parse_fault("noise@0+5")], targets, seed=3)
    assert a.asset == "asset01" and 1 <= len(a.sensors) <= 3 and a.sensors == b.sensors
    assert a.magnitude == DEFAULT_MAGNITUDE["noise"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "expected KIND@START"),
        ("bias", "expected KIND@START"),
        ("wobble@1+2", "unknown kind 'wobble'"),
        ("gan:@1+2", "needs a class name"),
        ("bias@1", "expected START\\+DURATION"),
        ("bias@-1+2", "START must be a whole number"),
        ("bias@x+2", "START must be a whole number"),
        ("bias@1+0", "DURATION must be a whole number of samples >= 1"),
        ("bias@1+2.5", "DURATION must be a whole number"),
        ("bias@\u00b2+2", "START must be a whole number"),
        ("bias@1+2:speed=3", "unknown option 'speed'"),
        ("bias@1+2:magnitude", "needs a value"),
        ("bias@1+2:magnitude=1,magnitude=2", "given twice"),
        ("bias@1+2:magnitude=big", "magnitude must be a number"),
        ("bias@1+2:magnitude=nan", "finite"),
        ("bias@1+2:magnitude=0", "changes nothing"),
        ("noise@1+2:magnitude=-1", "must be > 0"),
        ("coefficient@1+2:magnitude=0", "must be > 0"),
        ("bias@1+2:sensors=TI101;;PI102", "distinct names"),
        ("bias@1+2:sensors=TI101;TI101", "distinct names"),
    ],
)
def test_bad_specs_are_refused_with_a_message_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_fault(text)


@pytest.mark.parametrize(
    "text, message",
    [
        ("bias@1+2:asset=asset09", "unknown asset 'asset09'; assets: asset01"),
        ("bias@1+2:sensors=XX999", "asset01 has no sensor 'XX999'; its sensors: TI101"),
    ],
)
def test_specs_naming_unknown_assets_or_sensors_are_refused(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        bind_faults([parse_fault(text)], [FaultTarget("asset01", ["TI101", "PI102"], np.ones(2))], 0)


def test_process_faults_need_a_simulated_process() -> None:
    with pytest.raises(InputError, match="replayed file has none"):
        bind_faults([parse_fault("coefficient@1+2")], [FaultTarget("d00", ["a", "b"], np.ones(2))], 0)


def test_periodic_faults_take_turns_over_assets_and_kinds_without_overlapping() -> None:
    specs = periodic_faults(["asset01", "asset02"], every_s=30, rate=2, seed=1, first_s=10, horizon_s=600)
    assert specs[0].start == 20 and [s.start for s in specs[:3]] == [20, 80, 140]
    assert [s.asset for s in specs[:4]] == ["asset01", "asset02", "asset01", "asset02"]
    assert {s.kind for s in specs[: len(KINDS)]} == set(KINDS)
    assert all(a.start + a.duration <= b.start for a, b in itertools.pairwise(specs))
    assert all(parse_fault(str(s)) == s for s in specs)
    assert specs == periodic_faults(["asset01", "asset02"], every_s=30, rate=2, seed=1, first_s=10, horizon_s=600)
