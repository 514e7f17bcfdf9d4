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
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import nats.js.errors
import orjson

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

    def __init__(self, kv: Any, read: Read, key: str, me: bytes) -> None:
        self.kv, self.read, self.key, self.me = kv, read, key, me
        self.revision: int | None = None  # the key's revision this process last wrote; None: not held
        self.resyncs = 0  # renewals whose reply was lost but which had landed

    async def take(self) -> bytes | None:
        """Try once to hold the lease. None: held now (or look again at once); else the other holder's value.

        An instance restarted under the same identity takes its own lease back without waiting for the TTL.
        Network errors propagate (the caller retries).
        """
        try:
            self.revision = await self.kv.create(self.key, self.me)
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
            self.revision = await self.kv.update(self.key, self.me, last=rev)
        return None

    @property
    def held(self) -> bool:
        return self.revision is not None

    async def renew(self) -> Renewal:
        """Renew by revision: "renewed", or why this process no longer holds the lease and must stop pulling.

        "expired": the key is gone (its TTL passed without a renewal that reached the leader; another instance
        may have pulled the partition meanwhile). "taken": another process wrote it. Network errors propagate:
        the caller retries while the TTL lasts.
        """
        for _ in range(2):
            try:
                self.revision = await self.kv.update(self.key, self.me, last=self.revision)
                return "renewed"
            except nats.js.errors.KeyWrongLastSequenceError:
                held = await self.read(self.key)
            if held is None or held[0] != self.me:
                self.revision = None
                return "expired" if held is None else "taken"
            self.revision = held[1]  # an earlier write whose reply was lost had been applied: renew from it
            self.resyncs += 1
        self.revision = None
        return "taken"

    async def release(self) -> None:
        """Delete the lease (a clean stop); network errors propagate (the lease then expires after its TTL)."""
        if self.revision is not None:
            rev, self.revision = self.revision, None
            await self.kv.delete(self.key, last=rev)
