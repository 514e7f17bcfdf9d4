"""Which columns of a history file are sensors: ``--sensors`` / ``--exclude`` patterns, and columns that look
like something else.

Real exports carry more than measurements: labels (``anomaly``, ``changepoint``),
row ids, counters, a status flag that never changed. Taken as sensors they
teach the model nonsense (a label column "explains" every fault in the
training data) and silently change what a replay publishes. So every command
that reads history takes glob patterns for the columns to keep (``--sensors``,
default all) and to leave out (``--exclude``), and ``train`` says which
columns it took and which look suspicious.

>>> select(["T1", "T2", "P1", "anomaly"], ["T*", "P1"], ["T2"], "x.csv")
['T1', 'P1']
>>> suspicious(["flag", "id", "T1"], np.array([[0.0, 1.0, 20.1], [1.0, 2.0, 20.4], [0.0, 3.0, 19.8]]))
[('flag', 'only 0 and 1 (a label or a flag?)'), ('id', 'increasing whole numbers (an id or a counter?)')]
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

import numpy as np

from .errors import InputError

#: at least this many distinct values before increasing whole numbers look like an id, not a slow level
_MIN_ID_VALUES = 3


def patterns(values: Sequence[str] | None) -> list[str]:
    """Command-line pattern lists: repeatable flags, each comma-separated (``--sensors 'T*,P*'``)."""
    return [p.strip() for v in values or () for p in v.split(",") if p.strip()]


def select(columns: Sequence[str], include: Sequence[str], exclude: Sequence[str], where: str) -> list[str]:
    """The columns kept by ``include`` (all when empty) minus ``exclude``, in file order.

    A pattern that matches no column is an error naming it (a typo would
    otherwise silently keep or drop everything), as is keeping nothing.
    """
    for flag, pats in (("--sensors", include), ("--exclude", exclude)):
        for p in pats:
            if not any(fnmatchcase(c, p) for c in columns):
                shown = ", ".join(columns[:12]) + (" ..." if len(columns) > 12 else "")
                raise InputError(f"{where}: {flag} {p!r} matches no column (columns: {shown})")
    kept = [
        c
        for c in columns
        if (not include or any(fnmatchcase(c, p) for p in include)) and not any(fnmatchcase(c, p) for p in exclude)
    ]
    if not kept:
        raise InputError(f"{where}: --sensors/--exclude leave no sensor column")
    return kept


def suspicious(sensors: Sequence[str], values: np.ndarray) -> list[tuple[str, str]]:
    """(column, why) for columns that look like labels, flags, ids, counters or are constant."""
    out = []
    for j, name in enumerate(sensors):
        v = values[:, j]
        lo, hi = float(v.min()), float(v.max())
        if lo == hi:
            out.append((name, f"constant ({lo:g}; the model ignores it)"))
        elif np.isin(v, (0.0, 1.0)).all():
            out.append((name, "only 0 and 1 (a label or a flag?)"))
        elif (v == np.round(v)).all() and (np.diff(v) >= 0).all() and len(np.unique(v)) >= _MIN_ID_VALUES:
            out.append((name, "increasing whole numbers (an id or a counter?)"))
    return out
