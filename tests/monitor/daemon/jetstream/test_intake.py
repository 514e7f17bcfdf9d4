"""The JetStream source against a real 3-node cluster: gateways publish MQTT into NATS's MQTT listener,
one and then two monitor instances score every asset exactly once, each only its own partitions."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from tests.monitor.conftest import MonitorProcess, wait_until
from tests.monitor.daemon.jetstream.helpers import Stream, counter, scored, start
from tests.nats_cluster import NatsCluster

ASSETS = [f"unit-{i}" for i in range(8)]


def test_one_then_two_instances_score_every_asset_exactly_once_and_only_their_own_partitions(
    nats_cluster: NatsCluster, model_dir: Path, monitor_process: Callable[..., MonitorProcess]
) -> None:
    stream = Stream(nats_cluster)
    assert {stream.owner(a, 2) for a in ASSETS} == {0, 1}  # both instances get assets
    plant = stream.plant(node=1)
    n = 60
    try:
        one = start(monitor_process, stream, model_dir, 0, 1)
        one.wait_ready(40)
        ts0 = time.time() - 2 * n
        for a in ASSETS:
            plant.send_many(a, range(n), ts0)
        wait_until(lambda: all(scored(one, a) == n for a in ASSETS), 40, "one instance scored everything")
        assert one.stop()[0] == 0  # a clean stop checkpoints every asset
        two = [start(monitor_process, stream, model_dir, k, 2) for k in (0, 1)]
        for m in two:
            m.wait_ready(40)
        for a in ASSETS:
            plant.send_many(a, range(n, 2 * n), ts0)

        def done() -> bool:
            return all(scored(two[stream.owner(a, 2)], a) == n for a in ASSETS)

        wait_until(done, 40, "two instances scored the second half")
        time.sleep(0.5)  # nothing more arrives
        for k, m in enumerate(two):
            mine = [a for a in ASSETS if stream.owner(a, 2) == k]
            theirs = [a for a in ASSETS if stream.owner(a, 2) != k]
            assert all(scored(m, a) == n for a in mine)
            assert all(scored(m, a) == 0 for a in theirs)  # never reached this instance
            assert counter(m, "plantwatch_jetstream_messages_total", kind="foreign") == 0
            assert counter(m, "plantwatch_jetstream_messages_total", kind="own") == n * len(mine)
            assert counter(m, "plantwatch_messages_rejected_total", reason="duplicate") == 0
            for a in mine:
                assert counter(m, "plantwatch_sequence_gaps_total", asset=a) == 0
                assert counter(m, "plantwatch_asset_warming_up", asset=a) == 0  # continued from the checkpoint
            assert counter(m, "plantwatch_checkpoints_total", result="restored") == len(mine)
        for m in two:
            m.signal(signal.SIGTERM)
    finally:
        plant.close()
