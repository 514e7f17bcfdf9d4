"""What the documented recipes write, run from a clone, stays out of git."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

RECIPES = [ROOT / "README.md", ROOT / "deploy" / "drills" / "README.md"]


def _outputs() -> set[str]:
    """Every relative --out, --report and --to-csv path in the recipes' command lines."""
    found = set()
    for doc in RECIPES:
        for m in re.finditer(r"--(?:out|report|to-csv|plot) ([\w./-]+)", doc.read_text()):
            path = m.group(1)
            if not path.startswith(("/", "$", "..")):
                found.add(path.rstrip("/") + ("/x" if path.endswith("/") else ""))
    return found


def test_the_files_the_documented_recipes_write_are_git_ignored() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = sorted(_outputs())
    assert {"gans/tep", "gans/demo-asset03", "drill-report/x", "report/REPORT.json"} <= set(paths)
    proc = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True)
    assert sorted(proc.stdout.split()) == paths, f"not ignored: {sorted(set(paths) - set(proc.stdout.split()))}"
