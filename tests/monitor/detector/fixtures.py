"""Small synthetic histories and a tiny trained model for the detector tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from monitor import csvio
from monitor.detector import Detector, TrainSettings, train_table
from monitor.detector import model_folder as artefact

SENSORS = [f"s{i}" for i in range(6)]


def history(n: int, seed: int = 0, d: int = 6) -> np.ndarray:
    """Correlated, autocorrelated data: two AR(1) latents mixed into d sensors plus noise."""
    rng = np.random.default_rng(seed)
    lat = np.zeros((n, 2))
    for t in range(1, n):
        lat[t] = 0.9 * lat[t - 1] + rng.normal(0, 0.3, 2)
    mix = np.random.default_rng(99).normal(0, 1, (2, d))
    return lat @ mix + rng.normal(0, 0.1, (n, d)) + np.arange(d) * 10.0


def write_csv(
    path: Path, values: np.ndarray, sensors: list[str] | None = None, times: bool = True, delimiter: str = ","
) -> Path:
    sensors = sensors or SENSORS[: values.shape[1]]
    with open(path, "w") as f:
        f.write(delimiter.join((["timestamp"] if times else []) + sensors) + "\n")
        for i, row in enumerate(values):
            cells = [f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z"] if times else []
            f.write(delimiter.join(cells + [repr(float(v)) for v in row]) + "\n")
    return path


TINY = TrainSettings(seed=0, window=4, folds=2, max_epochs=8)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder trained on 400 rows of synthetic history (a few seconds)."""
    d = tmp_path_factory.mktemp("tiny")
    data = write_csv(d / "hist.csv", history(400))
    train_table(csvio.read_table(data), TINY, d / "model")
    return d / "model"


@pytest.fixture
def detector(tiny_model: Path) -> Detector:
    return artefact.load(tiny_model)
