"""Where a message enters from NATS JetStream: one durable pull consumer per owned partition.

The asyncio client runs on its own thread. Each owned partition's task fetches what the bounded intake
queue has room for (the rest stays in the stream: backpressure, with ``max_ack_pending`` capping what
the server hands out) and puts ``(topic, payload, received_at, id, 1, 0, False)`` items on the queue,
the same items the MQTT session makes, so the worker is the same. Nothing is acknowledged here: the
worker calls :meth:`JetStreamSession.ack` once a message is scored (and, with checkpoints, once a
checkpoint in the KV bucket covers it), so a crash leaves it to redelivery after ``ack_wait``.

Every message names its partition (the subject's second token); one that is not this instance's is
counted (``plantwatch_jetstream_messages_total{kind="foreign"}``), so "only own partitions reach an
instance" is measured, not assumed. A redelivery (``num_delivered > 1``) is counted too; the worker
recognises the ones it had scored by their ``seq``.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.js import api

from .. import logs, wire
from ..config import MonitorConfig
from ..errors import BrokerError, ConfigError, PlantwatchError
from . import partition_lease, partitions
from .batch_queue import BatchQueue
from .metrics import State
from .mqtt_session import Item
from .partition_lease import PartitionLease

log = logs.get("jetstream")
T = TypeVar("T")

FETCH_MAX = 500  # messages asked for in one pull request
CONNECT_TIMEOUT_S = 5.0


class JetStreamSession:
    """The intake of one monitor instance: its partitions' durable consumers, acks and publishes."""

    def __init__(self, cfg: MonitorConfig, queue: BatchQueue[Item], state: State) -> None:
        s = cfg.source
        self.cfg, self.src, self.queue, self.state = cfg, s, queue, state
        self.owned = partitions.owned(s.instance_index, s.instances, s.partitions)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.withheld = 0
        self.head = ""  # the partitioned subjects' first token (from the stream's transform)
        self.nc: Any = None
        self.js: Any = None
        self.kv: Any = None
        self.leases: Any = None
        self.lease_ttl = partition_lease.TTL_S
        self._leases: dict[int, PartitionLease] = {}  # the partitions this instance holds
        self._me = partition_lease.holder(cfg.instance, s.instance_index, s.instances)
        self.fatal: str | None = None  # why this instance must end (a lease lost)
        self.lease_lost = False  # its checkpoints may be older than the new owner's: none is written at the stop
        self._status = partitions.subject_of(wire.status_topic(cfg.prefix, cfg.instance))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="plantwatch-jetstream", daemon=True)
        self._inflight: dict[int, tuple[int, Any]] = {}  # id -> (partition, message) until acknowledged
        self._ids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._intake_open = True
        self._acking: set[asyncio.Future[None]] = set()
        self._start_errors: list[Exception] = []  # what each try reported until the first connection

    # ------------------------------------------------------------ thread bridge

    def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the client's loop and wait for its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # ------------------------------------------------------------ start

    def start(self) -> None:
        """Connect, check the stream (and bucket), bind the owned partitions' consumers.

        Raises ConfigError (wrong credentials, no stream or bucket, partition count mismatch) or
        BrokerError (no server answers) with one line saying which.
        """
        self._thread.start()
        try:
            self.call(self._start(), CONNECT_TIMEOUT_S * 3 + 10)
        except BaseException:
            self._stop_loop()
            raise
        log.info("jetstream_subscribed", stream=self.src.stream, partitions=list(self.owned),
                 instance_index=self.src.instance_index, instances=self.src.instances)  # fmt: skip

    async def _start(self) -> None:
        s = self.src
        try:
            self.nc = await nats.connect(**self._options())
        except (TimeoutError, nats.errors.Error, OSError, ssl.SSLError) as exc:
            raise start_failure(self._start_errors, exc, s.servers, s.user or s.creds_file or "anonymous") from None
        self.nc.options["max_reconnect_attempts"] = -1  # bounded tries at start (a clear error), forever once up
        self.connected.set()
        with self.state.lock:
            self.state.connects += 1
        self.js = self.nc.jetstream()
        self.head = await self._check_stream()
        if s.checkpoint_interval > 0:
            try:
                self.kv = await self.js.key_value(s.bucket)
            except nats.js.errors.BucketNotFoundError:
                raise ConfigError(
                    f"source.bucket: no KV bucket {s.bucket!r} (create it as deploy/nats/README.md says, "
                    "or set source.checkpoint_interval = 0 to run without checkpoints)"
                ) from None
        try:
            self.leases = await self.js.key_value(s.leases)
        except nats.js.errors.BucketNotFoundError:
            raise ConfigError(
                f"source.leases: no KV bucket {s.leases!r} for the partition leases "
                "(create it with a TTL as deploy/nats/README.md says)"
            ) from None
        ttl = (await self.leases.status()).ttl
        self.lease_ttl = float(ttl) if ttl else partition_lease.TTL_S
        for p in self.owned:
            self._tasks.append(asyncio.ensure_future(self._own(p)))
        # operators' requests (plantwatch suppress/accept/feedback), published on <prefix>/_monitor/control/<user>
        # over MQTT or natively: every instance takes them (each applies them to its own assets), unacknowledged
        control = partitions.subject_of(wire.control_filter(self.cfg.prefix)).replace("+", "*")
        await self.nc.subscribe(control, cb=self._control)
        await self.nc.publish(self._status, wire.STATUS_ONLINE)
        self.subscribed.set()

    # ------------------------------------------------------------ partition leases

    async def _own(self, p: int) -> None:
        """:meth:`_hold`; an error it cannot retry ends the instance (logged), never one partition silently."""
        try:
            await self._hold(p)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.fatal = f"partition {p}: {str(exc)[:200] or type(exc).__name__}"
            log.exception("partition_failed", partition=p, note="exiting: the supervisor restarts this instance")

    async def _hold(self, p: int) -> None:
        """Hold partition ``p``'s lease (:mod:`.partition_lease`), then pull it; renew every tenth of the TTL.

        A partition still leased by another instance (an instance of the old count during a rolling restart
        with a new one) waits until that one stops or its lease expires; the same instance restarted (same
        name, index and count) takes its own back at once. A lease lost to another instance ends this one
        (exit 1: its supervisor restarts it).
        """
        lease = PartitionLease(self.leases, lambda key: self.last_value(self.src.leases, key),
                               f"{self.src.stream}.p{p}", self._me, self.lease_ttl)  # fmt: skip
        waiting = False
        while not lease.held:
            try:
                other = await lease.take()
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("partition_lease_failed", partition=p, reason=str(exc)[:200] or type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            if other is None:  # held now, or changed meanwhile (a replica may lag the leader): look again soon
                await asyncio.sleep(0 if lease.held else 0.1)
                continue
            if not waiting:
                waiting = True
                self._count_partition("waiting", +1)
                log.info("partition_waiting", partition=p, held_by=other.decode(errors="replace"),
                         note="until that instance stops or its lease expires")  # fmt: skip
            await asyncio.sleep(0.5)
        if waiting:
            self._count_partition("waiting", -1)
        self._leases[p] = lease
        self._count_partition("held", +1)
        sub = await self._bind(p)
        log.info("partition_taken", partition=p, waited=waiting)
        pull = asyncio.ensure_future(self._pull(p, sub))
        self._tasks.append(pull)
        while not pull.done():
            await asyncio.sleep(self.lease_ttl * partition_lease.RENEW_EVERY)
            resyncs = lease.resyncs
            try:
                renewal = await lease.renew()
            except (nats.errors.Error, TimeoutError) as exc:  # retried; pulling pauses once the lease is not fresh
                log.warning("partition_lease_not_renewed", partition=p, reason=str(exc)[:200] or type(exc).__name__)
                continue
            finally:
                if lease.resyncs > resyncs:
                    log.info("partition_lease_resynced", partition=p,
                             note="a write whose reply was lost had been applied; the lease is still this instance's")  # fmt: skip
            if renewal != "renewed":
                why = "taken by another instance" if renewal == "taken" else "expired before a renewal reached NATS"
                self.fatal, self.lease_lost = f"the lease of partition {p} was {why}", True
                log.error("partition_lease_lost", partition=p, why=renewal,
                          note="exiting: the supervisor restarts this instance, which resumes from the checkpoints")  # fmt: skip
                pull.cancel()
                self._leases.pop(p, None)
                return

    async def last_value(self, bucket: str, key: str) -> tuple[bytes, int] | None:
        """:func:`leader_value` on this session's connection."""
        return await leader_value(self.js, bucket, key)

    def _count_partition(self, state: str, step: int) -> None:
        with self.state.lock:
            self.state.partitions[state] += step

    async def _bind(self, p: int) -> Any:
        s = self.src
        name = f"plantwatch-p{p}"
        subject = f"{self.head}.{p}.>"
        config = api.ConsumerConfig(
            durable_name=name,
            filter_subject=subject,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            max_ack_pending=s.max_ack_pending,
            ack_wait=s.ack_wait,
        )
        try:
            info = await self.js.consumer_info(s.stream, name)
        except nats.js.errors.NotFoundError:
            info = None
        if info is not None and info.num_ack_pending:
            # a previous holder was given messages it never acknowledged: JetStream would hand out newer ones
            # first and those only after ack_wait, out of order. Re-create the consumer (this instance holds the
            # partition's lease): on the work queue the acknowledged messages are gone, so delivery resumes in
            # stream order at the first unacknowledged one.
            await self.js.delete_consumer(s.stream, name)
            log.info("partition_rewound", partition=p, unacknowledged=info.num_ack_pending)
        return await self.js.pull_subscribe(subject, durable=name, stream=s.stream, config=config)

    async def _release(self) -> None:
        """Delete the leases this instance holds (a clean stop: its checkpoints and acks are out)."""
        for p, lease in list(self._leases.items()):
            try:
                await lease.release()
            except nats.errors.Error as exc:
                log.warning("partition_lease_not_released", partition=p, reason=str(exc)[:200] or type(exc).__name__,
                            note="it expires after its TTL")  # fmt: skip
        self._leases.clear()

    async def _check_stream(self) -> str:
        s = self.src
        try:
            info = await self.js.stream_info(s.stream)
        except nats.js.errors.NotFoundError:
            raise ConfigError(
                f"source.stream: no stream {s.stream!r} on the NATS servers (create it as deploy/nats/README.md says)"
            ) from None
        except nats.errors.TimeoutError:
            raise BrokerError(
                "source.servers: JetStream did not answer (is it enabled, has the cluster a leader?)"
            ) from None
        t = info.config.subject_transform
        found = partitions.partitions_of_dest(t.dest) if t is not None and t.dest else None
        if found is None:
            raise ConfigError(f"source.stream: stream {s.stream!r} has no partition() subject transform")
        if found != s.partitions:
            raise ConfigError(
                f"source.partitions: {s.partitions}, but stream {s.stream!r} has {found} partitions "
                "(its subject transform); they must be equal"
            )
        return str(t.dest.split(".", 1)[0])

    def _options(self) -> dict[str, Any]:
        s = self.src
        opts: dict[str, Any] = {
            "servers": list(s.servers),
            "connect_timeout": CONNECT_TIMEOUT_S,
            "max_reconnect_attempts": 2,
            "reconnect_time_wait": 0.5,
            "allow_reconnect": True,
            "name": f"plantwatch-{self.cfg.instance}-{s.instance_index}",
            "disconnected_cb": self._disconnected,
            "reconnected_cb": self._reconnected,
            "error_cb": self._error,
        }
        if s.user:
            opts["user"] = s.user
            opts["password"] = self._password()
        if s.creds_file:
            opts["user_credentials"] = s.creds_file
        if s.ca_file or s.cert_file or any(u.startswith("tls://") for u in s.servers):
            ctx = ssl.create_default_context(cafile=s.ca_file)
            if s.cert_file:
                ctx.load_cert_chain(s.cert_file, s.key_file)
            opts["tls"] = ctx
        return opts

    def _password(self) -> str:
        import os

        s = self.src
        if s.password_env:
            return os.environ.get(s.password_env, "")
        if s.password_file:
            return Path(s.password_file).read_text().strip()
        return ""

    async def _disconnected(self) -> None:
        self.connected.clear()
        log.warning("jetstream_disconnected", note="reconnecting; unacknowledged messages are redelivered")

    async def _reconnected(self) -> None:
        self.connected.set()
        with self.state.lock:
            self.state.connects += 1
        log.info("jetstream_reconnected", server=str(getattr(self.nc, "connected_url", "")))

    async def _error(self, exc: Exception) -> None:
        if self.nc is None:  # at start: said in one line once connecting gives up (a few tries, bounded)
            self._start_errors.append(exc)
        else:
            log.warning("jetstream_error", reason=str(exc)[:200] or type(exc).__name__)

    # ------------------------------------------------------------ intake

    async def _pull(self, p: int, sub: Any) -> None:
        q, owned, head = self.queue, set(self.owned), len(self.head) + 1
        lease, paused = self._leases[p], False
        while self._intake_open:
            if not lease.fresh:  # renewals have failed for most of the TTL: another may hold it by now
                if not paused:
                    paused = True
                    log.warning("partition_paused", partition=p,
                                note="its lease is not confirmed; pulling resumes when a renewal reaches NATS")  # fmt: skip
                await asyncio.sleep(0.5)
                continue
            if paused:
                paused = False
                log.info("partition_resumed", partition=p)
            room = q.maxsize - q.qsize()
            if room < 1:
                await asyncio.sleep(0.002)
                continue
            try:
                msgs = await sub.fetch(min(FETCH_MAX, room), timeout=0.5)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except asyncio.CancelledError:
                return
            except Exception as exc:  # a partition's task must never end while the instance runs
                log.warning("jetstream_fetch_failed", partition=p, reason=str(exc)[:200] or type(exc).__name__)
                await asyncio.sleep(0.5)
                continue
            await self._take(p, msgs, owned, head)

    async def _take(self, p: int, msgs: list[Any], owned: set[int], head: int) -> None:
        now = time.time()
        own = foreign = redelivered = 0
        for m in msgs:
            part, _, rest = m.subject[head:].partition(".")
            if part.isdigit() and int(part) in owned:
                own += 1
            else:
                foreign += 1
            if m.metadata.num_delivered > 1:
                redelivered += 1
            mid = next(self._ids)
            self._inflight[mid] = (p, m)
            item: Item = (partitions.topic_of(rest), m.data, now, mid, 1, 0, False)
            while not self.queue.put(item, 0):
                if not self._intake_open:
                    self.withheld += 1
                    break
                await asyncio.sleep(0.002)
        with self.state.lock:
            js = self.state.jetstream
            js["own"] += own
            js["foreign"] += foreign
            js["redelivered"] += redelivered

    async def _control(self, m: Any) -> None:
        item: Item = (partitions.topic_of(m.subject), m.data, time.time(), 0, 0, 0, False)  # id 0: nothing to ack
        while self._intake_open and not self.queue.put(item, 0):
            await asyncio.sleep(0.002)

    # ------------------------------------------------------------ used by the daemon and the worker

    def ack(self, items: list[Item]) -> None:
        """Acknowledge handled messages (from the worker's thread)."""
        mids = [item[3] for item in items]
        self._loop.call_soon_threadsafe(self._ack_now, mids)

    def _ack_now(self, mids: list[int]) -> None:
        """Acknowledge each handled message by itself (ack policy ``explicit``): an ``all`` acknowledgement
        of a newer message would also cover older ones a previous owner had been given but never handled,
        which JetStream redelivers only after ``ack_wait`` (the failover test loses them that way)."""
        inflight = self._inflight
        replies = [e[1].reply for e in (inflight.pop(i, None) for i in mids) if e is not None]
        if replies and self.nc is not None:
            task = asyncio.ensure_future(self._publish_all(replies))
            self._acking.add(task)
            task.add_done_callback(self._acking.discard)

    async def _publish_all(self, replies: list[str]) -> None:
        try:
            for r in replies:
                await self.nc.publish(r, b"+ACK")
        except nats.errors.Error as exc:
            log.warning("ack_failed", messages=len(replies), reason=str(exc)[:200], note="they are redelivered")

    def publish(self, topic: str, payload: bytes, retain: bool = True) -> None:
        """Publish on the topic's subject (alarm events, status); MQTT subscribers of NATS see it, unretained."""
        subject = partitions.subject_of(topic)
        self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._publish_one(subject, payload)))

    async def _publish_one(self, subject: str, payload: bytes) -> None:
        try:
            await self.nc.publish(subject, payload)
        except nats.errors.Error as exc:
            log.warning("publish_failed", subject=subject[:200], reason=str(exc)[:200])

    def command(self, topic: str, payload: bytes) -> None:
        """An unretained message (operators' replies; a Sparkplug command has no use on this source)."""
        self.publish(topic, payload, retain=False)

    def close_intake(self) -> None:
        """Stop taking messages (the first step of a stop); later ones stay in the stream."""
        self._intake_open = False
        self.queue.wake()

    def close(self, timeout: float = 2.0) -> None:
        """Publish ``offline``, flush the acknowledgements, disconnect and end the client's thread."""
        if self._thread.is_alive():
            try:
                self.call(self._close(), timeout + 1)
            except Exception as exc:  # closing must end the process whatever the network does
                log.warning("jetstream_close_failed", reason=str(exc)[:200])
        self._stop_loop()
        left = len(self._inflight) + self.withheld
        if left:
            log.info("messages_left_at_broker", count=left)

    async def _close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, *self._acking, return_exceptions=True)
        if self.nc is not None and self.nc.is_connected:
            await self.nc.flush(2)  # the acknowledgements are at the server before the leases go
            await self._release()
        if self.nc is not None and self.nc.is_connected:
            await self.nc.publish(self._status, wire.STATUS_OFFLINE)
            await self.nc.flush(2)
        if self.nc is not None:
            await self.nc.close()
        self.connected.clear()

    def _stop_loop(self) -> None:
        """Cancel what still runs on the client's loop (the client's own tasks too), then end its thread."""
        if self._thread.is_alive():
            try:
                self.call(self._cancel_all(), 5)
            except Exception as exc:  # a stuck task must not keep the process alive
                log.warning("jetstream_tasks_not_ended", reason=str(exc)[:200] or type(exc).__name__)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()

    async def _cancel_all(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()
        me = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not me]
        for t in rest:
            t.cancel()
        await asyncio.gather(*rest, return_exceptions=True)


