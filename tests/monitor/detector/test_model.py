"""The scaler: a long history is standardised a block at a time, to the same values."""

from __future__ import annotations

from unittest import mock

import numpy as np

from monitor.detector import model


def test_a_long_history_standardises_in_blocks_to_the_same_values() -> None:
    x = np.random.default_rng(0).normal(5.0, 3.0, size=(1000, 4))
    x[:, 2] = 7.0  # constant: zeroed
    scaler = model.Scaler.fit(x)
    whole = scaler.transform(x)
    with mock.patch.object(model, "TRANSFORM_ROWS", 64):
        blocks = scaler.transform(x)
    assert blocks.dtype == whole.dtype == np.float32
    np.testing.assert_array_equal(blocks, whole)
    assert not blocks[:, 2].any() and abs(float(blocks[:, 0].mean())) < 1e-6
