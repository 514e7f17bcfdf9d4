"""The bounded hand-over from paho's network thread to the worker, in batches.

``queue.Queue`` takes a lock and notifies a condition on every put and every
get: ~1.5 us each way per message, with a thread switch whenever the worker
is waiting, at tens of thousands of messages a second. Here a put is a
``deque.append`` (atomic under the GIL) and the worker takes a whole batch at
once; the two events are touched only when one side actually waits (empty
for the worker, full for paho). Full means paho's thread waits in
:meth:`BatchQueue.put`, stops reading its socket, and the backlog stays at the
broker: backpressure, not memory growth.

>>> q = BatchQueue(maxsize=2)
>>> q.put("a"), q.put("b"), q.put("c", timeout=0.01)
(True, True, False)
>>> q.take(10, fill_time=0.0, wait=0.0), q.qsize()
(['a', 'b'], 0)
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class BatchQueue(Generic[T]):
    """A bounded FIFO for one producer thread and one consumer thread."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"intake size must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._not_empty = threading.Event()
        self._not_full = threading.Event()
        self._not_full.set()

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Append, waiting up to ``timeout`` seconds (None: forever) while full; False if still full."""
        items = self._items
        if len(items) >= self.maxsize:
            self._not_full.clear()
            deadline = None if timeout is None else time.monotonic() + timeout
            while len(items) >= self.maxsize:  # re-checked after clear(): no lost wake-up
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._not_full.wait(left)
                self._not_full.clear()
        items.append(item)
        if not self._not_empty.is_set():
            self._not_empty.set()
        return True

    def put_many(self, items: list[T], timeout: float | None = None) -> int:
        """Append ``items`` in order, waiting up to ``timeout`` seconds (None: forever) for room while full;
        how many went in (the rest, from that one on, are the caller's)."""
        room = self.maxsize - len(self._items)
        if room >= len(items):
            self._items.extend(items)
            if not self._not_empty.is_set():
                self._not_empty.set()
            return len(items)
        done = 0
        for item in items:  # the slow path: as put() does, one at a time
            if not self.put(item, timeout):
                break
            done += 1
        return done

    def wake(self) -> None:
        """Release a consumer waiting on an empty intake (used when stopping)."""
        self._not_empty.set()

    def take(self, max_items: int, fill_time: float, wait: float) -> list[T]:
        """Up to ``max_items``: waits ``wait`` s for a first one, then ``fill_time`` s for more.

        The fill wait is one sleep, not a wake-up per arriving message, and
        is skipped when a full batch is already there.
        """
        items = self._items
        if not items:
            self._not_empty.clear()
            if not items and not self._not_empty.wait(wait):
                return []
            if not items:  # woken by wake()
                return []
        if fill_time > 0 and len(items) < max_items:
            time.sleep(fill_time)
        n = min(len(items), max_items)
        popleft = items.popleft
        batch = [popleft() for _ in range(n)]
        if not self._not_full.is_set():
            self._not_full.set()
        return batch
