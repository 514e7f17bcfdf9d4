"""Partition leases on a real replicated KV bucket, with the one thing a test cannot make a cluster do on cue
simulated: a write that the leader applied but whose reply never came back (a node died meanwhile)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import pytest

from monitor.daemon import jetstream_setup as setup
from monitor.daemon.jetstream_session import leader_value
from monitor.daemon.partition_lease import TTL_S, PartitionLease, holder, same_instance
from tests.nats_cluster import NatsCluster

_names = itertools.count()


class LostReplies:
    """The real bucket, except that the next ``lose`` writes are applied and then answered by a timeout."""

    def __init__(self, kv: Any) -> None:
        self.kv, self.lose = kv, 0

    async def _maybe_lose(self, rev: int) -> int:
        if self.lose:
            self.lose -= 1
            raise TimeoutError("reply lost")
        return rev

    async def create(self, key: str, value: bytes) -> int:
        return await self._maybe_lose(await self.kv.create(key, value))

    async def update(self, key: str, value: bytes, last: int | None = None) -> int:
        return await self._maybe_lose(await self.kv.update(key, value, last=last))

    async def delete(self, key: str, last: int | None = None) -> bool:
        return bool(await self.kv.delete(key, last=last))


Body = Callable[[Any, Callable[[bytes], PartitionLease]], Awaitable[None]]


def run(cluster: NatsCluster, body: Body, ttl: float = TTL_S) -> None:
    """``body(bucket, lease_of)`` against a fresh R3 lease bucket; ``lease_of(me)`` makes a lease of key p0."""

    async def main() -> None:
        name = f"leases{next(_names)}"
        nc = await nats.connect(cluster.servers, connect_timeout=5)
        try:
            js = nc.jetstream()
            kv = await js.create_key_value(setup.leases_config(name, replicas=3, ttl=ttl))
            bucket = LostReplies(kv)

            def lease_of(me: bytes) -> PartitionLease:
                return PartitionLease(bucket, lambda key: leader_value(js, name, key), "S.p0", me, ttl)

            await body(bucket, lease_of)
        finally:
            await nc.close()

    asyncio.run(main())


def test_a_renewal_whose_reply_was_lost_but_which_landed_keeps_the_lease(nats_cluster: NatsCluster) -> None:
    """The CI failure this guards against: after a NATS node was killed, an instance read its own landed
    renewal as another instance's write and exited 1."""

    async def body(bucket: LostReplies, lease_of: Callable[[bytes], PartitionLease]) -> None:
        me = holder("m0", 0, 3)
        lease = lease_of(me)
        assert await lease.take() is None and lease.held
        bucket.lose = 1
        with pytest.raises(TimeoutError):
            await lease.renew()  # the caller logs it and tries again a tenth of the TTL later
        assert await lease.renew() == "renewed"
        assert lease.resyncs == 1
        value, rev = await lease.read("S.p0") or (b"", 0)
        assert (value, rev) == (me, lease.revision)
        bucket.lose = 1
        with pytest.raises(TimeoutError):
            await lease.renew()
        await lease.release()  # by the revision the lost reply would have said, not the one remembered
        assert await lease.read("S.p0") is None and not lease.held

    run(nats_cluster, body)


def test_a_lease_written_by_another_instance_or_expired_is_lost(nats_cluster: NatsCluster) -> None:
    async def body(bucket: LostReplies, lease_of: Callable[[bytes], PartitionLease]) -> None:
        lease = lease_of(holder("m0", 0, 3))
        assert await lease.take() is None and lease.held
        other = holder("m1", 1, 3)
        await bucket.kv.put("S.p0", other)  # what a second holder of the key would write
        assert await lease.renew() == "taken" and not lease.held
        assert await lease_of(holder("m0", 0, 3)).take() == other  # a new instance waits for it

        gone = lease_of(holder("m2", 2, 3))
        await bucket.kv.delete("S.p0")
        assert await gone.take() is None and gone.held
        await bucket.kv.purge("S.p0")  # an operator's purge
        assert await gone.renew() == "expired" and not gone.held
        assert await gone.renew() == "expired"  # never written again without take()

    run(nats_cluster, body)


def test_a_lease_past_its_ttl_is_expired_and_no_longer_fresh(nats_cluster: NatsCluster) -> None:
    async def body(bucket: LostReplies, lease_of: Callable[[bytes], PartitionLease]) -> None:
        lease = lease_of(holder("m0", 0, 3))
        assert await lease.take() is None and lease.fresh
        deadline = time.monotonic() + 15
        while await lease.read("S.p0") is not None:  # the server's TTL removes the message itself
            assert time.monotonic() < deadline, "the lease never expired"
            await asyncio.sleep(0.2)
        assert not lease.fresh  # the pull paused before this point
        assert await lease.renew() == "expired"

    run(nats_cluster, body, ttl=1.0)


def test_a_restarted_instance_takes_its_own_lease_back_and_a_lost_create_reply_is_recovered(
    nats_cluster: NatsCluster,
) -> None:
    async def body(bucket: LostReplies, lease_of: Callable[[bytes], PartitionLease]) -> None:
        first = lease_of(holder("m0", 0, 3))
        bucket.lose = 1
        with pytest.raises(TimeoutError):
            await first.take()  # created, reply lost
        assert not first.held
        assert await first.take() is None and first.held  # its own value: taken over
        again = lease_of(holder("m0", 0, 3))  # the same instance restarted (a new process token)
        assert await again.take() is None and again.held
        assert await first.renew() == "taken"  # the old process's value is replaced: it may not go on
        assert await again.renew() == "renewed"
        assert await lease_of(holder("m0", 0, 2)).take() is not None  # another count: not the same instance

    run(nats_cluster, body)


def test_same_instance_compares_identity_not_process() -> None:
    assert same_instance(holder("a", 0, 2), holder("a", 0, 2))
    assert not same_instance(holder("a", 0, 2), holder("a", 1, 2))
    assert not same_instance(holder("a", 0, 2), b"not json")
    assert not same_instance(b"[1]", b"[1]")
