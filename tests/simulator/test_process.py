"""The simulated process: deterministic, realistic enough to need a real detector, fast."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from simulator.process import MAX_SENSORS, MIN_SENSORS, AssetProcess, make_assets


def test_same_seed_gives_the_same_data_and_another_seed_does_not() -> None:
    a = AssetProcess(7, 1, 20).generate(500)
    assert np.array_equal(a, AssetProcess(7, 1, 20).generate(500))
    assert not np.allclose(a, AssetProcess(8, 1, 20).generate(500))
    assert not np.allclose(a, AssetProcess(7, 2, 20).generate(500))


def test_block_sizes_do_not_change_the_data() -> None:
    whole = AssetProcess(3, 2).generate(2651)
    p = AssetProcess(3, 2)
    parts = [p.generate(n) for n in (1, 7, 900, 0, 1100, 591)] + [p.step()[None, :] for _ in range(52)]
    assert np.array_equal(whole, np.vstack(parts))


def test_default_sensor_count_is_drawn_per_asset_and_override_is_exact() -> None:
    counts = [a.n_sensors for a in make_assets(8, seed=0)]
    assert all(12 <= k <= 40 for k in counts) and len(set(counts)) > 1
    assert AssetProcess(0, 1, MIN_SENSORS).n_sensors == MIN_SENSORS
    assert AssetProcess(0, 1, MAX_SENSORS).n_sensors == MAX_SENSORS


@pytest.mark.parametrize("k", [MIN_SENSORS - 1, MAX_SENSORS + 1, 0])
def test_sensor_counts_outside_the_allowed_range_are_refused(k: int) -> None:
    with pytest.raises(ValueError, match="8-60"):
        AssetProcess(0, 1, k)


def test_sensors_are_unique_instrument_tags_in_engineering_units() -> None:
    p = AssetProcess(1, 1, 60)
    assert len(set(p.sensors)) == 60 and all(re.fullmatch(r"(TI|PI|FI|LI)1\d\d", s) for s in p.sensors)
    x = p.generate(5000)
    assert np.isfinite(x).all()
    ranges = {"TI": (30, 450), "PI": (0.5, 40), "FI": (5, 1300), "LI": (10, 100)}
    for j, name in enumerate(p.sensors):
        lo, hi = ranges[name[:2]]
        assert lo < x[:, j].min() and x[:, j].max() < hi, name


def test_normal_data_is_correlated_and_autocorrelated() -> None:
    x = AssetProcess(2, 1, 30).generate(4000)
    corr = np.corrcoef(x.T)[np.triu_indices(30, 1)]
    lag1 = [np.corrcoef(x[:-1, j], x[1:, j])[0, 1] for j in range(30)]
    assert (np.abs(corr) > 0.6).sum() >= 10
    assert np.median(lag1) > 0.8


def test_every_operating_mode_shows_up_within_a_few_thousand_samples() -> None:
    for p in make_assets(4, seed=5):
        p.generate(6000)
        assert p.trace is not None
        sp = p.trace.setpoint
        settled = sp[1:][np.linalg.norm(np.diff(sp, axis=0), axis=1) < 1e-4]
        plateaus: list[np.ndarray] = []
        for row in settled:
            if all(np.linalg.norm(row - c) > 0.1 for c in plateaus):
                plateaus.append(row)
        assert len(plateaus) == p.n_modes >= 2


def test_twenty_thousand_samples_of_forty_sensors_take_well_under_two_seconds() -> None:
    began = time.perf_counter()
    AssetProcess(0, 1, 40).generate(20000)
    assert time.perf_counter() - began < 2.0


def test_make_assets_names_assets_in_order_and_each_depends_only_on_its_index() -> None:
    assets = make_assets(3, seed=4, n_sensors=9)
    assert [a.name for a in assets] == ["asset01", "asset02", "asset03"]
    assert np.array_equal(assets[2].generate(50), AssetProcess(4, 3, 9).generate(50))


def test_slowdown_moves_every_pole_towards_one_and_keeps_the_process_stable() -> None:
    p = AssetProcess(0, 1)
    normal = p.coefficients()
    slowed = p.coefficients(3.0)
    for (a1, a2), (b1, b2) in zip(zip(*normal), zip(*slowed)):
        r0 = np.abs(np.roots([1, -a1, -a2])).max()
        r1 = np.abs(np.roots([1, -b1, -b2])).max()
        assert r0 < r1 < 1


def test_sensor_std_is_the_spread_of_normal_data() -> None:
    p = AssetProcess(0, 2, 10)
    x = AssetProcess(0, 2, 10).generate(6000)
    assert np.allclose(p.sensor_std, x.std(axis=0))
