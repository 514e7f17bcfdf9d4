"""Dependencies run one way: the rules of STYLE.md, enforced by reading imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH_ALLOWED = {"model", "training", "scoring", "artefact", "folder", "offline", "worker", "calibration"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_monitor_never_imports_the_simulator() -> None:
    """Only the CLI registry knows both packages."""
    offenders = [p.name for p in (ROOT / "monitor").glob("*.py")
                 if p.name != "cli.py" and any(n.split(".")[0] == "simulator" for n in _imports(p))]
    assert offenders == []


def test_torch_only_in_model_code() -> None:
    """torch is imported only by the model, training, scoring, artefact (and its folder format) and GAN modules."""
    offenders = []
    for p in (ROOT / "monitor").glob("*.py"):
        if p.stem not in TORCH_ALLOWED and any(n.split(".")[0] == "torch" for n in _imports(p)):
            offenders.append(str(p.relative_to(ROOT)))
    for p in (ROOT / "simulator").rglob("*.py"):
        if "gan" not in p.parts and any(n.split(".")[0] == "torch" for n in _imports(p)):
            offenders.append(str(p.relative_to(ROOT)))
    assert offenders == []


def test_the_monitor_command_loads_no_simulator_module() -> None:
    """Importing the daemon (what 'plantwatch monitor' runs) pulls in nothing from the simulator."""
    code = "import sys, monitor.daemon; print([m for m in sys.modules if m.split('.')[0] == 'simulator'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_command_explains_itself_with_examples() -> None:
    """'plantwatch --help' and each 'plantwatch <cmd> --help' print examples."""
    from monitor.cli import build_parser

    parser = build_parser()
    assert "examples:" in parser.format_help()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():  # type: ignore[union-attr]
        assert "examples:" in p.format_help(), name
