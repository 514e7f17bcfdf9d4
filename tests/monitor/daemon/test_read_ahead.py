"""A Sparkplug backlog through the real worker thread, its payloads read ahead in the read process."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from monitor.daemon.read_ahead import MIN_BATCH
from tests.monitor.conftest import history
from tests.monitor.daemon.test_sparkplug_intake import Edge, worker

ROWS = history(700, seed=3)[:700]


def _backlog() -> list[Any]:
    e = Edge()
    items = e.births(ROWS[0])
    items += [e.data(r) for r in ROWS[1:]]
    return items


def _drain(model_dir: Path, read_process: bool) -> tuple[dict[str, Any], Any]:
    w, state, _ = worker(model_dir, source={"read_process": read_process}, worker={"batch_max_size": 100})
    if read_process:  # started and ready before the backlog, as after a first backlog batch read in the worker
        assert w._reads is not None
        deadline = time.monotonic() + 20
        while (ticket := w._reads.process.submit([])) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert w._reads.process.result(ticket) is not None
    host, taken = w.sparkplug.host, []  # type: ignore[union-attr]
    take_read = host.take_read

    def counted(topic: str, read: Any) -> Any:
        got = take_read(topic, read)
        taken.append(got is not None)
        return got

    host.take_read = counted  # type: ignore[method-assign]
    items = _backlog()
    w.queue = w.queue.__class__(len(items) + 1)
    w.queue.put_many(items)
    w.start()
    w.stop()
    w.join(60)
    assert not w.is_alive()
    a = state.assets["gw/d1"]
    state.taken_ahead = sum(taken)  # rows the fast path made of payloads read ahead
    return {k: getattr(a, k) for k in ("messages", "score", "threshold", "last_seq", "alarms")}, state


def test_a_backlog_read_ahead_scores_as_one_read_in_the_worker(model_dir: Path) -> None:
    inline, s0 = _drain(model_dir, read_process=False)
    ahead, s1 = _drain(model_dir, read_process=True)
    assert ahead == inline and inline["messages"] == len(ROWS)
    assert s0.read_ahead_batches == 0
    assert s1.read_ahead_batches >= 4 and s1.read_process_failures == 0  # 7 batches of 100: most read ahead
    assert s1.taken_ahead >= 400 and s0.taken_ahead == 0
    assert sum(s1.rejected.values()) == 0


def test_no_read_process_where_rows_need_report_times(model_dir: Path) -> None:
    """A sample period or a staleness limit: take() never applies, so reading ahead would be wasted."""
    for source in ({"sample_period": 1.0}, {"stale_after": 5.0}, {"stale_after_metrics": {"T*": 5.0}}):
        assert worker(model_dir, source=source)[0]._reads is None
    assert worker(model_dir, source={"stale_after_metrics": {"T*": 0.0}})[0]._reads is not None


def test_paced_batches_are_read_in_the_worker_without_a_process(model_dir: Path) -> None:
    w, state, _ = worker(model_dir)
    e = Edge()
    w.queue.put_many(e.births(ROWS[0]))
    w.start()
    for r in ROWS[1:20]:
        w.queue.put(e.data(r))
        time.sleep(0.01)
    w.stop()
    w.join(30)
    assert state.assets["gw/d1"].messages == 20
    assert MIN_BATCH > 10 and w._reads is not None and w._reads.process.pid is None  # never started
    assert state.read_ahead_batches == 0
