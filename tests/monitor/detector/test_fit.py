"""One network's fit: windows drawn per batch (bounded memory), the time budget, the device choice."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from monitor.detector.fit import STOP_BUDGET, STOP_EPOCHS, Budget, FitOptions, Progress, fit, resolve_device
from monitor.detector.model import DAEConfig
from monitor.detector.windows import WindowSet
from monitor.errors import InputError
from tests.monitor.detector.fixtures import history

ROOT = Path(__file__).resolve().parents[3]


def _z(n: int, d: int = 6, seed: int = 0) -> np.ndarray:
    x = history(n, seed=seed, d=d)
    return ((x - x.mean(0)) / x.std(0)).astype(np.float32)


def _weights(res_model: torch.nn.Module) -> list[np.ndarray]:
    return [v.detach().numpy().copy() for v in res_model.state_dict().values()]


def _materialised(z: np.ndarray, window: int, parts: list[tuple[int, int]]) -> np.ndarray:
    """The window matrix the sampler stands for, built the slow obvious way."""
    rows = [z[e - window + 1 : e + 1].reshape(-1) for a, b in parts for e in range(a + window - 1, b)]
    return np.asarray(rows, dtype=np.float32)


def test_window_set_gathers_the_windows_of_its_parts() -> None:
    """No window spans a cut-out block; each is its rows oldest first."""
    z = _z(60)
    parts = [(0, 20), (35, 60)]
    ws = WindowSet(z, 4, parts=parts)
    assert len(ws) == (20 - 3) + (25 - 3)
    np.testing.assert_array_equal(ws.gather(np.arange(len(ws))), _materialised(z, 4, parts))
    head, tail = ws.split_tail(5)
    assert len(head) == len(ws) - 5 and tail.ends.tolist() == ws.ends[-5:].tolist()
    assert len(ws.spread(7)) == 7 and ws.spread(7).ends[0] == ws.ends[0] and ws.spread(7).ends[-1] == ws.ends[-1]


def test_a_short_history_fits_as_from_a_window_matrix() -> None:
    """Drawn per batch or handed over built, the same windows give bit-identical weights (short histories
    train exactly as before the sampler existed)."""
    z = _z(300)
    cfg = DAEConfig(n_sensors=6, window=4, hidden=16, latent=4)
    opts = FitOptions(max_epochs=6)
    a = fit(WindowSet(z, 4), cfg, opts, seed=3)
    b = fit(_materialised(z, 4, [(0, 300)]), cfg, opts, seed=3)
    assert a.epochs == b.epochs == 6
    for x, y in zip(_weights(a.model), _weights(b.model)):
        np.testing.assert_array_equal(x, y)


def test_an_epoch_of_a_long_history_is_bounded_batches() -> None:
    """Every batch is at most max_batch windows and an epoch at most max_steps of them, however long the history."""
    z = _z(20_000, d=3)
    cfg = DAEConfig(n_sensors=3, window=2, hidden=8, latent=2)
    opts = FitOptions(max_epochs=2, max_batch=128, max_steps=5, max_val_windows=300)
    sizes: list[int] = []
    real = torch.nn.Module.__call__

    def spy(self: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.__class__.__name__ == "DenoisingAE":
            sizes.append(len(x))
        return real(self, x)  # type: ignore[no-any-return]

    with mock.patch.object(torch.nn.Module, "__call__", spy):
        fit(WindowSet(z, 2), cfg, opts, seed=0)
    # per epoch: 5 training batches of 128 and one validation pass of 300 spread windows
    assert sizes == [128] * 5 + [300] + [128] * 5 + [300]


MEMORY_PROBE = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from monitor.detector.fit import FitOptions, fit
    from monitor.detector.model import DAEConfig, single_thread
    from monitor.detector.scoring import stream_components
    from monitor.detector.windows import WindowSet
    single_thread()
    n, d, w = 250_000, 8, 64   # the full window matrix: n * w * d * 4 bytes = 512 MB
    z = np.random.default_rng(0).standard_normal((n, d), dtype=np.float32)
    cfg = DAEConfig(n_sensors=d, window=w, hidden=8, latent=2)
    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    warm = fit(WindowSet(z[:3000], w), cfg, FitOptions(max_epochs=1), seed=0)  # torch's code pages, allocator
    stream_components(warm.model, z, 0, 3000, w)
    before = rss_mb()
    fit(WindowSet(z, w), cfg, FitOptions(max_epochs=2), seed=0)
    fixed = fit(WindowSet(z, w, parts=[(0, n // 2), (n // 2 + 100, n)]), cfg, FitOptions(), seed=0, fixed_epochs=1)
    fitted = peak_mb() - before
    energy, shift = stream_components(fixed.model, z, 1000, n, w)  # scoring a long stretch of history
    print(fitted, peak_mb() - before, energy.shape[0])
    """
)


