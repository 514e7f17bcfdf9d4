"""The seq rules of one asset (monitor/daemon/sequence.py), message by message."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitor.daemon.sequence import RUN_TO_BELIEVE, Sequence


def feed(sq: Sequence, seqs: list[int], ts: list[float]) -> tuple[list[int], list[tuple[str, int]], int]:
    """One message per batch, as a slow publisher sends them: (seqs scored, rejections, restarts)."""
    scored, rejected, restarts = [], [], 0
    for s, t in zip(seqs, ts):
        o = sq.order(np.array([s]), np.array([t]))
        scored += [s] * len(o.keep)
        rejected += o.rejected
        restarts += len(o.restarts)
    return scored, rejected, restarts


def stream(n: int, window: int = 100, max_jump: int = 1000, start: int = 0) -> Sequence:
    """Seqs ``start..n-1`` scored, seq i at ts i."""
    sq = Sequence(window, max_jump)
    sq.advance(start, n - 1, float(n - 1), float(n - 2), n - 1)
    return sq


def test_redeliveries_are_duplicates_and_skipped_numbers_within_the_window_are_late() -> None:
    sq = stream(50)
    scored, rejected, _ = feed(sq, [60, 55, 55, 49, 10], [60.0, 55.0, 55.0, 49.0, 10.0])
    assert scored == [60, 55] and sq.last == 60
    assert rejected == [("duplicate", 55), ("duplicate", 49), ("duplicate", 10)]


def test_a_redelivery_burst_far_behind_is_duplicates_not_a_restart() -> None:
    """After a crash the broker may redeliver thousands of messages the saved state says were scored."""
    sq = stream(5_000)
    scored, rejected, restarts = feed(sq, list(range(2_000, 3_500)), [float(i) for i in range(2_000, 3_500)])
    assert not scored and not restarts and rejected == [("duplicate", i) for i in range(2_000, 3_500)]


def test_far_behind_is_out_of_order_and_a_jump_is_believed_only_from_a_run() -> None:
    sq = stream(500, start=300)
    assert feed(sq, [100], [100.0])[1] == [("out_of_order", 100)]  # never part of this run, beyond the window
    assert feed(sq, [5_000], [500.0])[1] == [("seq_jump", 5_000)]
    assert feed(sq, [500, 501], [501.0, 502.0])[0] == [500, 501]  # the stream goes on, untouched
    scored, rejected, restarts = feed(sq, list(range(9_000, 9_000 + RUN_TO_BELIEVE + 2)), [503.0 + i for i in range(5)])
    assert rejected == [("seq_jump", 9_000), ("seq_jump", 9_001)] and restarts == 1
    assert scored == [9_002, 9_003, 9_004] and sq.last == 9_004


def test_a_restart_is_seen_by_its_newer_timestamp_even_after_one_message_from_the_future() -> None:
    sq = stream(50)
    feed(sq, [50], [1e6])  # inside the skew window but far ahead of the others
    assert feed(sq, [50, 49], [1e6, 49.0])[1] == [("duplicate", 50), ("duplicate", 49)]  # redeliveries
    scored, rejected, restarts = feed(sq, [0, 1, 2], [51.0, 52.0, 53.0])
    assert scored == [0, 1, 2] and not rejected and restarts == 1


def test_a_restarted_publisher_with_a_clock_behind_is_believed_after_a_run_below_the_first() -> None:
    sq = stream(500, start=300)  # the monitor came in at seq 300
    scored, rejected, restarts = feed(sq, [0, 1, 2, 3], [10.0, 11.0, 12.0, 13.0])
    assert len(rejected) == RUN_TO_BELIEVE - 1 and restarts == 1 and scored == [2, 3]


def test_a_batch_out_of_order_is_scored_in_seq_order() -> None:
    sq = stream(10)
    o = sq.order(np.array([12, 10, 11, 11]), np.array([12.0, 10.0, 11.0, 11.0]))
    assert o.keep == [1, 2, 0] and o.rejected == [("duplicate", 11)] and o.gaps == 0


@pytest.mark.parametrize("jump", [2**40, 2**62])
def test_a_huge_jump_costs_no_memory(jump: int) -> None:
    sq = Sequence(1000, 2**62)
    sq.advance(0, 0, 0.0, -math.inf, 0)
    assert sq.advance(jump, jump, 1.0, -math.inf, jump) == jump - 1
    assert sq.seen.bit_length() <= 1000


def test_the_state_survives_a_round_trip_and_a_bad_one_is_refused() -> None:
    sq = stream(50)
    feed(sq, [55], [55.0])
    again = Sequence(100, 1000)
    again.load_state(sq.to_state())
    assert again == sq
    assert feed(again, [52, 52], [52.0, 52.0])[1] == [("duplicate", 52)]
    with pytest.raises(ValueError, match="'last'"):
        again.load_state({**sq.to_state(), "last": 1.5})


def test_one_message_that_looks_like_a_restart_costs_the_stream_it_interrupted_nothing() -> None:
    sq = Sequence(100, 1000)
    sq.advance(500_000, 500_010, 10.0, 9.0, 500_010)
    scored, rejected, restarts = feed(sq, [0, 500_011, 500_012], [11.0, 12.0, 13.0])
    assert scored == [0, 500_011, 500_012] and not rejected and restarts == 2 and sq.last == 500_012
    assert feed(sq, [1], [5.0])[1] == [("out_of_order", 1)]  # and the restarted run is over
