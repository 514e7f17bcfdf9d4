"""Each asset's stream state in a JetStream KV bucket, so that it moves with its partition.

One key per asset, ``p<partition>.<asset>`` (:func:`.partitions.key_of`), read when the asset's first
message reaches an instance (after it leased the partition), so a partition taken over during a rolling
restart continues from the checkpoint its previous owner wrote when it stopped.
The value is JSON (numbers, lists, strings: nothing unpickled) with a format version and the id of the
model the stream state belongs to, next to the sequence state, the scored count and the stream's
detector state (window tail, smoothing, rolling threshold, alarm and open episode).

The worker writes the assets it scored every ``checkpoint_interval`` seconds and at a clean stop, and
acknowledges the messages a checkpoint covers only once it is written: after a SIGKILL the stream
redelivers exactly what came after the last checkpoint, and the restored ``seq`` recognises every
message the checkpoint had already seen as a duplicate. Each asset is scored as if nothing happened.

A value that is not JSON, of another format, or (checked by the worker) of another model is refused
with a logged, counted reason (``plantwatch_checkpoints_total``) and that asset warms up afresh.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import CancelledError

import nats.errors
import nats.js.errors
import orjson

from .. import logs
from . import partitions
from .jetstream_session import JetStreamSession
from .metrics import State
from .state_store import Record

log = logs.get("checkpoints")

FORMAT = 1
_TIMEOUT_S = 10.0


class KvCheckpoints:
    """The worker's state store when the source is JetStream (same calls as :class:`.state_store.StateStore`)."""

    #: the worker acknowledges a message only once a checkpoint covers it
    before_ack = True

    def __init__(self, session: JetStreamSession, state: State, interval: float) -> None:
        self.session, self.state, self.interval = session, state, interval
        self.partitions = session.src.partitions
        self.retained: dict[str, str] = {}  # a stream has no retained messages; the worker's interface has it
        self.failed: str | None = None
        self.withheld = False  # a lease was lost: no checkpoint is written any more
        #: acknowledgements held at most this many before a checkpoint is written early
        self.max_unacked = max(1, session.src.max_ack_pending * len(session.owned) // 2)

    # ------------------------------------------------------------ reading

    def load(self) -> dict[str, Record]:
        """Nothing up front: a partition may still be leased by another instance when this one starts, so
        each asset's checkpoint is read when its first message arrives (:meth:`fetch`), after the lease."""
        return {}

    def fetch(self, asset: str) -> Record | None:
        """The asset's checkpoint (None: none, or refused: counted, logged, the asset warms up afresh)."""
        key = partitions.key_of(asset, self.partitions)
        value: bytes | None = self.session.call(self._get(key), _TIMEOUT_S)
        if value is None:
            return None
        try:
            doc = orjson.loads(value)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:  # orjson.JSONDecodeError is one
            self._refused("refused_corrupt", key, str(exc))
            return None
        if doc.get("format") != FORMAT:
            self._refused("refused_format", key, f"format {doc.get('format')!r}, this monitor reads {FORMAT}")
            return None
        if doc.get("asset") != asset:
            self._refused("refused_corrupt", key, f"holds asset {doc.get('asset')!r}")
            return None
        return {k: doc.get(k) for k in ("seq", "scored", "model", "stream")}

    def _refused(self, result: str, key: str, why: str) -> None:
        with self.state.lock:
            self.state.checkpoints[result] += 1
        log.warning("checkpoint_refused", key=key, reason=why[:200], note="this asset warms up afresh")

    async def _get(self, key: str) -> bytes | None:
        found = await self.session.last_value(self.session.src.bucket, key)  # the leader's: never stale
        return None if found is None else found[0]

    # ------------------------------------------------------------ writing

    def write_streams(self, records: dict[str, Record]) -> bool:
        """Put these assets' records; False (logged once per kind of failure, counted) if any put failed."""
        now, src = time.time(), self.session.src
        if self.session.lease_lost:  # the new owner's checkpoints may be newer: this instance writes none,
            if not self.withheld:  # and what it scored stays unacknowledged, redelivered as after a crash
                log.warning("checkpoints_withheld", note="a partition's lease was lost; the instance is stopping")
            self.withheld = True
            return False
        values = {
            partitions.key_of(name, self.partitions): orjson.dumps(
                {"format": FORMAT, "asset": name, "written": now, "instance": src.instance_index, **rec},
                option=orjson.OPT_SERIALIZE_NUMPY,
            )
            for name, rec in records.items()
        }
        try:
            self.session.call(self._put_all(values), _TIMEOUT_S)
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError, OSError, CancelledError, RuntimeError) as exc:
            # CancelledError, RuntimeError: the client's loop was stopped under a stop's last try
            reason = str(exc)[:200] or type(exc).__name__
            with self.state.lock:
                self.state.checkpoints["write_failed"] += len(values)
            if reason != self.failed:
                log.error("checkpoint_write_failed", bucket=src.bucket, reason=reason,
                          note="the messages it covers stay unacknowledged and are retried")  # fmt: skip
            self.failed = reason
            return False
        with self.state.lock:
            self.state.checkpoints["written"] += len(values)
        if self.failed is not None:
            log.info("checkpoint_write_recovered", bucket=src.bucket)
            self.failed = None
        return True

    write_seq = write_streams

    async def _put_all(self, values: dict[str, bytes]) -> None:
        kv = self.session.kv
        await asyncio.gather(*(kv.put(k, v) for k, v in values.items()))
