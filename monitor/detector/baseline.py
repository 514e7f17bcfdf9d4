"""An operating point the operator accepted: alarms relative to it, not to the training history.

After a fault or a deliberate change a plant may settle where it never ran in
the training history (a new valve position, a recalibrated transmitter). The
model keeps reconstructing the old normal, the residuals keep an offset, and
the alarm never ends: a threshold that learns only from unflagged samples
cannot learn a state it flags. Retraining takes history the plant does not
have yet. So the operator *accepts* the new point: the alarm clears at once,
the next ``rows`` samples are learned (no alarms while they are), and from
then on each sensor's mean residual over them is subtracted from its
residuals, so the score measures departures from the accepted point.

A window-mean residual ``m`` and mean squared residual ``q`` become
``m - offset`` and ``q - 2 offset m + offset**2`` (exact: both are means over
the same samples), so no model call changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: samples learned as the accepted operating point
ACCEPT_ROWS = 200


@dataclass
class Baseline:
    offset: np.ndarray | None = None  # (d,) residual offset of the accepted point (None: the training history's)
    learning: int = 0  # samples still to learn
    total: np.ndarray | None = None  # sum of the learned samples' mean residuals
    rows: int = 0  # samples learned so far

    def accept(self, n_sensors: int, rows: int = ACCEPT_ROWS) -> None:
        if rows < 1:
            raise ValueError(f"an accepted operating point needs >= 1 sample to learn, got {rows}")
        self.learning, self.total, self.rows = rows, np.zeros(n_sensors), 0

    def apply(self, energy: np.ndarray, shift: np.ndarray) -> tuple[int, int]:
        """Correct one stream's rows in place; returns (rows learned from the start of them, the row from
        which the accepted offset applies and the smoothing restarts, or -1 when it does not change here)."""
        n = len(shift)
        k = min(self.learning, n)
        restart = -1
        old = self.offset
        if k:
            assert self.total is not None, "learning without a running total"
            self.total += shift[:k].sum(axis=0)
            self.rows += k
            self.learning -= k
            if self.learning == 0:
                self.offset, restart = self.total / self.rows, k
        if old is not None:
            _correct(energy[: restart if restart >= 0 else n], shift[: restart if restart >= 0 else n], old)
        if restart >= 0 and self.offset is not None:
            _correct(energy[restart:], shift[restart:], self.offset)
        return k, restart

    def to_state(self) -> dict[str, Any]:
        return {
            "offset": None if self.offset is None else self.offset.tolist(),
            "learning": self.learning,
            "total": None if self.total is None else self.total.tolist(),
            "rows": self.rows,
        }

    def load_state(self, state: Mapping[str, Any], n_sensors: int) -> None:
        """Continue from :meth:`to_state`; ValueError names the field that does not fit."""
        learning, rows = state.get("learning"), state.get("rows")
        for key, v in (("learning", learning), ("rows", rows)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"baseline {key!r} must be a count >= 0, got {v!r}")
        assert isinstance(learning, int) and isinstance(rows, int)
        self.offset = _vector(state, "offset", n_sensors)
        self.total = _vector(state, "total", n_sensors)
        if learning and self.total is None:
            raise ValueError("baseline: learning an operating point needs its running total")
        self.learning, self.rows = learning, rows


def _correct(energy: np.ndarray, shift: np.ndarray, offset: np.ndarray) -> None:
    energy += offset * (offset - 2.0 * shift)
    np.maximum(energy, 0.0, out=energy)
    shift -= offset


def _vector(state: Mapping[str, Any], key: str, d: int) -> np.ndarray | None:
    v = state.get(key)
    if v is None:
        return None
    ok = isinstance(v, list) and len(v) == d and all(isinstance(x, (int, float)) and math.isfinite(x) for x in v)
    if not ok:
        raise ValueError(f"baseline {key!r} must be {d} finite numbers or null")
    return np.array(v, dtype=np.float64)
