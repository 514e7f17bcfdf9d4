"""The JetStream source against a real 3-node cluster: gateways publish MQTT into NATS's MQTT listener,
one and then two monitor instances score every asset exactly once, each only its own partitions."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from monitor import wire
from tests.monitor.conftest import MonitorProcess, wait_until
from tests.monitor.daemon.jetstream.helpers import Stream, counter, scored, start, stored
from tests.nats_cluster import NatsCluster

ASSETS = [f"unit-{i}" for i in range(8)]


class PlainSubscriber:
    """A plain MQTT subscriber on NATS's MQTT listener, keeping the topics it receives."""

    def __init__(self, port: int, topic_filter: str) -> None:
        self.topics: list[str] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"plain-{time.monotonic_ns()}")
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = lambda c, u, m: self.topics.append(m.topic)
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic_filter, qos=0)
        self.client.loop_start()
        assert subscribed.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


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
        plain = PlainSubscriber(nats_cluster.mqtt[0], wire.telemetry_filter(stream.prefix))
        ts0 = time.time() - 2 * n
        for a in ASSETS:
            plant.send_many(a, range(n), ts0)
        wait_until(lambda: stored(stream) == n * len(ASSETS), 20, "the MQTT telemetry stored in the stream")
        wait_until(lambda: all(scored(one, a) == n for a in ASSETS), 40, "one instance scored everything")
        # a plain MQTT subscriber sees the original topics: the partitioning is the stream's, not the subjects'
        wait_until(lambda: len(plain.topics) == n * len(ASSETS), 20, "the plain subscriber's copies")
        assert set(plain.topics) == {wire.telemetry_topic(stream.prefix, a) for a in ASSETS}
        plain.close()
        assert one.stop()[0] == 0  # a clean stop checkpoints every asset
        two = [start(monitor_process, stream, model_dir, k, 2) for k in (0, 1)]
        for m in two:
            m.wait_ready(40)
        for a in ASSETS:
            plant.send_many(a, range(n, 2 * n), ts0)
        wait_until(lambda: stored(stream) == 2 * n * len(ASSETS), 20, "the second half stored")

        def done() -> bool:
            return all(scored(two[stream.owner(a, 2)], a) == n for a in ASSETS)

        wait_until(done, 60, "two instances scored the second half")
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
        # an operator's request over NATS's MQTT listener reaches every instance, each replies
        replies = PlainSubscriber(nats_cluster.mqtt[2], f"{stream.prefix}/_monitor/+/reply/alice")
        req = wire.ControlRequest("r1", "suppress", "unit-*", reason="inspection", by="alice", until=time.time() + 600)
        plant.raw(wire.control_topic(stream.prefix, "alice"), req.encode()).wait_for_publish(10)
        for m in two:
            wait_until(
                lambda m=m: counter(m, "plantwatch_control_requests_total", result="accepted") == 1, 10, "applied"
            )
        wait_until(lambda: len(replies.topics) == 2, 10, "a reply from each instance")
        replies.close()
        for m in two:
            m.signal(signal.SIGTERM)
    finally:
        plant.close()