def test_training_on_a_long_history_never_builds_all_its_windows() -> None:
    """Fitting (early-stopping and fixed-epoch) and scoring 250,000 rows in windows of 64 x 8 sensors: the
    window matrix would be 512 MB; the process grows by far less (a batch, the validation sample, a scoring
    chunk, and the scores themselves: 32 MB)."""
    # One malloc arena per thread kind: under CPU contention glibc opens more arenas and the growth doubles
    # (80 MB alone, 237 MB once in a busy full run), which says nothing about windows being materialised.
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    fitted, scored, rows = proc.stdout.splitlines()[-1].split()
    assert int(rows) == 249_000
    # materialised windows grew it by +610 MB and unchunked scoring by +1515 MB: the bounds still catch both
    assert float(fitted) < 300, f"fitting grew the process by {float(fitted):.0f} MB"
    assert float(scored) < 450, f"fitting and scoring grew the process by {float(scored):.0f} MB"


def test_a_time_budget_ends_the_fit_and_says_so() -> None:
    z = _z(3000)
    cfg = DAEConfig(n_sensors=6, window=4, hidden=16, latent=4)
    opts = FitOptions(max_epochs=100_000, patience=100_000, budget=Budget(0.5, fits=2))
    res = fit(WindowSet(z, 4), cfg, opts, seed=0)
    assert res.stopped == STOP_BUDGET
    assert 1 <= res.epochs < 100_000 and res.seconds < 5
    assert opts.budget is not None and opts.budget.exhausted == 1
    free = fit(WindowSet(z, 4), cfg, FitOptions(max_epochs=3), seed=0)
    assert free.stopped == STOP_EPOCHS and free.epochs == 3


def test_budget_shares_what_is_left_among_the_fits_to_come() -> None:
    budget = Budget(100.0, fits=4)
    with mock.patch("time.monotonic", return_value=budget.started + 20.0):
        first = budget.deadline()  # 80 s left for 4 fits
    with mock.patch("time.monotonic", return_value=budget.started + 30.0):
        second = budget.deadline()  # the first ended early: 70 s for the 3 to come
    assert first == pytest.approx(budget.started + 20.0 + 20.0)
    assert second == pytest.approx(budget.started + 30.0 + 70.0 / 3)
    with pytest.raises(InputError, match="--max-seconds must be > 0"):
        Budget(0)


def test_device_cpu_and_auto_without_a_gpu_train_on_the_cpu() -> None:
    assert resolve_device("cpu").type == "cpu"
    with mock.patch.object(torch.cuda, "is_available", return_value=False):
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(InputError, match=r"--device cuda: .* sees no CUDA GPU; use --device cpu"):
            resolve_device("cuda")
    with pytest.raises(InputError, match="--device must be one of auto, cpu, cuda"):
        resolve_device("tpu")


def test_progress_eta_follows_early_stopping() -> None:
    """The bar's total is the epoch the fit would end at now (best + patience), not max_epochs."""
    seen: list[int] = []

    class Bar(Progress):
        def __call__(self, epoch: int, total: int, loss: float, val: float) -> None:
            seen.append(total)

    z = _z(400)
    cfg = DAEConfig(n_sensors=6, window=4, hidden=16, latent=4)
    fit(WindowSet(z, 4), cfg, FitOptions(max_epochs=300, patience=5), seed=0, progress=Bar("fit", 300, False))
    assert seen and max(seen) < 300 and seen[-1] == len(seen)
