"""A model store: versions of one model side by side, and pointers that say which one runs.

Layout (one store per model name)::

    models/boiler/v0001/          a model folder (manifest.json + weights.safetensors)
    models/boiler/v0002/
    models/boiler/current   -> v0002   the champion the monitor scores with
    models/boiler/challenger -> v0003  optional: scored beside it in shadow, never alarms
    models/boiler/history.jsonl        every promotion and rollback: when, from, to, who, why

Pointers are relative symlinks replaced by ``rename`` (atomic: a reader sees
the old version or the new one, never none), then the folder is fsynced.
Versions are never rewritten, so the one a promotion replaced stays for
rollback. A config may name the store (``models/boiler``) or a version
folder; a plain model folder that is no store keeps working.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ArtefactError

CURRENT = "current"
CHALLENGER = "challenger"
HISTORY = "history.jsonl"
_VERSION = re.compile(r"^v(\d{4,})$")


@dataclass(frozen=True)
class Change:
    """One switch of a pointer, as written to ``history.jsonl``."""

    action: str  # "initial", "promote", "rollback"
    to: str
    before: str | None
    at: float
    by: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "to": self.to,
            "from": self.before,
            "at": self.at,
            "by": self.by,
            "reason": self.reason,
        }


def is_store(path: str | Path) -> bool:
    """A folder holding a ``current`` pointer or ``vNNNN`` versions (not a model folder itself)."""
    p = Path(path)
    if not p.is_dir() or (p / "manifest.json").exists():
        return False
    return os.path.islink(p / CURRENT) or bool(versions(p))


def versions(store: str | Path) -> list[str]:
    """The store's versions, oldest first."""
    p = Path(store)
    if not p.is_dir():
        return []
    found = [(int(m.group(1)), e.name) for e in p.iterdir() if (m := _VERSION.match(e.name)) and e.is_dir()]
    return [name for _, name in sorted(found)]


def pointer(store: str | Path, which: str = CURRENT) -> str | None:
    """The version ``which`` points to, or None."""
    link = Path(store) / which
    if not os.path.islink(link):
        return None
    return os.path.basename(os.readlink(link))


def resolve(path: str | Path) -> Path:
    """The model folder to load for a configured path: a store's current version, else the path itself."""
    p = Path(path)
    if not is_store(p):
        return p
    if pointer(p, CURRENT) is None:
        raise ArtefactError(
            f"{p}: a model store with no current version; make one with 'plantwatch models promote {p} VERSION'"
        )
    return p / CURRENT


def challenger(path: str | Path) -> Path | None:
    """The challenger folder of the store a configured path belongs to, if one is set."""
    store = name_and_version(path)
    if store is None:
        return None
    folder = Path(store[2]) / CHALLENGER
    return folder if pointer(folder.parent, CHALLENGER) is not None else None


def name_and_version(path: str | Path) -> tuple[str, str, Path] | None:
    """(model name, version, store) when ``path`` is a store, its ``current``/``challenger`` or a version of one."""
    p = Path(path)
    if is_store(p):
        v = pointer(p, CURRENT)
        return (p.resolve().name, v, p) if v is not None else None
    parent = p.parent
    if p.name in (CURRENT, CHALLENGER) and os.path.islink(p):
        v = pointer(parent, p.name)
        return (parent.resolve().name, v, parent) if v is not None else None
    if _VERSION.match(p.name) and is_store(parent):
        return parent.resolve().name, p.name, parent
    return None


def next_version(store: str | Path) -> str:
    """The name the next version gets (one more than the newest)."""
    have = versions(store)
    n = int(_VERSION.match(have[-1]).group(1)) + 1 if have else 1  # type: ignore[union-attr]
    return f"v{n:04d}"


def history(store: str | Path) -> list[dict[str, Any]]:
    """Every change written to the store's history, oldest first (unreadable lines skipped)."""
    path = Path(store) / HISTORY
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            if isinstance(doc, dict):
                out.append(doc)
    return out


def lineage(store: str | Path) -> list[str]:
    """The versions that were current, in order, as rollbacks left them (a rollback undoes the last promotion)."""
    stack: list[str] = []
    for change in history(store):
        to = str(change.get("to", ""))
        if change.get("action") == "rollback":
            while stack and stack[-1] != to:
                stack.pop()
            if not stack:
                stack.append(to)
        elif not stack or stack[-1] != to:
            stack.append(to)
    return stack


def rollback_target(store: str | Path) -> str:
    """The version a rollback returns to: the one current before the last promotion still in force."""
    stack = lineage(store)
    now = pointer(store, CURRENT)
    if now is not None and (not stack or stack[-1] != now):
        stack.append(now)  # switched by hand: go back to what the history last had
    if len(stack) < 2:
        raise ArtefactError(f"{store}: nothing to roll back to (no earlier promotion in {HISTORY})")
    return stack[-2]


@contextlib.contextmanager
def locked(store: str | Path) -> Iterator[None]:
    """Held while a version is added or a pointer switched, so two trainers or promotions never interleave."""
    p = Path(store)
    p.mkdir(parents=True, exist_ok=True)
    with open(p / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def set_pointer(store: str | Path, which: str, version: str | None) -> None:
    """Point ``which`` at ``version`` atomically (a temporary symlink renamed over it); None removes it."""
    p = Path(store)
    link = p / which
    if version is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
    else:
        if not (p / version).is_dir():
            raise ArtefactError(f"{p}: no version {version} (have: {', '.join(versions(p)) or 'none'})")
        tmp = p / f".{which}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(version, tmp)
        os.replace(tmp, link)
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def record(store: str | Path, change: Change) -> None:
    """Append ``change`` to the history (fsynced: a promotion the monitor may act on is never forgotten)."""
    with open(Path(store) / HISTORY, "a") as f:
        f.write(json.dumps(change.to_dict(), sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def switch(store: str | Path, version: str, action: str, by: str, reason: str) -> Change:
    """Make ``version`` current and write why; the challenger pointer is dropped when it is the one promoted.

    The caller has checked that the version loads (see ``plantwatch models promote``).
    """
    before = pointer(store, CURRENT)
    change = Change(action, version, before, time.time(), by, reason)
    set_pointer(store, CURRENT, version)
    if pointer(store, CHALLENGER) == version:
        set_pointer(store, CHALLENGER, None)
    record(store, change)
    return change
