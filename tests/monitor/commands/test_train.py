"""``plantwatch train``'s --device and --max-seconds, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
import torch

from monitor.cli import main
from tests.monitor.detector.fixtures import history, write_csv

TRAIN = ["--window", "4", "--folds", "2"]


def test_device_cuda_without_a_gpu_is_one_clear_error_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_csv(tmp_path / "h.csv", history(300))
    with mock.patch.object(torch.cuda, "is_available", return_value=False):
        code = main(["train", "--data", str(data), "--out", str(tmp_path / "m"), "--device", "cuda", *TRAIN])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        f"plantwatch train: error: --device cuda: torch {torch.__version__} "
        f"({'a CPU-only build' if torch.version.cuda is None else f'built for CUDA {torch.version.cuda}'}) "
        "sees no CUDA GPU; use --device cpu, or --device auto to take a GPU only when there is one"
    ]
    assert not (tmp_path / "m").exists()


def test_device_cpu_trains_and_the_manifest_says_where(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "h.csv", history(300))
    out = tmp_path / "m"
    assert main(["train", "--data", str(data), "--out", str(out), "--device", "cpu", "--epochs", "3", *TRAIN]) == 0
    training = json.loads((out / "manifest.json").read_text())["training"]
    assert training["device"] == "cpu" and training["stopped_by_budget"] == 0


def test_max_seconds_stops_training_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A budget far below what 10^5 epochs take: every fit keeps its best weights and train says so."""
    data = write_csv(tmp_path / "h.csv", history(3000))
    out = tmp_path / "m"
    args = ["train", "--data", str(data), "--out", str(out), "--epochs", "100000", "--max-seconds", "0.6", *TRAIN]
    assert main(args) == 0
    err = capsys.readouterr().err
    training = json.loads((out / "manifest.json").read_text())["training"]
    stopped = training["stopped_by_budget"]
    assert stopped >= 1 and training["max_seconds"] == 0.6  # every fit, however many the calibration makes
    assert f"note: training stopped at the --max-seconds budget of 0.6s: {stopped} model fit(s) ended" in err
    assert training["seconds"] < 10


def test_max_seconds_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_csv(tmp_path / "h.csv", history(300))
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "m"), "--max-seconds", "0"]) == 2
    assert "--max-seconds must be > 0, got 0" in capsys.readouterr().err
