"""The static checks, run by the test command like any test: lint, format, types, dead code.

Each runs the pinned tool from the test extra over the tree and shows what it
found; CONTRIBUTING.md says how to run one alone and fix what it reports.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREE = ["monitor", "simulator", "tests", "benchmarks", "deploy"]


def _run(*cmd: str) -> None:
    if shutil.which(cmd[0]) is None and cmd[0] != sys.executable:
        pytest.fail(f"{cmd[0]} is not installed: pip install -e '.[test]'")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-6000:]}{proc.stderr[-3000:]}"


def test_ruff_finds_nothing_to_lint() -> None:
    _run("ruff", "check", *TREE)


def test_the_tree_is_ruff_formatted() -> None:
    _run("ruff", "format", "--check", *TREE)


@pytest.mark.slow
def test_mypy_strict_passes() -> None:
    """mypy with the settings in pyproject.toml (strict, with the few relaxations it explains)."""
    _run(sys.executable, "-m", "mypy")


def test_vulture_finds_no_dead_code() -> None:
    """Unused functions, classes, attributes and variables; the allow-list in pyproject.toml says why each is kept."""
    _run("vulture")
