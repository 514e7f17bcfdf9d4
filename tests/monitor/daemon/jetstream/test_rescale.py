"""Changing the number of instances from 2 to 3, and losing a NATS node, against a real 3-node cluster.

With p = k (mod N), going from 2 to 3 instances moves the partitions whose owner changes (p mod 2 !=
p mod 3: 4 of 6 here) and keeps the others where they were; no asset changes partition (the stream's
transform hashes the asset, not the instance count). A moved asset continues from its KV checkpoint.
Then the stream's leader node is SIGKILLed: the replicated (R3) stream and bucket elect a new leader and
every message is still scored exactly once.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

from tests.monitor.conftest import MonitorProcess, wait_until
from tests.monitor.daemon.jetstream.helpers import Stream, counter, publish_native, scored, start
from tests.nats_cluster import NatsCluster

ASSETS = [f"unit-{i}" for i in range(12)]


def _leader(cluster: NatsCluster, stream: str) -> int:
    async def ask() -> str:
        import nats

        nc = await nats.connect(cluster.servers)
        try:
            info = await nc.jetstream().stream_info(stream)
            assert info.cluster is not None and info.cluster.leader is not None
            return str(info.cluster.leader)
        finally:
            await nc.close()

    return int(asyncio.run(ask()).lstrip("n"))


def test_two_to_three_instances_then_a_nats_node_killed_every_asset_scored_exactly_once(
    nats_cluster: NatsCluster, model_dir: Path, monitor_process: Callable[..., MonitorProcess]
) -> None:
    stream = Stream(nats_cluster)
    n = 40
    ts0 = time.time() - 4 * n
    two = [start(monitor_process, stream, model_dir, k, 2) for k in (0, 1)]
    for m in two:
        m.wait_ready(40)
    publish_native(stream, ASSETS, range(n), ts0)
    wait_until(lambda: all(scored(two[stream.owner(a, 2)], a) == n for a in ASSETS), 40, "two instances done")
    for m in two:
        assert m.stop()[0] == 0  # each checkpoints its assets and acknowledges at a clean stop

    three = [start(monitor_process, stream, model_dir, k, 3) for k in (0, 1, 2)]
    for m in three:
        m.wait_ready(40)
    publish_native(stream, ASSETS, range(n, 2 * n), ts0)
    wait_until(lambda: all(scored(three[stream.owner(a, 3)], a) == n for a in ASSETS), 40, "three instances done")
    moved = [a for a in ASSETS if stream.owner(a, 2) != stream.owner(a, 3)]
    assert moved and len(moved) < len(ASSETS)
    for k, m in enumerate(three):
        own = [a for a in ASSETS if stream.owner(a, 3) == k]
        assert counter(m, "plantwatch_jetstream_messages_total", kind="foreign") == 0
        assert counter(m, "plantwatch_checkpoints_total", result="restored") == len(own)
        assert counter(m, "plantwatch_messages_rejected_total", reason="duplicate") == 0
        for a in own:  # moved or not: continued from the checkpoint, no warm-up, no gap
            assert counter(m, "plantwatch_asset_warming_up", asset=a) == 0, a
            assert counter(m, "plantwatch_sequence_gaps_total", asset=a) == 0, a
        assert all(scored(m, a) == 0 for a in ASSETS if a not in own)

    victim = _leader(nats_cluster, stream.name)
    nats_cluster.kill(victim)
    try:
        publish_native(stream, ASSETS, range(2 * n, 3 * n), ts0, avoid=victim)
        wait_until(
            lambda: all(scored(three[stream.owner(a, 3)], a) == 2 * n for a in ASSETS), 60, "scored after node loss"
        )
        time.sleep(0.5)
        for k, m in enumerate(three):
            own = [a for a in ASSETS if stream.owner(a, 3) == k]
            assert all(scored(m, a) == 2 * n for a in own)
            assert all(counter(m, "plantwatch_sequence_gaps_total", asset=a) == 0 for a in own)
            assert counter(m, "plantwatch_jetstream_messages_total", kind="foreign") == 0
        for m in three:
            m.signal(signal.SIGTERM)
    finally:
        nats_cluster.start(victim)
        nats_cluster.wait_jetstream()
