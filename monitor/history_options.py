"""The history-reading flags every command shares, turned into what :mod:`monitor.csvio` takes.

``--sensors``/``--exclude`` (:mod:`monitor.columns`) and ``--missing``
(:mod:`monitor.missing`) mean the same in ``train``, ``score`` and
``simulate --replay``; this is the one place that reads them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import columns, csvio, missing
from .errors import InputError


def layout(path: str | Path, args: argparse.Namespace) -> csvio.Layout:
    """The file's layout with the sensors ``--sensors``/``--exclude`` pick."""
    return csvio.read_layout(
        path, columns.patterns(getattr(args, "sensors", None)), columns.patterns(getattr(args, "exclude", None))
    )


def filler(args: argparse.Namespace, n_sensors: int) -> missing.Filler | None:
    """The ``--missing`` policy as a filler for ``n_sensors`` columns (None: ``fail``, gaps are errors)."""
    text = getattr(args, "missing", "fail") or "fail"
    try:
        limit = missing.parse(text)
    except ValueError:
        raise InputError(f"--missing {text!r}: must be fail, drop, hold or hold:N with N >= 1") from None
    return None if limit == missing.FAIL else missing.Filler([limit] * n_sensors)


def read_table(path: str | Path, args: argparse.Namespace) -> tuple[csvio.Table, missing.Filler | None]:
    """The whole file as ``train`` and ``replay`` read it, and the filler (for its closing summary)."""
    lay = layout(path, args)
    gaps = filler(args, len(lay.sensors))
    return csvio.read_table(lay.path, layout=lay, gaps=gaps), gaps
