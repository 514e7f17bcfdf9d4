"""What the champion and the challenger flagged on the same live rows, kept for ``plantwatch models compare``.

The worker scores an asset's rows with both models (see
:class:`~monitor.daemon.model_registry.LoadedModel.challenger`); here, per
asset, the rows each flagged (in alarm after its on/off delays), the rows
each alone flagged, and the spans each was in alarm are summed and appended
once a minute to ``<state_dir>/shadow-<instance>.jsonl``, one line per asset::

    {"asset": "boiler", "model": "boiler", "champion": "v0001", "challenger": "v0002",
     "from": 1764930000.0, "to": 1764930060.0, "rows": 60, "flagged": [3, 0], "alone": [3, 0],
     "spans": {"champion": [[1764930010.0, 1764930013.0]], "challenger": []}}

Timestamps are payload times, so a comparison covers the same rows for both
models whatever the monitor's own clock did. A line is a few hundred bytes per
asset and minute (about 0.5 MB per asset and year of shadowing).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import logs

log = logs.get("shadow")
FLUSH_EVERY_S = 60.0
ROLES = ("champion", "challenger")


@dataclass
class _Acc:
    """One asset's sums since the last line."""

    name: str
    champion: str
    challenger: str
    first: float = float("nan")
    last: float = float("nan")
    rows: int = 0
    flagged: list[int] = field(default_factory=lambda: [0, 0])
    alone: list[int] = field(default_factory=lambda: [0, 0])
    spans: tuple[list[list[float]], list[list[float]]] = field(default_factory=lambda: ([], []))
    open: list[float | None] = field(default_factory=lambda: [None, None])  # start of a span still in alarm


def spans_of(flags: np.ndarray, ts: np.ndarray, start: float | None) -> tuple[list[list[float]], float | None]:
    """The alarm spans ``[first flagged ts, ts of the first row after]`` that end in these rows, and the start
    of one still open after them (``start``: the one open before them).

    >>> spans_of(np.array([0, 1, 1, 0, 1]), np.array([1.0, 2, 3, 4, 5]), None)
    ([[2.0, 4.0]], 5.0)
    >>> spans_of(np.array([1, 0]), np.array([7.0, 8.0]), 3.0)
    ([[3.0, 8.0]], None)
    """
    f = flags.astype(bool)
    if start is None and not f.any():
        return [], None
    padded = np.concatenate([[start is not None], f])
    change = np.flatnonzero(padded[:-1] != padded[1:]).tolist()  # row i differs from the one before it
    out = []
    for i in change:
        if f[i]:
            start = float(ts[i])
        else:
            out.append([start if start is not None else float(ts[i]), float(ts[i])])
            start = None
    return out, start


class ShadowLog:
    """Per asset sums of a champion/challenger pair, appended to the state directory every minute."""

    def __init__(self, folder: str | Path | None, instance: str, every: float = FLUSH_EVERY_S) -> None:
        self.path = Path(folder) / f"shadow-{instance}.jsonl" if folder else None
        self.every = every
        self._acc: dict[str, _Acc] = {}
        self._next = time.monotonic() + every
        self._said = False

    def add(
        self,
        asset: str,
        name: str,
        versions: tuple[str, str],
        ts: np.ndarray,
        champion: np.ndarray,
        challenger: np.ndarray,
    ) -> None:
        """The same rows of ``asset`` as each model flagged them (``anomaly`` arrays)."""
        acc = self._acc.get(asset)
        if acc is None or (acc.champion, acc.challenger) != versions:
            if acc is not None:
                self._write([(asset, acc)])  # the pair changed (a promotion): its rows go in a line of their own
            acc = self._acc[asset] = _Acc(name, *versions)
        if acc.rows == 0:
            acc.first = ts.item(0)
        acc.last = ts.item(-1)
        acc.rows += len(ts)
        if acc.open[0] is None and acc.open[1] is None and not (champion.any() or challenger.any()):
            return  # the common case: neither in alarm, nothing to add up
        c, ch = champion.astype(bool), challenger.astype(bool)
        for k, f in enumerate((c, ch)):
            acc.flagged[k] += int(f.sum())
            closed, acc.open[k] = spans_of(f, ts, acc.open[k])
            acc.spans[k].extend(closed)
        acc.alone[0] += int((c & ~ch).sum())
        acc.alone[1] += int((ch & ~c).sum())

    def due(self) -> bool:
        return time.monotonic() >= self._next

    def flush(self) -> None:
        """Write a line per asset with rows since the last one (an open span is cut at its last row)."""
        self._next = time.monotonic() + self.every
        full = [(k, a) for k, a in self._acc.items() if a.rows]
        if full:
            self._write(full)
        for asset, acc in list(self._acc.items()):
            if acc.rows:
                still = [acc.last if o is not None else None for o in acc.open]
                self._acc[asset] = _Acc(acc.name, acc.champion, acc.challenger, open=still)

    def _write(self, accs: list[tuple[str, _Acc]]) -> None:
        if self.path is None:
            if not self._said:
                log.warning("shadow_not_kept", note="no state_dir: 'plantwatch models compare' has nothing to read")
                self._said = True
            return
        lines = []
        for asset, a in accs:
            spans = [s + ([[o, a.last]] if o is not None and o < a.last else []) for s, o in zip(a.spans, a.open)]
            doc = {
                "asset": asset,
                "model": a.name,
                "champion": a.champion,
                "challenger": a.challenger,
                "from": a.first,
                "to": a.last,
                "rows": a.rows,
                "flagged": a.flagged,
                "alone": a.alone,
                "spans": dict(zip(ROLES, spans)),
            }
            lines.append(json.dumps(doc, separators=(",", ":")) + "\n")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write("".join(lines))
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            log.error("shadow_not_written", path=str(self.path), reason=str(exc))