def start_failure(tried: list[Exception], final: BaseException, servers: list[str], who: str) -> PlantwatchError:
    """Why the first connection failed, in one line: the credentials, when any try was refused for them.

    A server that refuses a login writes ``-ERR 'Authorization Violation'`` and closes; a client still
    writing then reads a reset instead, so a try (or the later ones) can end in "Connection reset by peer"
    after the refusal (a CI run said "cannot connect" for a wrong password). Otherwise the last error a try
    reported (more telling than the final "no servers available"), or ``final``.
    """
    if any(isinstance(e, nats.errors.AuthorizationError) or "uthorization" in str(e) for e in (*tried, final)):
        return ConfigError(f"source.user: the NATS servers refused the credentials of {who}")
    last = tried[-1] if tried else final
    return BrokerError(f"source.servers: cannot connect to {', '.join(servers)}: {str(last) or type(last).__name__}")


async def leader_value(js: Any, bucket: str, key: str) -> tuple[bytes, int] | None:
    """A KV key's value and revision as the bucket's leader has it (None: absent or deleted).

    Not ``kv.get``: on a replicated bucket a direct get may be answered by a follower that has not
    applied the newest write yet, and a checkpoint or lease read stale would restore an older state.
    """
    try:
        msg = await js.get_last_msg(f"KV_{bucket}", f"$KV.{bucket}.{key}")
    except nats.js.errors.NotFoundError:
        return None
    if msg.headers and msg.headers.get("KV-Operation") in ("DEL", "PURGE"):
        return None
    return bytes(msg.data or b""), int(msg.seq or 0)
