"""Changing the number of instances from 2 to 3, and losing a NATS node, against a real 3-node cluster.

With p = k (mod N), going from 2 to 3 instances moves the partitions whose owner changes (p mod 2 !=
p mod 3: 4 of 6 here) and keeps the others where they were; no asset changes partition (the stream's
transform hashes the asset, not the instance count). Partition leases (a TTL'd KV bucket, revision
compare-and-set) keep one instance per partition while old and new instances overlap. A moved asset
continues from its KV checkpoint.
Then the stream's leader node is SIGKILLed: the replicated (R3) stream and bucket elect a new leader and
every message is still scored exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from tests.monitor.conftest import MonitorProcess, wait_until
from tests.monitor.daemon.jetstream.helpers import Stream, checkpoints, counter, publish_native, scored, start
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


def test_a_rolling_restart_from_two_to_three_instances_then_a_nats_node_killed_scores_every_message_once(
    nats_cluster: NatsCluster, model_dir: Path, monitor_process: Callable[..., MonitorProcess]
) -> None:
    """The rolling restart a StatefulSet does (new instance 2 first, then 1, then 0), old and new instances
    overlapping: a new instance waits for the partitions an old one still leases, takes each as soon as
    its old owner stops, and continues its assets from the checkpoint that owner wrote when stopping."""
    stream = Stream(nats_cluster)
    n = 40
    ts0 = time.time() - 5 * n
    old = {k: start(monitor_process, stream, model_dir, k, 2) for k in (0, 1)}
    for m in old.values():
        m.wait_ready(40)
    publish_native(stream, ASSETS, range(n), ts0)
    wait_until(lambda: all(scored(old[stream.owner(a, 2)], a) == n for a in ASSETS), 40, "two instances done")

    new = {2: start(monitor_process, stream, model_dir, 2, 3)}  # owns 2 and 5: both still leased by old ones
    new[2].wait_ready(40)
    wait_until(lambda: counter(new[2], "plantwatch_jetstream_partitions", state="waiting") == 2, 20, "it waits")
    publish_native(stream, ASSETS, range(n, 2 * n), ts0)  # scored by the old instances meanwhile
    wait_until(lambda: all(scored(old[stream.owner(a, 2)], a) == 2 * n for a in ASSETS), 40, "old ones go on")
    assert all(scored(new[2], a) == 0 for a in ASSETS)
    for k in (1, 0):  # each old instance replaced by the new one of its index
        assert old[k].stop()[0] == 0  # checkpoints, acknowledges, releases its leases
        new[k] = start(monitor_process, stream, model_dir, k, 3)
        new[k].wait_ready(40)
    for m in new.values():
        wait_until(lambda m=m: counter(m, "plantwatch_jetstream_partitions", state="held") == 2, 20, "all leased")
    publish_native(stream, ASSETS, range(2 * n, 3 * n), ts0)
    wait_until(lambda: all(scored(new[stream.owner(a, 3)], a) == n for a in ASSETS), 40, "three instances done")
    moved = [a for a in ASSETS if stream.owner(a, 2) != stream.owner(a, 3)]
    assert moved and len(moved) < len(ASSETS)
    for k, m in new.items():
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
        publish_native(stream, ASSETS, range(3 * n, 4 * n), ts0, avoid=victim)
        wait_until(lambda: all(scored(new[stream.owner(a, 3)], a) == 2 * n for a in ASSETS), 60, "after node loss")
        time.sleep(0.5)
        for k, m in new.items():
            own = [a for a in ASSETS if stream.owner(a, 3) == k]
            assert all(scored(m, a) == 2 * n for a in own)
            assert all(counter(m, "plantwatch_sequence_gaps_total", asset=a) == 0 for a in own)
            assert counter(m, "plantwatch_jetstream_messages_total", kind="foreign") == 0
        for m in new.values():
            assert m.stop()[0] == 0
    finally:
        nats_cluster.start(victim)
        nats_cluster.wait_jetstream()
    final = checkpoints(stream, ASSETS)
    assert {a: (final[a]["scored"], final[a]["seq"]["last"]) for a in ASSETS} == dict.fromkeys(
        ASSETS, (4 * n, 4 * n - 1)
    )
