"""Checkpoints that cannot be used: corrupt, of another format, of another model. Each is refused with a
logged, counted reason and that asset warms up afresh; nothing is lost and the monitor goes on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

from monitor.daemon import State, partitions
from monitor.daemon.jetstream_checkpoints import KvCheckpoints
from tests.monitor.conftest import MonitorProcess, wait_until
from tests.monitor.daemon.jetstream.helpers import Stream, counter, publish_native, scored, start
from tests.nats_cluster import NatsCluster

ASSETS = ["bad-json", "old-format", "other-model"]


def _overwrite(stream: Stream, values: dict[str, bytes]) -> None:
    async def run() -> None:
        import nats

        nc = await nats.connect(stream.cluster.servers)
        try:
            kv = await nc.jetstream().key_value(stream.bucket)
            for asset, value in values.items():
                await kv.put(partitions.key_of(asset, stream.parts), value)
        finally:
            await nc.close()

    asyncio.run(run())


def test_corrupt_foreign_and_other_model_checkpoints_are_refused_counted_and_the_assets_warm_up_afresh(
    nats_cluster: NatsCluster,
    model_dir: Path,
    second_model_dir: Path,
    monitor_process: Callable[..., MonitorProcess],
) -> None:
    stream = Stream(nats_cluster)
    n = 30
    ts0 = time.time() - 3 * n
    first = start(monitor_process, stream, second_model_dir, 0, 1)
    first.wait_ready(40)
    publish_native(stream, ASSETS, range(n), ts0)
    wait_until(lambda: all(scored(first, a) == n for a in ASSETS), 40, "the first model scored")
    assert first.stop()[0] == 0  # genuine checkpoints of the other model
    _overwrite(
        stream,
        {
            "bad-json": b"\x00 not json",
            "old-format": orjson.dumps({"format": 99, "asset": "old-format", "scored": n}),
        },
    )
    second = start(monitor_process, stream, model_dir, 0, 1)
    second.wait_ready(40)
    publish_native(stream, ASSETS, range(n, 2 * n), ts0)
    wait_until(lambda: all(scored(second, a) == n for a in ASSETS), 40, "the second run scored")
    for result in ("refused_corrupt", "refused_format", "refused_model"):
        assert counter(second, "plantwatch_checkpoints_total", result=result) == 1, result
    assert counter(second, "plantwatch_checkpoints_total", result="restored") == 0
    assert counter(second, "plantwatch_messages_rejected_total", reason="duplicate") == 0
    assert second.stop()[0] == 0
    events = second.events()
    refused = {e["key"]: e["reason"] for e in events if e["event"] == "checkpoint_refused"}
    assert set(refused) == {partitions.key_of(a, stream.parts) for a in ("bad-json", "old-format")}
    assert "format 99" in refused[partitions.key_of("old-format", stream.parts)]
    other = [e for e in events if e["event"] == "stream_not_restored"]
    assert [e["asset"] for e in other] == ["other-model"] and "another model" in other[0]["reason"]
    # the other model's asset kept its seq bookkeeping: it continued at seq n, its stream warmed up afresh
    final = {e["asset"]: e for e in events if e["event"] == "stream_final"}
    assert final["other-model"]["last_seq"] == 2 * n - 1 and final["other-model"]["messages"] == n


def test_after_a_lost_lease_no_checkpoint_is_written_periodic_or_final() -> None:
    """The new owner's checkpoints may be newer: every write is refused (so nothing is acknowledged) before
    anything is sent. The session is a stand-in that only records what would have been sent."""
    sent: list[Any] = []

    def call(coro: Any, timeout: float) -> None:
        coro.close()
        sent.append(timeout)

    src = SimpleNamespace(partitions=6, max_ack_pending=100, instance_index=0, bucket="b")
    session = SimpleNamespace(src=src, owned=[0, 3], lease_lost=False, call=call)
    state = State()
    store = KvCheckpoints(session, state, 1.0)  # type: ignore[arg-type]
    record = {"seq": {"last": 1}, "scored": 2, "model": "m", "stream": None}
    assert store.write_streams({"pump-1": record}) and len(sent) == 1
    session.lease_lost = True
    assert store.write_streams({"pump-1": record}) is False and store.withheld
    assert len(sent) == 1 and state.checkpoints["written"] == 1
