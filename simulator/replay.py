"""A recorded CSV as a telemetry source, so real history (TEP, a plant export) can be streamed.

The rows go out in file order at the publisher's rate with fresh timestamps
(wall-clock at publish time) and ``seq`` from 0; the file's own timestamps are
not sent. Fault magnitudes use the file's per-column standard deviation.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from monitor import history_options, logs, wire
from monitor.errors import InputError

log = logs.get("replay")


class ReplaySource:
    """Rows of a table in order, optionally looping; a :class:`simulator.publish.Source`."""

    def __init__(self, name: str, sensors: list[str], values: np.ndarray, loop: bool = False) -> None:
        if not wire.valid_name(name):
            raise InputError(
                f"asset name {name!r} cannot be an MQTT topic level "
                f"(1-{wire.MAX_NAME_LENGTH} characters, no '/', '+', '#'); use --asset NAME"
            )
        try:
            wire.assert_sensor_names(sensors)
        except ValueError as exc:
            raise InputError(f"{name}: {exc}") from None
        if values.ndim != 2 or values.shape[1] != len(sensors) or len(values) == 0:
            raise InputError(f"{name}: expected rows of {len(sensors)} values, got shape {values.shape}")
        self.name = name
        self.sensors = list(sensors)
        self.values = values
        self.loop = loop
        self.position = 0  # rows read so far (keeps counting when looping)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def sensor_std(self) -> np.ndarray:
        """Per-column standard deviation; 1.0 for a constant column so faults still show."""
        std = self.values.std(axis=0)
        return np.where(std > 0, std, 1.0)

    def read(self, n: int) -> np.ndarray:
        """Up to ``n`` next rows (a copy, so injections do not edit the table); 0 rows at the end."""
        rows = len(self)
        if self.loop:
            idx = np.arange(self.position, self.position + n) % rows
        else:
            idx = np.arange(self.position, min(self.position + n, rows))
        self.position += len(idx)
        return self.values[idx]


def load_replay(
    path: str | Path, asset: str | None = None, loop: bool = False, args: argparse.Namespace | None = None
) -> ReplaySource:
    """Read a CSV as ``train`` does (``args``' --sensors, --exclude and --missing); the asset defaults to the
    file's stem."""
    table, gaps = history_options.read_table(path, args or argparse.Namespace())
    if gaps is not None and gaps.summary():
        log.info("replay_missing_values", path=str(path), summary=gaps.summary())
    return ReplaySource(asset if asset is not None else Path(path).stem, table.sensors, table.values, loop)
