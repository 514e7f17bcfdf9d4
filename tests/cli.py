"""Run ``plantwatch`` as a user does, in a subprocess, for tests that need a real model folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PLANTWATCH = [sys.executable, "-m", "monitor", "--log-level", "warning"]


def train(csv: Path, out: Path, epochs: int, window: int, folds: int = 2) -> Path:
    """``plantwatch train`` with a small budget; a failure shows train's own error output."""
    proc = subprocess.run(
        [
            *PLANTWATCH,
            "train",
            "--data",
            str(csv),
            "--out",
            str(out),
            "--epochs",
            str(epochs),
            "--folds",
            str(folds),
            "--window",
            str(window),
        ],
        timeout=180,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out
