"""The worker's stop with KV checkpoints: the last checkpoint outlasts a bucket's leader election."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from monitor import config, wire
from monitor.daemon import BatchQueue, State, load_models
from monitor.daemon.worker import FINAL_RETRY_S, Worker
from tests.monitor.conftest import history, values


class ElectingBucket:
    """The worker's side of :class:`monitor.daemon.jetstream_checkpoints.KvCheckpoints`, over a bucket that
    refuses writes until its leader election ends (``refusals`` writes; -1: never)."""

    before_ack = True
    max_unacked = 10_000

    def __init__(self, refusals: int) -> None:
        self.refusals, self.written, self.retained = refusals, [], {}  # type: ignore[var-annotated]

    def load(self) -> dict[str, Any]:
        return {}

    def fetch(self, asset: str) -> None:
        return None

    def write_streams(self, records: dict[str, Any]) -> bool:
        if self.refusals:
            self.refusals -= 1
            return False
        self.written.append(records)
        return True


def _stopped(
    model_dir: Path, bucket: ElectingBucket, give_up_s: float, checkpoint: bool = True
) -> tuple[list[Any], float]:
    cfg = config.parse({"models": {"default": str(model_dir)}, "source": {"checkpoint_interval": 60.0}})
    acked: list[Any] = []
    w = Worker(cfg, load_models(cfg), BatchQueue(100), State(), acked.extend, lambda t, p: None, store=bucket)
    t0 = time.time() - 60
    items = [
        (
            wire.telemetry_topic(cfg.prefix, "pump-1"),
            wire.encode_telemetry(t0 + i, i, values(r)),
            t0,
            i + 1,
            1,
            0,
            False,
        )
        for i, r in enumerate(history(20, seed=4))
    ]
    w.queue.put_many(items)
    w.start()
    while w.queue.qsize():
        time.sleep(0.01)
    begun = time.monotonic()
    w.stop(give_up_at=begun + give_up_s, checkpoint=checkpoint)
    w.join(give_up_s + 5)
    assert not w.is_alive()
    return acked, time.monotonic() - begun


def test_a_final_checkpoint_refused_during_an_election_is_retried_then_acknowledged(model_dir: Path) -> None:
    bucket = ElectingBucket(refusals=3)
    acked, took = _stopped(model_dir, bucket, give_up_s=5.0)
    assert bucket.refusals == 0 and bucket.written[-1]["pump-1"]["scored"] == 20
    assert len(acked) == 20  # acknowledged once, after the checkpoint that covers them
    assert took < 4.0


def test_a_bucket_that_never_recovers_leaves_the_messages_unacknowledged_by_the_deadline(model_dir: Path) -> None:
    bucket = ElectingBucket(refusals=-1)
    acked, took = _stopped(model_dir, bucket, give_up_s=1.0)
    assert acked == [] and bucket.written == []  # redelivered to the next owner, scored again from the last one
    assert 1.0 - FINAL_RETRY_S - 0.1 < took < 3.0  # retried until the last try that fits before the deadline


def test_after_a_lost_lease_no_final_checkpoint_is_written(model_dir: Path) -> None:
    bucket = ElectingBucket(refusals=0)
    acked, took = _stopped(model_dir, bucket, give_up_s=5.0, checkpoint=False)
    assert acked == [] and bucket.written == []  # the new owner's checkpoints stay; these are redelivered
    assert took < 2.0
