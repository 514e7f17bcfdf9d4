"""The house rules of STYLE.md and CONTRIBUTING.md, enforced by reading imports (folders, not lists of names)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("monitor", "simulator")


def _sources() -> Iterator[Path]:
    for top in PACKAGES:
        yield from sorted((ROOT / top).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, top_level_only: bool = False) -> list[tuple[str, list[str]]]:
    """(absolute module, names taken from it) for the imports in ``path``, relative ones resolved.

    ``top_level_only``: only those run when the module is imported (not the lazy ones inside functions).
    """
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    tree = ast.parse(path.read_text())
    out: list[tuple[str, list[str]]] = []
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((module, [a.name for a in node.names]))
    return out


def _public(package: str) -> set[str]:
    """The names a package declares in its ``__all__`` (read, not imported)."""
    init = ROOT / package.replace(".", "/") / "__init__.py"
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


def _subpackages() -> list[str]:
    return sorted(_module_name(p) for top in PACKAGES for p in (ROOT / top).glob("*/__init__.py"))


def test_every_package_declares_its_public_names() -> None:
    """Each package's __init__ has an __all__ naming only what it defines or imports."""
    for package in [*PACKAGES, *_subpackages()]:
        names = _public(package)
        assert names, f"{package}/__init__.py declares no __all__"


def test_other_packages_use_only_public_names() -> None:
    """Code outside a subpackage imports only the names (or public submodules) its __all__ declares."""
    offenders = []
    for path in _sources():
        here = _module_name(path)
        for module, names in _imports(path):
            for pkg in _subpackages():
                if here == pkg or here.startswith(pkg + "."):
                    continue
                public = _public(pkg)
                if module.startswith(pkg + "."):
                    sub = module[len(pkg) + 1 :].split(".")[0]
                    if sub not in public:
                        offenders.append(f"{here}: {module}")
                elif module == pkg:
                    offenders.extend(f"{here}: {pkg}.{n}" for n in names if n not in public)
    assert offenders == []


def test_the_detector_knows_nothing_of_the_daemon_commands_or_mqtt() -> None:
    offenders = [
        f"{_module_name(p)}: {m}"
        for p in (ROOT / "monitor/detector").rglob("*.py")
        for m, _ in _imports(p)
        if m.split(".")[:2]
        in (
            ["monitor", "daemon"],
            ["monitor", "commands"],
            ["monitor", "mqtt"],
            ["monitor", "cli"],
            ["monitor", "config"],
            ["monitor", "wire"],
        )
    ]
    assert offenders == []


def test_torch_only_under_the_detector_and_the_gan() -> None:
    allowed = (ROOT / "monitor/detector", ROOT / "simulator/gan")
    offenders = [
        str(p.relative_to(ROOT))
        for p in _sources()
        if not any(p.is_relative_to(a) for a in allowed)
        and any(m.split(".")[0] in ("torch", "safetensors") for m, _ in _imports(p))
    ]
    assert offenders == []


def test_the_monitor_never_imports_the_simulator() -> None:
    """Only the CLI, which reads both packages' command lists, knows both."""
    offenders = [
        _module_name(p)
        for p in (ROOT / "monitor").rglob("*.py")
        if p != ROOT / "monitor/cli.py" and any(m.split(".")[0] == "simulator" for m, _ in _imports(p))
    ]
    assert offenders == []


def test_plantwatch_monitor_loads_no_simulator_code_and_no_gan() -> None:
    """What 'plantwatch monitor' imports: the daemon loads no simulator module; the CLI only the command lists."""
    code = "import sys, monitor.daemon; print(sorted(m for m in sys.modules if m.split('.')[0] == 'simulator'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
    code = (
        "import sys; from monitor import cli; from monitor.commands import resolve; "
        "args = cli.build_parser().parse_args(['monitor', '--model', 'm']); resolve(args.handler); "
        "print(sorted(m for m in sys.modules if m.startswith('simulator.') and not m.endswith('.cli')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() in ("[]", "['simulator.drill', 'simulator.gan']"), out


def test_no_import_loops_between_modules() -> None:
    """Module-level imports form no cycle (a handler imported at run time is a string, not an import)."""
    modules = {_module_name(p) for p in _sources()}
    graph: dict[str, set[str]] = {}
    for path in _sources():
        deps = set()
        for module, names in _imports(path, top_level_only=True):
            deps.update(c for c in [module, *(f"{module}.{n}" for n in names)] if c in modules)
        graph[_module_name(path)] = deps
    cycles = [
        f"{a} <-> {b}"
        for a in graph
        for b in graph[a]
        if a in graph.get(b, set()) and a < b and not (b.startswith(a + ".") or a.startswith(b + "."))
    ]  # a package and its own modules
    assert cycles == []


def test_every_command_explains_itself_with_examples() -> None:
    """'plantwatch --help' and each 'plantwatch <cmd> --help' print examples."""
    import argparse

    from monitor.cli import build_parser

    parser = build_parser()
    assert "examples:" in parser.format_help()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        assert "examples:" in p.format_help(), name
