"""``plantwatch models list|show|promote|rollback|shadow``: a model store's versions and which one runs.

Promotion and rollback check that the version loads (manifest seal, weights
hash, shapes) before the ``current`` pointer moves; a version that does not
is refused with one line (exit 2) and nothing changes. A running monitor
whose config names the store sees the pointer move within a second and
swaps the model between two batches, as on SIGHUP: no message is dropped.
"""

from __future__ import annotations

import argparse
import getpass
import os
from datetime import UTC, datetime
from pathlib import Path

from ..detector import Detector, load_model, model_store, read_manifest
from ..errors import InputError, PlantwatchError


def usage_command(args: argparse.Namespace) -> int:
    raise InputError("choose what to do: plantwatch models list | show | promote | rollback | shadow | compare")


def list_command(args: argparse.Namespace) -> int:
    root = Path(args.root)
    if model_store.is_store(root):
        _versions(root)
        return 0
    if not root.is_dir():
        raise InputError(f"{root}: no such folder (give a model store, or the folder holding stores)")
    stores = sorted(p for p in root.iterdir() if model_store.is_store(p))
    if not stores:
        print(f"{root}: no model stores (make one with 'plantwatch train --data CSV --store {root / 'NAME'}')")
        return 0
    for s in stores:
        cur, ch = model_store.pointer(s, model_store.CURRENT), model_store.pointer(s, model_store.CHALLENGER)
        n = len(model_store.versions(s))
        print(f"{s.name}: current {cur or '-'}, challenger {ch or '-'}, {n} version(s)  ({s})")
    return 0


def _versions(store: Path) -> None:
    cur, ch = model_store.pointer(store, model_store.CURRENT), model_store.pointer(store, model_store.CHALLENGER)
    print(f"{store}: current {cur or '-'}, challenger {ch or '-'}")
    for v in model_store.versions(store):
        role = "current" if v == cur else "challenger" if v == ch else ""
        print(f"  {v:<8} {role:<10} {_summary(store / v)}")


def _summary(folder: Path) -> str:
    try:
        m = read_manifest(folder)
    except PlantwatchError as exc:
        return f"UNREADABLE: {exc}"
    made = datetime.fromtimestamp((folder / "manifest.json").stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
    tr = m.get("training", {})
    return (
        f"{made}, {len(m.get('sensors', []))} sensors, {tr.get('rows', '?')} rows of {tr.get('data', '?')}, "
        f"threshold {m.get('calibration', {}).get('threshold', float('nan')):.3f}"
    )


def show_command(args: argparse.Namespace) -> int:
    store = _store(args.store)
    version = args.version or model_store.pointer(store, model_store.CURRENT)
    if version is None:
        raise InputError(f"{store}: no current version; name one")
    folder = store / version
    if not folder.is_dir():
        raise InputError(f"{store}: no version {version} (have: {', '.join(model_store.versions(store)) or 'none'})")
    try:
        m = read_manifest(folder)
    except PlantwatchError as exc:
        raise InputError(str(exc)) from None
    tr = m.get("training", {})
    print(f"{store.name} {version}  ({folder})")
    print(
        f"  sensors       {len(m['sensors'])}: {', '.join(m['sensors'][:20])}{' ...' if len(m['sensors']) > 20 else ''}"
    )
    print(f"  trained on    {tr.get('rows', '?')} rows of {tr.get('data', '?')} in {tr.get('seconds', '?')} s")
    print(f"  threshold     {m['calibration'].get('threshold', float('nan')):.4f}")
    print(f"  weights       sha256 {m['weights']['sha256'][:16]}")
    changes = [c for c in model_store.history(store) if c.get("to") == version or c.get("from") == version]
    for c in changes[-10:]:
        when = datetime.fromtimestamp(float(c.get("at", 0)), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        print(
            f"  {when}  {c.get('action')}: {c.get('from') or '-'} -> {c.get('to')} by {c.get('by')}: {c.get('reason')}"
        )
    return 0


def promote_command(args: argparse.Namespace) -> int:
    store = _store(args.store)
    with model_store.locked(store):
        if model_store.pointer(store, model_store.CURRENT) == args.version:
            print(f"{store}: {args.version} is already current; nothing changed")
            return 0
        _check_loads(store, args.version)
        change = model_store.switch(store, args.version, "promote", args.by or _login(), args.reason)
    print(f"{store}: promoted {change.before or '-'} -> {change.to}; a monitor using {store} swaps within a second")
    return 0


def rollback_command(args: argparse.Namespace) -> int:
    store = _store(args.store)
    with model_store.locked(store):
        try:
            target = model_store.rollback_target(store)
        except PlantwatchError as exc:
            raise InputError(str(exc)) from None
        _check_loads(store, target)
        change = model_store.switch(store, target, "rollback", args.by or _login(), args.reason)
    print(f"{store}: rolled back {change.before or '-'} -> {change.to}")
    return 0


def shadow_command(args: argparse.Namespace) -> int:
    store = _store(args.store)
    with model_store.locked(store):
        if args.stop:
            model_store.set_pointer(store, model_store.CHALLENGER, None)
            print(f"{store}: no challenger; the monitor stops scoring one within a second")
            return 0
        if args.version is None:
            raise InputError("name the VERSION to score in shadow (or --stop)")
        if args.version == model_store.pointer(store, model_store.CURRENT):
            raise InputError(f"{store}: {args.version} is the current version; a challenger is another one")
        challenger = _check_loads(store, args.version)
        current = model_store.pointer(store, model_store.CURRENT)
        if current is not None and (store / current).is_dir():
            champion = read_manifest(store / current)["sensors"]
            if list(challenger.sensors) != list(champion):
                raise InputError(
                    f"{store}: {args.version} reads other sensors than {current} "
                    f"({len(challenger.sensors)} vs {len(champion)}); a challenger scores the same rows"
                )
        model_store.set_pointer(store, model_store.CHALLENGER, args.version)
    print(f"{store}: {args.version} is the challenger; a monitor using {store} scores it in shadow within a second")
    return 0


def _store(path: str) -> Path:
    p = Path(path)
    if not model_store.is_store(p):
        raise InputError(
            f"{p}: not a model store (a folder of versions v0001, v0002, ... made by 'plantwatch train --store {p}')"
        )
    return p


def _check_loads(store: Path, version: str) -> Detector:
    """The version's detector; one line and exit 2 (nothing changed) when it is missing or does not load."""
    folder = store / version
    if not folder.is_dir():
        raise InputError(f"{store}: no version {version} (have: {', '.join(model_store.versions(store)) or 'none'})")
    try:
        return load_model(folder)
    except PlantwatchError as exc:
        raise InputError(f"{store}: {version} does not load, nothing changed: {exc}") from None


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "")
