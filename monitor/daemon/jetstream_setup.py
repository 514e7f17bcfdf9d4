"""The stream and KV bucket a JetStream source needs, as deploy/nats/ defines them (tests, benchmarks).

In production they are created once by an administrator (``nats stream add --config
deploy/nats/stream.json``); monitors only check them and refuse to start without them.
"""

from __future__ import annotations

from typing import Any

from nats.js import api

from . import partition_lease, partitions

HEAD = "pw"  # first token of the partitioned subjects: pw.<partition>.<original subject>


def stream_config(name: str, prefix: str, parts: int, replicas: int = 3, head: str = HEAD) -> api.StreamConfig:
    """Telemetry under ``prefix`` kept until acknowledged (work queue; at most a week), partitioned by asset."""
    return api.StreamConfig(
        name=name,
        subjects=[partitions.telemetry_source(prefix)],
        retention=api.RetentionPolicy.WORK_QUEUE,
        storage=api.StorageType.FILE,
        num_replicas=replicas,
        max_age=7 * 86400.0,
        duplicate_window=120.0,
        subject_transform=api.SubjectTransform(
            src=partitions.telemetry_source(prefix), dest=partitions.transform_dest(prefix, parts, head)
        ),
    )


def bucket_config(name: str, replicas: int = 3) -> api.KeyValueConfig:
    """One value per asset (history 1), replicated like the stream."""
    return api.KeyValueConfig(bucket=name, history=1, replicas=replicas, storage=api.StorageType.FILE)


def leases_config(name: str, replicas: int = 3, ttl: float = partition_lease.TTL_S) -> api.KeyValueConfig:
    """One lease per partition, gone ``ttl`` seconds after its holder last renewed it."""
    return api.KeyValueConfig(bucket=name, history=1, replicas=replicas, ttl=ttl, storage=api.StorageType.FILE)


async def create(
    servers: list[str],
    stream: str,
    prefix: str,
    parts: int,
    bucket: str | None,
    replicas: int = 3,
    leases: str = "plantwatch-leases",
    **auth: Any,
) -> None:
    import nats

    nc = await nats.connect(servers, connect_timeout=5, **auth)
    try:
        js = nc.jetstream()
        await js.add_stream(stream_config(stream, prefix, parts, replicas))
        if bucket:
            await js.create_key_value(bucket_config(bucket, replicas))
        await js.create_key_value(leases_config(leases, replicas))
    finally:
        await nc.close()
