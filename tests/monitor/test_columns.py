"""--sensors / --exclude patterns, and columns that look like labels, ids or counters."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.columns import patterns, select, suspicious
from monitor.errors import InputError


def test_patterns_are_comma_separated_or_repeated() -> None:
    assert patterns(["T*,P1", " F? "]) == ["T*", "P1", "F?"] and patterns(None) == []


def test_select_keeps_file_order_and_a_pattern_matching_nothing_is_an_error() -> None:
    cols = ["P1", "T1", "T2", "anomaly"]
    assert select(cols, [], ["anomaly"], "f.csv") == ["P1", "T1", "T2"]
    assert select(cols, ["T*", "P*"], [], "f.csv") == ["P1", "T1", "T2"]
    with pytest.raises(InputError, match="--sensors 'X\\*' matches no column"):
        select(cols, ["X*"], [], "f.csv")
    with pytest.raises(InputError, match="leave no sensor"):
        select(cols, ["T*"], ["T*"], "f.csv")


def test_labels_flags_counters_and_constants_are_named_but_real_sensors_are_not() -> None:
    n = 200
    rng = np.random.default_rng(0)
    x = np.column_stack(
        [
            rng.normal(50, 2, n),  # a sensor
            np.round(rng.normal(50, 2, n)),  # a sensor recorded in whole units
            (np.arange(n) % 20 == 0).astype(float),  # a flag
            np.arange(n, dtype=float) * 3 + 7,  # an id
            np.full(n, 4.2),  # constant
        ]
    )
    found = dict(suspicious(["T", "L", "flag", "id", "c"], x))
    assert set(found) == {"flag", "id", "c"}
