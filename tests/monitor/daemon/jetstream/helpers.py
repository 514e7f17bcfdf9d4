"""Shared steps of the JetStream tests: a stream per test, monitor instances, per-asset counts."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path

from monitor.daemon import jetstream_setup as setup
from monitor.daemon import partitions
from tests.monitor.conftest import MonitorProcess, Plant, sample
from tests.nats_cluster import NatsCluster

_names = itertools.count()


class Stream:
    """A stream + bucket of its own (prefix, names) on the session's cluster."""

    def __init__(self, cluster: NatsCluster, parts: int = 6, replicas: int = 3, bucket: bool = True) -> None:
        n = next(_names)
        self.cluster, self.parts = cluster, parts
        self.prefix, self.name, self.bucket = f"js{n}", f"JS{n}", f"js{n}-state"
        asyncio.run(
            setup.create(cluster.servers, self.name, self.prefix, parts, self.bucket if bucket else None, replicas)
        )

    def env(self, index: int, instances: int, **more: str) -> dict[str, str]:
        return {
            "PLANTWATCH_SOURCE_KIND": "jetstream",
            "PLANTWATCH_SOURCE_SERVERS": ",".join(self.cluster.servers),
            "PLANTWATCH_SOURCE_STREAM": self.name,
            "PLANTWATCH_SOURCE_BUCKET": self.bucket,
            "PLANTWATCH_SOURCE_PARTITIONS": str(self.parts),
            "PLANTWATCH_SOURCE_INSTANCES": str(instances),
            "PLANTWATCH_SOURCE_INSTANCE_INDEX": str(index),
            "PLANTWATCH_SOURCE_CHECKPOINT_INTERVAL": "0.2",
            "PLANTWATCH_SOURCE_ACK_WAIT": "2",
            "PLANTWATCH_PREFIX": self.prefix,
            "PLANTWATCH_INSTANCE": f"m{index}",
            **more,
        }

    def owner(self, asset: str, instances: int) -> int:
        return partitions.partition_of(asset, self.parts) % instances

    def plant(self, node: int = 0) -> Plant:
        """A gateway publishing MQTT into node ``node``'s MQTT listener."""
        return Plant(self.cluster.mqtt[node], prefix=self.prefix)


def start(
    monitor_process: Callable[..., MonitorProcess],
    stream: Stream,
    model: Path,
    index: int,
    instances: int,
    **env: str,
) -> MonitorProcess:
    return monitor_process(["--model", str(model)], stream.env(index, instances, **env), name=f"m{index}of{instances}")


def scored(mon: MonitorProcess, asset: str) -> float:
    return sample(mon.port, "plantwatch_messages_total", {"asset": asset}) or 0.0


def counter(mon: MonitorProcess, name: str, **labels: str) -> float:
    return sample(mon.port, name, labels) or 0.0
