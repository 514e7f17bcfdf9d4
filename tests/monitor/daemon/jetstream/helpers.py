"""Shared steps of the JetStream tests: a stream per test, monitor instances, per-asset counts."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from monitor import wire
from monitor.daemon import jetstream_setup as setup
from monitor.daemon import partitions
from monitor.daemon.jetstream_session import leader_value
from tests.monitor.conftest import MonitorProcess, Plant, sample
from tests.nats_cluster import NatsCluster

_names = itertools.count()


class Stream:
    """A stream + bucket of its own (prefix, names) on the session's cluster."""

    def __init__(self, cluster: NatsCluster, parts: int = 6, replicas: int = 3, bucket: bool = True) -> None:
        n = next(_names)
        self.cluster, self.parts = cluster, parts
        self.prefix, self.name, self.bucket, self.leases = f"js{n}", f"JS{n}", f"js{n}-state", f"js{n}-leases"
        kv = self.bucket if bucket else None
        asyncio.run(setup.create(cluster.servers, self.name, self.prefix, parts, kv, replicas, self.leases))

    def env(self, index: int, instances: int, **more: str) -> dict[str, str]:
        return {
            "PLANTWATCH_SOURCE_KIND": "jetstream",
            "PLANTWATCH_SOURCE_SERVERS": ",".join(self.cluster.servers),
            "PLANTWATCH_SOURCE_STREAM": self.name,
            "PLANTWATCH_SOURCE_BUCKET": self.bucket,
            "PLANTWATCH_SOURCE_LEASES": self.leases,
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


def stored(stream: Stream) -> int:
    """How many messages the stream has ever stored (its last sequence number)."""

    async def ask() -> int:
        import nats

        nc = await nats.connect(stream.cluster.servers)
        try:
            return int((await nc.jetstream().stream_info(stream.name)).state.last_seq)
        finally:
            await nc.close()

    return asyncio.run(ask())


def health(stream: Stream) -> str:
    """The stream's replication as one line ("" when a leader and every replica are current): a stream still
    electing a leader, or with a replica catching up after an earlier test's node restart, drops what the
    MQTT listener publishes into it (NATS acknowledges an MQTT QoS 1 PUBLISH without waiting for the stream)."""

    async def ask() -> str:
        import nats

        nc = await nats.connect(stream.cluster.servers)
        try:
            info = await nc.jetstream().stream_info(stream.name)
        except nats.errors.Error as e:
            return f"no stream info: {e!r}"
        finally:
            await nc.close()
        cl = info.cluster
        if cl is None or not cl.leader:
            return "no leader"
        behind = [f"{r.name} (current={r.current}, lag={r.lag})" for r in cl.replicas or [] if not r.current]
        return f"leader {cl.leader}, replicas behind: {', '.join(behind)}" if behind else ""

    return asyncio.run(ask())


def publish_native(stream: Stream, assets: list[str], seqs: range, ts0: float, avoid: int | None = None) -> None:
    """Telemetry published natively (a gateway speaking NATS), until the stream holds all of it;
    ``avoid``: a node that is down."""
    from tests.monitor.conftest import history, values

    rows = history(5000, seed=7)

    async def run() -> None:
        import nats

        servers = [u for i, u in enumerate(stream.cluster.servers) if i != avoid]
        nc = await nats.connect(servers)
        js = nc.jetstream()

        async def last_seq() -> int | None:
            try:
                return int((await js.stream_info(stream.name)).state.last_seq)
            except nats.errors.Error:  # no leader for a moment after a node's loss
                return None

        try:
            before = None
            for _ in range(300):
                before = await last_seq()
                if before is not None:
                    break
                await asyncio.sleep(0.05)
            assert before is not None, "the stream has no leader"
            for seq in seqs:
                for a in assets:
                    payload = wire.encode_telemetry(ts0 + seq, seq, values(rows[seq % len(rows)]))
                    await nc.publish(partitions.subject_of(wire.telemetry_topic(stream.prefix, a)), payload)
            await nc.flush()
            want = before + len(seqs) * len(assets)
            for _ in range(300):
                got = await last_seq()
                if got is not None and got >= want:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("the stream did not receive every message")
        finally:
            await nc.close()

    asyncio.run(run())


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


def checkpoints(stream: Stream, assets: list[str]) -> dict[str, dict[str, Any]]:
    """These assets' checkpoints (those that exist), decoded, as the bucket's leader has them: right after
    a node restarts, a replica that is still catching up may answer a listing or a direct get (a CI run
    missed a key that way), and the monitor itself reads only from the leader. A read the cluster does not
    answer yet (it may hold an election as the node rejoins: a CI run timed out there) is tried again for
    up to 30 s."""

    async def read() -> dict[str, dict[str, Any]]:
        import nats

        nc = await nats.connect(stream.cluster.servers)
        try:
            js, out = nc.jetstream(), {}
            deadline = time.monotonic() + 30
            for a in assets:
                while True:
                    try:
                        found = await leader_value(js, stream.bucket, partitions.key_of(a, stream.parts))
                        break
                    except (nats.errors.Error, TimeoutError):
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.5)
                if found is not None:
                    out[a] = orjson.loads(found[0])
            return out
        finally:
            await nc.close()

    return asyncio.run(read())


def uninterrupted(model: Path, rows: np.ndarray, ts: np.ndarray) -> tuple[dict[str, Any], float, int]:
    """One stream scored in process over all rows: (its state, the last score, alarms raised)."""
    from monitor.detector import model_folder

    det = model_folder.load(model)
    st = det.new_stream()
    res = det.score_many([(st, rows, ts)])[0]
    raised = sum(1 for _, tr in res.transitions if tr.kind == "raised")
    state = orjson.loads(orjson.dumps(st.to_state(), option=orjson.OPT_SERIALIZE_NUMPY))
    return state, float(res.score[-1]), raised


def assert_close(a: Any, b: Any, path: str = "") -> None:
    """Nested numbers, lists and dicts equal up to float tolerance."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (path, sorted(a), sorted(b) if isinstance(b, dict) else b)
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)) and a and isinstance(a[0], (list, tuple, dict)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, (list, tuple, float, int)) and not isinstance(a, bool):
        assert np.allclose(
            np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=1e-9, atol=1e-9, equal_nan=True
        ), path
    else:
        assert a == b, (path, a, b)
