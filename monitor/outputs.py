"""Output paths checked before the work starts, so minutes of training or scoring never end in a traceback.

A command that writes a file or a folder calls :func:`check_file` or
:func:`check_folder` first: a missing parent folder, a folder where a file
is wanted (or the reverse), a file in the way of a folder to create, or a
folder we may not write into is one :class:`InputError` line naming the
flag and the path (exit 2).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError


def _writable_dir(folder: Path, flag: str, path: Path) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {path}: cannot write into {folder} (permission denied)")


def check_file(path: str | Path, flag: str) -> Path:
    """A file to (over)write: not a folder, in an existing folder we may write into."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{flag} {p}: is a folder; give a file name (e.g. {p / 'out.csv'})")
    parent = p.parent
    if not parent.exists():
        raise InputError(f"{flag} {p}: folder {parent} does not exist (create it first)")
    if not parent.is_dir():
        raise InputError(f"{flag} {p}: {parent} is a file, not a folder")
    if p.exists() and not os.access(p, os.W_OK):
        raise InputError(f"{flag} {p}: cannot overwrite it (permission denied)")
    _writable_dir(parent, flag, p)
    return p


def check_folder(path: str | Path, flag: str, *, exists_ok: bool = True, force: bool = False) -> Path:
    """A folder to create (with its parents) or to write into.

    ``exists_ok=False``: an existing one is refused unless ``force`` (a model
    or GAN folder is replaced whole, never merged).
    """
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise InputError(f"{flag} {p}: exists and is a file, not a folder")
        if not exists_ok and not force:
            raise InputError(f"{flag} {p}: already exists (use --force to overwrite)")
        _writable_dir(p, flag, p)
        return p
    ancestor = p.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{flag} {p}: {ancestor} is a file, not a folder")
    _writable_dir(ancestor, flag, p)
    return p
