"""One partition's lease in the TTL'd KV bucket: who may pull the partition, decided by compare-and-set.

A lease is the key ``<stream>.p<partition>``; its value names the holder (instance name, index, count)
and this process (a random token). It is created only if absent, renewed by revision and deleted at a
clean stop; the bucket's TTL ends it when its holder stops renewing.

A write whose reply is lost (a NATS node dies while the KV group elects a new leader) may still have
been applied. The revision this process remembers is then one behind, and the next renewal is refused
as if another instance had written the key. Before calling the lease lost, :meth:`PartitionLease.renew`
reads the key: when the value is this process's own, the lost write had landed and its revision is
taken over; only a value written by anyone else (or none: expired) is a lost lease.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import nats.errors
import nats.js.errors
import orjson

#: The bucket's TTL (deploy/nats/leases.json). Renewed every tenth of it: after a NATS node dies the bucket
#: has no leader for several seconds (5-7 s measured in the tests), and leases renewed every third of a 10 s
#: TTL expired during that election (a CI run), restarting monitors for an outage the cluster survived.
TTL_S = 30.0
RENEW_EVERY = 0.1
#: A lease not confirmed for this share of the TTL may have expired at the server: stop pulling until a
#: renewal confirms it, so two instances never pull one partition.
FRESH_FOR = 0.8

Renewal = Literal["renewed", "expired", "taken"]
Read = Callable[[str], Awaitable[tuple[bytes, int] | None]]  # key -> (value, revision) as the leader has it


def holder(instance: str, index: int, instances: int) -> bytes:
    """The value a lease holds: the instance's identity plus a token of this process."""
    token = secrets.token_hex(8)
    return orjson.dumps({"instance": instance, "index": index, "instances": instances, "token": token})


def same_instance(a: bytes, b: bytes) -> bool:
    """Whether two lease values name the same instance (name, index and count), whatever process wrote them."""
    try:
        x, y = orjson.loads(a), orjson.loads(b)
    except orjson.JSONDecodeError:
        return False
    keys = ("instance", "index", "instances")
    return isinstance(x, dict) and isinstance(y, dict) and all(x.get(k) == y.get(k) for k in keys)


class PartitionLease:
    """Take, renew and release one key of the lease bucket on behalf of this process."""

    def __init__(self, kv: Any, read: Read, key: str, me: bytes, ttl: float = TTL_S) -> None:
        self.kv, self.read, self.key, self.me, self.ttl = kv, read, key, me, ttl
        self.revision: int | None = None  # the key's revision this process last wrote; None: not held
        self.confirmed = 0.0  # monotonic time a write that the server confirmed was sent
        self.resyncs = 0  # renewals whose reply was lost but which had landed
        self._gone = False  # the last resync found no key (expired) rather than another's value

    @property
    def held(self) -> bool:
        return self.revision is not None

    @property
    def fresh(self) -> bool:
        """Held and confirmed recently enough that the server cannot have expired it."""
        return self.held and time.monotonic() - self.confirmed < self.ttl * FRESH_FOR

    async def take(self) -> bytes | None:
        """Try once to hold the lease. None: held now (or look again); else the other holder's value.

        An instance restarted under the same identity takes its own lease back without waiting for the TTL.
        Network errors propagate (the caller retries).
        """
        sent = time.monotonic()
        try:
            self.revision, self.confirmed = await self.kv.create(self.key, self.me), sent
            return None
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        held = await self.read(self.key)
        if held is None:
            return None  # released or expired meanwhile: look again
        value, rev = held
        if not same_instance(value, self.me):
            return value
        with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):  # else changed meanwhile: look again
            self.revision, self.confirmed = await self.kv.update(self.key, self.me, last=rev), sent
        return None

    async def renew(self) -> Renewal:
        """Renew by revision: "renewed", or why this process no longer holds the lease and must stop pulling.

        "expired": the key is gone (its TTL passed without a renewal that reached the leader; another instance
        may have pulled the partition meanwhile). "taken": another process wrote it. Network errors propagate:
        the caller retries (and stops pulling once the lease is no longer :attr:`fresh`).
        """
        if self.revision is None:
            return "expired"
        sent = time.monotonic()
        try:
            self.revision, self.confirmed = await self.kv.update(self.key, self.me, last=self.revision), sent
            return "renewed"
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        if not await self._resync():
            return "expired" if self._gone else "taken"
        self.revision, self.confirmed = await self.kv.update(self.key, self.me, last=self.revision), sent
        return "renewed"

    async def _resync(self) -> bool:
        """After a refused write: take over the key's revision if its value is this process's own."""
        held = await self.read(self.key)
        self._gone = held is None
        if held is None or held[0] != self.me:
            self.revision = None
            return False
        self.revision = held[1]  # an earlier write whose reply was lost had been applied
        self.resyncs += 1
        return True

    async def release(self) -> None:
        """Delete the lease (a clean stop); network errors propagate (the lease then expires after its TTL)."""
        if self.revision is None:
            return
        try:
            await self.kv.delete(self.key, last=self.revision)
        except nats.errors.Error:  # a revision one behind (a lost reply) is refused: delete by the actual one
            if not await self._resync():
                return
            await self.kv.delete(self.key, last=self.revision)
        self.revision = None
