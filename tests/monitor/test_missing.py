"""The one missing-value policy of files and streams: fail, drop, hold[:N]."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitor.missing import Filler, limits, parse


def test_policies_parse_and_bad_ones_are_refused() -> None:
    assert (parse("FAIL"), parse("drop"), parse("hold:3"), parse(" hold ")) == (-1.0, 0.0, 3.0, math.inf)
    for bad in ("hold:0", "hold:-1", "hold:x", "keep", ""):
        with pytest.raises(ValueError):
            parse(bad)


def test_per_sensor_limits_take_the_first_matching_pattern() -> None:
    got = limits(["T1", "T2", "P1"], "fail", {"T1": "drop", "T*": "hold:4"})
    assert got.tolist() == [0.0, 4.0, -1.0]


def test_hold_reaches_back_n_rows_across_calls_and_drops_beyond() -> None:
    """The same stream cut in pieces fills the same values as in one piece."""
    x = np.array([[1.0], [np.nan], [np.nan], [np.nan], [5.0], [np.nan]])
    whole = x.copy()
    keep_whole = Filler([2.0]).apply(whole)
    f = Filler([2.0])
    parts = [x[:2].copy(), x[2:3].copy(), x[3:].copy()]
    keep_parts = np.concatenate([f.apply(p) for p in parts])
    assert keep_whole.tolist() == keep_parts.tolist() == [True, True, True, False, True, True]
    assert np.array_equal(np.concatenate(parts), whole, equal_nan=True)
    assert whole[:, 0].tolist()[:3] == [1.0, 1.0, 1.0] and whole[5, 0] == 5.0
    assert (f.filled_rows, f.dropped_rows) == (3, 1)


def test_a_row_without_an_earlier_value_or_under_drop_is_dropped() -> None:
    f = Filler([math.inf, 0.0])
    x = np.array([[np.nan, 1.0], [2.0, np.nan], [np.nan, 3.0]])
    assert f.apply(x).tolist() == [False, False, True] and x[2, 0] == 2.0
    assert f.summary() == "missing values: 1 row(s) with a held value (1 value(s) filled), 2 row(s) dropped"
