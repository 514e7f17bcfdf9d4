"""Residual statistics: padding, chunking and threading a batch change no row's result."""

from __future__ import annotations

import os

import numpy as np
import torch

from monitor.detector.model import DAEConfig, DenoisingAE, single_thread, threads_for
from monitor.detector.scoring import ROW_BUCKET, ROW_CHUNK, raw_components


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


def test_a_backlog_batch_is_chunked_and_threaded_without_changing_a_row() -> None:
    """Rows beyond one chunk, scored with more threads, match the same rows scored a few at a time."""
    torch.manual_seed(1)
    d, w = 5, 3
    model = DenoisingAE(DAEConfig(n_sensors=d, window=w)).eval()
    x = np.random.default_rng(1).normal(size=(2 * ROW_CHUNK + 37, d * w)).astype(np.float32)
    single_thread()
    energy, shift = raw_components(model, x, d)
    assert torch.get_num_threads() == 1  # the daemon's worker stays single-threaded between batches
    for at in (0, ROW_CHUNK - 3, 2 * ROW_CHUNK):  # across chunk boundaries, in small batches
        e, s = raw_components(model, x[at : at + 40], d)
        np.testing.assert_allclose(e, energy[at : at + 40], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(s, shift[at : at + 40], rtol=1e-4, atol=1e-6)


def test_more_threads_only_for_big_batches_of_a_single_threaded_caller() -> None:
    single_thread()
    seen = []
    for rows in (10, 1024):
        with threads_for(rows):
            seen.append(torch.get_num_threads())
        assert torch.get_num_threads() == 1
    assert seen[0] == 1
    cores = len(os.sched_getaffinity(0))
    assert seen[1] == (min(cores, 4) if cores >= 2 else 1)  # 1024 rows: 8 chunks' worth, capped at 4 threads
    torch.set_num_threads(3)  # a caller that chose its own count (training) is left alone
    with threads_for(4096):
        assert torch.get_num_threads() == 3
    single_thread()
