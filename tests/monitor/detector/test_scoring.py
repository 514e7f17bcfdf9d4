"""Residual statistics: padding a batch to a bounded set of shapes changes no row's result."""

from __future__ import annotations

import numpy as np
import torch

from monitor.detector.model import DAEConfig, DenoisingAE
from monitor.detector.scoring import ROW_BUCKET, raw_components


def test_each_row_scores_the_same_whatever_batch_it_comes_in() -> None:
    torch.manual_seed(0)
    d, w = 6, 4
    model = DenoisingAE(DAEConfig(n_sensors=d, window=w)).eval()
    x = np.random.default_rng(0).normal(size=(ROW_BUCKET + 5, d * w)).astype(np.float32)
    energy, shift = raw_components(model, x, d)
    assert energy.shape == shift.shape == (len(x), d)
    for n in (1, 7, ROW_BUCKET):  # fewer rows, other paddings
        e, s = raw_components(model, x[:n], d)
        np.testing.assert_allclose(e, energy[:n], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(s, shift[:n], rtol=1e-5, atol=1e-7)
