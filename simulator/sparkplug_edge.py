"""A simulated Sparkplug B edge node: each simulated asset is one of its devices.

What a real gateway does, as the Sparkplug 3.0 specification says it: an NDEATH with the session's
``bdSeq`` as its MQTT will; NBIRTH (``seq`` 0) then a DBIRTH per device with every metric's name,
alias, datatype (Double) and value; DDATA by alias only, report-by-exception (a metric is sent when it
changed, or with a ``deadband`` when it moved more than that many standard deviations since it was last sent); ``seq`` 0-255 per edge node,
wrapping; new births when a host asks (NCMD ``Node Control/Rebirth``); a clean NDEATH at the end.

The monitor names each device's asset ``<edge_node_id>/<device_id>`` by default (its ``[source]``
``device_asset``), so ``plantwatch simulate --format sparkplug --assets 2`` gives assets
``plantwatch-sim/asset01`` and ``plantwatch-sim/asset02``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from monitor.sparkplug import payload as spb
from monitor.sparkplug import topics

DEFAULT_GROUP = "plantwatch"
DEFAULT_EDGE_NODE = "plantwatch-sim"
DEFAULT_DEADBAND = 0.0  # in standard deviations of the normal data; 0: every change (as Ignition's default)

Message = tuple[str, bytes]


@dataclass(frozen=True)
class SparkplugSettings:
    group_id: str = DEFAULT_GROUP
    edge_node_id: str = DEFAULT_EDGE_NODE
    deadband: float = DEFAULT_DEADBAND
    bd_seq: int = 0

    def asset(self, device_id: str) -> str:
        """The monitor's default asset name of a device of this edge node."""
        return f"{self.edge_node_id}/{device_id}"

    def check(self, device_ids: Sequence[str]) -> None:
        """ValueError naming the id that cannot be a topic level, or a bad deadband."""
        topics.message_topic("NBIRTH", self.group_id, self.edge_node_id)
        for d in device_ids:
            topics.message_topic("DBIRTH", self.group_id, self.edge_node_id, d)
        if not (0 <= self.deadband < 100):
            raise ValueError(f"deadband must be 0-100 standard deviations, got {self.deadband}")


class SparkplugEdge:
    """Turns rows of each device into Sparkplug messages; the publisher sends them in order."""

    def __init__(self, settings: SparkplugSettings, devices: Sequence[tuple[str, list[str], np.ndarray]]) -> None:
        """``devices``: (device id, sensor names, normal spread per sensor) per simulated asset."""
        settings.check([d for d, _, _ in devices])
        self.s = settings
        self.devices = [(d, list(sensors), np.asarray(std, dtype=np.float64)) for d, sensors, std in devices]
        self._seq = 0
        self._sent: list[np.ndarray | None] = [None] * len(devices)  # last value sent per metric
        self._born = False
        self._rebirth = threading.Event()  # set by the MQTT thread (NCMD), read by the publishing loop

    # ------------------------------------------------------------ session

    def will(self) -> Message:
        """The NDEATH the broker publishes if this edge node's connection dies."""
        return self._ndeath(0)

    def command_filter(self) -> str:
        return topics.command_filter(self.s.group_id, self.s.edge_node_id)

    def on_command(self, payload: bytes) -> None:
        """An NCMD arrived (MQTT thread): a rebirth request makes the next row go out after new births."""
        if spb.asks_rebirth(payload):
            self._rebirth.set()

    def death(self, ts_ms: int) -> Message:
        """The clean NDEATH sent before disconnecting."""
        return self._ndeath(ts_ms)

    def _ndeath(self, ts_ms: int) -> Message:
        topic = topics.message_topic("NDEATH", self.s.group_id, self.s.edge_node_id)
        return topic, spb.death_payload(ts_ms, bd_seq=self.s.bd_seq)

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) % 256
        return seq

    # ------------------------------------------------------------ rows

    def rows(self, a: int, ts_ms: int, row: np.ndarray) -> list[Message]:
        """The messages for device ``a``'s next row: births first when due, then its DDATA (if anything moved)."""
        out: list[Message] = []
        if not self._born or self._rebirth.is_set():
            self._rebirth.clear()
            out.append(self._nbirth(ts_ms))
            self._sent = [None] * len(self.devices)
            self._born = True
        device, sensors, std = self.devices[a]
        sent = self._sent[a]
        if sent is None:
            metrics = [(name, i + 1, spb.DataType.Double, float(v)) for i, (name, v) in enumerate(zip(sensors, row))]
            topic = topics.message_topic("DBIRTH", self.s.group_id, self.s.edge_node_id, device)
            out.append((topic, spb.birth_payload(ts_ms, self._next_seq(), metrics)))
            self._sent[a] = np.array(row, dtype=np.float64)
            return out
        moved = np.flatnonzero(np.abs(row - sent) > self.s.deadband * std)
        if len(moved) == 0:
            return out
        sent[moved] = row[moved]
        values = [(int(i) + 1, float(row[i])) for i in moved]
        topic = topics.message_topic("DDATA", self.s.group_id, self.s.edge_node_id, device)
        out.append((topic, spb.data_payload(ts_ms, self._next_seq(), values)))
        return out

    def _nbirth(self, ts_ms: int) -> Message:
        self._seq = 0
        topic = topics.message_topic("NBIRTH", self.s.group_id, self.s.edge_node_id)
        return topic, spb.birth_payload(ts_ms, self._next_seq(), [], bd_seq=self.s.bd_seq, rebirth_metric=True)
