"""Batches for the worker, a backlog's Sparkplug payloads read one batch ahead in a helper process.

While batch k is scored, :class:`monitor.sparkplug.read_process.ReadProcess` reads batch k+1's DATA
payloads on another core. Only while a backlog drains (a whole batch more is already queued) is the next
batch taken early: under paced load a batch is never held back waiting for the one after it.
"""

from __future__ import annotations

from collections.abc import Callable

from ..sparkplug import ReadBatch, ReadProcess, Ticket
from .metrics import State
from .mqtt_session import Item

#: smaller batches are read in the worker: the hand-over costs more than it saves
MIN_BATCH = 64


class ReadAhead:
    """``next()``: the next batch and, when the helper read it, its reads (None: the worker reads it)."""

    def __init__(
        self, take: Callable[[], list[Item]], backlog: Callable[[], bool], process: ReadProcess, state: State
    ) -> None:
        self._take, self._backlog, self.process, self._state = take, backlog, process, state
        self._held: tuple[list[Item], Ticket | None] | None = None

    def next(self) -> tuple[list[Item], ReadBatch | None]:
        held, self._held = self._held, None
        batch, ticket = held if held is not None else self._submit(self._take())
        if ticket is not None and self._backlog():
            following = self._take()
            if following:
                self._held = self._submit(following)
        reads = None if ticket is None else self.process.result(ticket)
        s = self._state
        s.read_process_failures = self.process.failures  # one that did not start counts too
        if reads is None or len(reads) != len(batch):
            return batch, None
        s.read_ahead_batches += 1
        return batch, reads

    def close(self) -> None:
        self.process.close()

    def _submit(self, batch: list[Item]) -> tuple[list[Item], Ticket | None]:
        if len(batch) < MIN_BATCH:
            return batch, None
        return batch, self.process.submit([item[1] for item in batch])
