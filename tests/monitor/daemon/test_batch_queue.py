"""The intake between paho's thread and the worker: bounded, batched, no lost wake-ups."""

from __future__ import annotations

import doctest
import threading
import time

import pytest

from monitor.daemon import BatchQueue
from monitor.daemon import batch_queue as intake


def test_the_docstring_example_runs() -> None:
    result = doctest.testmod(intake)
    assert result.failed == 0 and result.attempted > 0


def test_a_full_intake_holds_the_producer_until_the_consumer_takes() -> None:
    q: BatchQueue[int] = BatchQueue(maxsize=3)
    for i in range(3):
        assert q.put(i)
    done = threading.Event()

    def produce() -> None:
        q.put(3)  # blocks: full
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    assert not done.wait(0.2)
    assert q.take(2, fill_time=0.0, wait=0.0) == [0, 1]
    assert done.wait(2)
    t.join(2)
    assert q.take(10, fill_time=0.0, wait=0.0) == [2, 3]


def test_take_waits_for_a_first_item_then_fills_the_batch() -> None:
    q: BatchQueue[int] = BatchQueue(maxsize=100)

    def produce() -> None:
        time.sleep(0.05)
        for i in range(5):
            q.put(i)
            time.sleep(0.005)

    t = threading.Thread(target=produce)
    t.start()
    started = time.monotonic()
    batch = q.take(100, fill_time=0.1, wait=2.0)
    t.join(2)
    assert batch == [0, 1, 2, 3, 4]  # one batch, not one item per wake-up
    assert time.monotonic() - started < 1.0


def test_take_returns_empty_after_its_wait_or_on_wake() -> None:
    q: BatchQueue[int] = BatchQueue(maxsize=10)
    started = time.monotonic()
    assert q.take(10, fill_time=0.0, wait=0.05) == []
    assert time.monotonic() - started >= 0.04
    threading.Timer(0.05, q.wake).start()
    started = time.monotonic()
    assert q.take(10, fill_time=0.0, wait=5.0) == []
    assert time.monotonic() - started < 2.0


def test_many_items_through_two_threads_arrive_once_and_in_order() -> None:
    q: BatchQueue[int] = BatchQueue(maxsize=64)
    n = 20000
    got: list[int] = []

    def consume() -> None:
        while len(got) < n:
            got.extend(q.take(50, fill_time=0.0, wait=1.0))

    t = threading.Thread(target=consume)
    t.start()
    for i in range(n):
        assert q.put(i, timeout=5.0)
    t.join(10)
    assert got == list(range(n))


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="intake size"):
        BatchQueue(0)


def test_put_many_appends_what_fits_in_order_and_waits_for_room_for_the_rest() -> None:
    q: BatchQueue[int] = BatchQueue(maxsize=5)
    assert q.put_many([0, 1, 2]) == 3
    assert q.put_many([3, 4, 5, 6], timeout=0.05) == 2  # full after 4: 5 and 6 are still the caller's
    assert q.take(10, fill_time=0.0, wait=0.0) == [0, 1, 2, 3, 4]

    def consume() -> None:
        time.sleep(0.1)
        got.extend(q.take(10, fill_time=0.0, wait=1.0))

    got: list[int] = []
    assert q.put_many([5, 6, 7, 8, 9]) == 5
    t = threading.Thread(target=consume)
    t.start()
    assert q.put_many([10, 11]) == 2  # waits until the consumer made room
    t.join(2)
    assert got + q.take(10, fill_time=0.0, wait=0.0) == list(range(5, 12))
