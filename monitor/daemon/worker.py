"""Where a message is scored: micro-batches from the intake queue through one forward pass.

One thread. It takes up to ``batch_max_size`` messages (waiting at most
``batch_max_time`` for the batch to fill), decodes each into a preallocated
row of its model's buffer, orders each asset's rows by ``seq`` (dropping
redeliveries, counting gaps), scores every asset of a model in a single
:meth:`Detector.score_many` call, writes the results into the metrics state
under one lock, publishes alarm transitions and only then acknowledges every
message of the batch, scored or rejected.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .. import logs, wire
from ..config import MonitorConfig
from ..detector import AlarmLogic, Detector, StreamResult, StreamState, single_thread
from ..missing import Filler
from ..sparkplug import ReadBatch, ReadProcess
from ..wire import Rejection, RowDecoder
from .alarm_events import reset_event, transition_event
from .batch_queue import BatchQueue
from .drift import FOLD_EVERY_S, Drift, Reference, Sums, accumulate, worst
from .feedback import Feedback
from .log_sampler import LogSampler
from .metrics import AssetStats, State
from .model_registry import LoadedModel, ModelSet
from .mqtt_session import Item
from .read_ahead import ReadAhead
from .sequence import Sequence
from .shadow import ShadowLog
from .sparkplug_intake import SparkplugIntake
from .state_store import SEQ_EVERY_N, SEQ_EVERY_S, Record, StateStore

if TYPE_CHECKING:
    from .jetstream_checkpoints import KvCheckpoints
from .suppression import Gate, Mute, store_for

log = logs.get("worker")
_TAKE_TIMEOUT_S = 0.1
_RETAINED_KEPT = 10_000  # topics whose retained message is remembered as handled (the oldest forgotten first)
FINAL_RETRY_S = 0.25  # between tries of a final checkpoint the KV bucket refused


class _Slot:
    """A model's preallocated row buffer for one batch."""

    def __init__(self, model: LoadedModel, rows: int) -> None:
        self.decoder = RowDecoder(model.detector.sensors, model.optional)
        self.buf = np.zeros((rows, model.detector.n_sensors))
        self.fill = 0
        self.bounds = model.bounds or model.detector.bounds

    def out_of_range(self) -> np.ndarray | None:
        """(fill,) True where a row of this batch holds an implausible value; None when none does (the rule)."""
        rows = self.buf[: self.fill]
        bad = (rows < self.bounds.lower) | (rows > self.bounds.upper)  # NaN (a missing sensor) is neither
        if not bad.any():
            return None
        return np.asarray(bad.any(axis=1))


@dataclass(eq=False)
class _Asset:
    id: int
    name: str
    model: LoadedModel
    stream: StreamState
    slot: _Slot
    stats: AssetStats
    filler: Filler | None = None  # the [missing] policy's state, when its model's rows may lack a sensor
    configured: bool = False  # a [models.assets] pattern names it: unknown names cannot take its slot
    seen: float = 0.0  # monotonic start of the last batch with a row of it (slots of silent assets can be freed)
    seq: Sequence = field(default_factory=Sequence)  # which seq comes next: redeliveries, gaps, late rows, restarts
    mute: Mute = field(default_factory=Mute)  # its maintenance window (monitor/daemon/suppression.py)
    drift: Drift | None = None  # its recent inputs against the training data (monitor/daemon/drift.py)
    shadow: StreamState | None = None  # its stream as the challenger scores it (its own: nothing shared)
    shadow_of: tuple[str, str, str] = ("", "", "")  # the challenger that stream belongs to

    scored_before: int = 0  # messages its stream scored before this run (state directory)

    def fresh_alarm(self) -> AlarmLogic:
        return AlarmLogic.from_settings(self.model.detector.settings.alarm)

    def use_policy(self, model: LoadedModel) -> None:
        """A fresh filler for ``model``'s missing-value policy (None: every sensor required)."""
        self.filler = Filler(model.missing) if model.optional else None


#: an asset's rows of a batch: buffer rows, payload timestamps, receive times
_Scored = tuple[_Asset, np.ndarray, np.ndarray, np.ndarray]


class Worker(threading.Thread):
    """Scores the intake queue; ``ack`` and ``publish`` are the MQTT side's, injected."""

    def __init__(
        self,
        cfg: MonitorConfig,
        models: ModelSet,
        queue: BatchQueue[Item],
        state: State,
        ack: Callable[[list[Item]], None],
        publish: Callable[[str, bytes], None],
        tick: Callable[[], None] | None = None,
        publish_command: Callable[[str, bytes], None] | None = None,
        store: StateStore | KvCheckpoints | None = None,
    ) -> None:
        super().__init__(name="plantwatch-worker", daemon=True)
        self.queue, self.state, self._ack, self._publish, self._tick = queue, state, ack, publish, tick
        self.prefix, self.max_assets, self.idle_timeout = cfg.prefix, cfg.max_assets, cfg.asset_idle_timeout
        self._next_idle = 0.0  # no asset can be idle before this (monotonic): skips the scan when full
        self.batch_t0 = 0.0  # when the batch being decoded began
        self.batch_max, self.batch_time = cfg.worker.batch_max_size, cfg.worker.batch_max_time
        self.models = models
        self.reorder_window, self.max_jump = cfg.sequence.reorder_window, cfg.sequence.max_jump
        self.skew, self.max_age = cfg.time.skew, cfg.time.max_age  # a reload may change these
        self.beat = time.monotonic()
        # the state directory: records of assets (restored ones until they come back), acks held until saved
        self._store, self.state_interval = store, cfg.state_interval
        if store is not None and store.before_ack:  # KV checkpoints: on their own period
            self.state_interval = cfg.source.checkpoint_interval
        self._records: dict[str, Record] = store.load() if store is not None else {}
        # topic -> digest of the retained message handled there (kept in the state directory)
        self._retained_seen: dict[str, str] = store.retained if store is not None else {}
        self._dirty: set[_Asset] = set()
        self._unacked: list[Item] = []
        self._seq_saved = self._streams_saved = time.monotonic()
        self._scored_since = False  # anything scored since the last save of the streams
        self._pending: ModelSet | None = None
        self._assets: dict[str, _Asset] = {}
        self._by_topic: dict[str, _Asset] = {}
        self._by_id: dict[int, _Asset] = {}
        self._slots: dict[tuple[str, ...], _Slot] = {}
        self._ids = itertools.count()
        self._halt = threading.Event()
        self._give_up_at: float | None = None  # when a final checkpoint that fails is given up
        self._final_checkpoint = True
        self._swapped = threading.Event()
        self._sampler = LogSampler()
        self.sparkplug: SparkplugIntake | None = None
        command = publish_command or (lambda topic, payload: None)
        self._reads: ReadAhead | None = None
        if cfg.source.format == "sparkplug":
            self.sparkplug = SparkplugIntake(cfg.source, self, command, self.batch_max)
            if cfg.source.read_process and self.sparkplug.host.takes:  # its reads are for take_read alone
                self._reads = ReadAhead(self._take, self._backlog, ReadProcess(), state)
        self.gate = Gate(
            cfg.schedules(),
            store_for(cfg.state_dir, cfg.instance),
            cfg.suppression.warmup_rows,
            state,
            publish,
            command,
            cfg.prefix,
            cfg.instance,
        )
        self._listed = list(cfg.assets)
        self.feedback = self.gate.feedback = Feedback(cfg.state_folder(), cfg.instance, state)
        self.gate.accept = self._accept
        self.feedback.clock = self._last_ts
        self._control: list[tuple[str, bytes]] = []  # (user, payload) of this batch's control messages
        self._control_head = wire.control_filter(cfg.prefix)[:-1]
        self.drift_window = cfg.drift.window
        self._refs: dict[int, Reference] = {}  # id(detector) -> what its training saw
        self._sums: dict[int, Sums] = {}  # sensor count -> the drift sums of every asset with that many
        self._drift_next = 0.0
        self.shadow_log = ShadowLog(cfg.state_folder(), cfg.instance, cfg.models.shadow_interval)

    # ------------------------------------------------------------ loop

    def run(self) -> None:
        try:
            self._run()
        finally:
            if self._reads is not None:
                self._reads.close()

    def _run(self) -> None:
        single_thread()
        while True:
            self.beat = time.monotonic()
            if self._tick is not None:
                self._tick()
            if self._pending is not None:
                self._apply_models(self._pending)
            now = time.time()
            if now >= self.gate.next_change:  # once per batch: a window starts or ends, or a request came
                self.gate.refresh(self._assets.values(), now)
            if now >= self._drift_next:
                self._fold_drift(now)
            batch, reads = self._reads.next() if self._reads is not None else (self._take(), None)
            if batch:
                try:
                    self._process(batch, reads)
                except Exception:  # a bug must not kill the worker: the batch
                    with self.state.lock:  # stays unacknowledged and is redelivered
                        self.state.worker_errors += 1
                    if self._sampler.take("batch_failed") is not None:
                        log.exception("batch_failed", messages=len(batch))
            elif self._halt.is_set() and self.queue.empty():
                self._save_final()
                self.shadow_log.flush()
                return
            if self.shadow_log.due():
                self.shadow_log.flush()
            if self._store is not None:
                self._save()

    def stop(self, give_up_at: float | None = None, checkpoint: bool = True) -> None:
        """Finish what is queued, then end (intake must be closed first).

        A final checkpoint the KV bucket refuses is tried again until ``give_up_at`` (monotonic): after a NATS
        node dies, the bucket has no leader for the seconds an election takes, and a monitor stopped then
        would leave its last messages to be scored again by the partition's next owner. ``checkpoint=False``
        (a partition's lease was lost: the new owner's checkpoints may be newer) writes none; what is not
        acknowledged is redelivered, as after a crash.
        """
        self._give_up_at, self._final_checkpoint = give_up_at, checkpoint
        self._halt.set()

    def swap_models(self, models: ModelSet, timeout: float = 5.0) -> bool:
        """Take ``models`` between two batches (SIGHUP); only assets whose model changed restart.

        Returns once the worker uses them, so a message sent after this is scored by the new ones.
        """
        self._swapped.clear()
        self._pending = models
        return self._swapped.wait(timeout) if self.is_alive() else False

    def set_limits(self, max_assets: int, idle_timeout: float) -> None:
        """A reload's ``max_assets`` and ``asset_idle_timeout``, used from the next admission on."""
        self.max_assets, self.idle_timeout, self._next_idle = max_assets, idle_timeout, 0.0

    def _backlog(self) -> bool:
        """A whole batch more is queued already (a backlog drains): taking it early delays nothing."""
        return self.queue.qsize() >= self.batch_max

    def _take(self) -> list[Item]:
        return self.queue.take(self.batch_max, self.batch_time, _TAKE_TIMEOUT_S)

    # ------------------------------------------------------------ one batch

    def _process(self, batch: list[Item], reads: ReadBatch | None = None) -> None:
        """``reads``: a Sparkplug batch's DATA payloads read ahead (:mod:`.read_ahead`), entry ``i`` item ``i``'s."""
        self.batch_t0 = time.monotonic()  # assets seen since (rows in this batch) keep their slots
        if self.sparkplug is None:
            decoded = self._decode(batch)
            if self._control:
                self._controls()
            self._score_batch(batch, *decoded)
            return
        head = self._control_head  # Sparkplug topics never start with the prefix: control messages only
        if any(item[0].startswith(head) for item in batch):
            controls = [item for item in batch if item[0].startswith(head)]
            batch = [item for item in batch if not item[0].startswith(head)]
            reads = None  # read for the batch with its control messages
            self._control = [(wire.control_user(t, self.prefix) or "", p) for t, p, *_ in controls]
            self._controls()
            self._ack(controls)
        start = 0  # Sparkplug: a birth or death ends a segment, so each asset's rows are scored in order with it
        while start < len(batch):
            end, rows, seq_list, rejects = self.sparkplug.decode(batch, start, reads)
            self._score_batch(batch[start:end], rows, seq_list, rejects)
            start = end

    def _score_batch(
        self,
        batch: list[Item],
        rows: list[tuple[int, float, float, int]],
        seq_list: list[int],
        rejects: list[tuple[str, str, str]],
    ) -> None:
        dup: list[tuple[str, str, str]] = []
        scored: dict[int, list[_Scored]] = {}
        arr = np.array(rows, dtype=np.float64).reshape(-1, 4)  # (n, 4): asset id, ts, received, buffer row
        if len(arr):
            arr, seq_list = self._screen(arr, seq_list, rejects)
        if len(arr):
            by_asset = np.argsort(arr[:, 0], kind="stable")  # in arrival order within an asset
            arr = arr[by_asset]
            seqs = np.array(seq_list)[by_asset]  # exact ints (int64, or wider when needed)
            ids = arr[:, 0].astype(np.int64)
            starts = np.concatenate([[0], np.flatnonzero(np.diff(ids)) + 1])
            ends = np.append(starts[1:], len(arr))
            # the common case, checked for every asset at once: its rows are one consecutive seq run
            breaks = np.concatenate([[0], np.cumsum(np.diff(seqs) != 1)])
            # each asset's newest payload ts, the seq that carried it and the next newest (restart detection)
            ts, sizes = arr[:, 1], ends - starts
            ts_max = np.maximum.reduceat(ts, starts)
            at_max = np.minimum.reduceat(np.where(ts == np.repeat(ts_max, sizes), np.arange(len(ts)), len(ts)), starts)
            ts_rest = ts.copy()
            ts_rest[at_max] = -np.inf
            runs = zip(
                starts.tolist(),
                ends.tolist(),
                ids[starts].tolist(),
                seqs[starts].tolist(),
                seqs[ends - 1].tolist(),
                (breaks[ends - 1] - breaks[starts]).tolist(),
                ts_max.tolist(),
                np.maximum.reduceat(ts_rest, starts).tolist(),
                seqs[at_max].tolist(),
            )
            by_id, pos = self._by_id, arr[:, 3].astype(np.int64)
            for s, e, asset_id, first, last, broken, t_max, t_next, s_max in runs:
                a = by_id[asset_id]
                st, sq = a.stats, a.seq
                if not broken and sq.continues(first):
                    st.gaps += sq.advance(first, last, t_max, t_next, s_max)
                    if st.first_seq < 0:
                        st.first_seq = first
                    st.last_seq = last
                    part, rows_at = arr[s:e], pos[s:e]
                else:
                    part = arr[s:e]
                    keep = self._sequence(a, seqs[s:e], part[:, 1], dup)
                    part = part[keep]
                    rows_at = part[:, 3].astype(np.int64)
                if a.filler is not None and len(part):
                    part, rows_at = self._fill(a, part, rows_at)
                if len(part):
                    scored.setdefault(id(a.slot), []).append((a, rows_at, part[:, 1], part[:, 2]))
        events = self._score(scored, rejects + dup, len(batch))
        for topic, payload in events:
            self._publish(topic, payload)
        if self._store is None:
            self._ack(batch)
        else:  # acknowledged once the sequence file covers them (see _save)
            self._unacked += batch
            self._dirty.update(a for group in scored.values() for a, *_ in group)
            self._scored_since = self._scored_since or bool(scored)
            if len(self._unacked) >= SEQ_EVERY_N:
                self._save()

    def _decode(
        self, batch: list[Item]
    ) -> tuple[list[tuple[int, float, float, int]], list[int], list[tuple[str, str, str]]]:
        rows: list[tuple[int, float, float, int]] = []
        seqs: list[int] = []
        rejects: list[tuple[str, str, str]] = []
        for slot in self._slots.values():
            slot.fill = 0
        by_topic, t0 = self._by_topic, self.batch_t0
        for topic, payload, received, _mid, _qos, _gen, retained in batch:
            if retained and topic.endswith("/telemetry") and self._retained(topic, payload, received, rejects):
                continue
            a = by_topic.get(topic)
            if a is None:  # first message on this topic (or after a reload)
                user = wire.control_user(topic, self.prefix)
                if user is not None:  # an operator's request: after decoding, before scoring
                    self._control.append((user, payload))
                    continue
                found = self._lookup(topic)
                if isinstance(found, Rejection):
                    rejects.append((found.reason, found.detail, topic))
                    continue
                a = found
            slot = a.slot
            pos = slot.fill
            r = slot.decoder.decode(payload, slot.buf[pos])
            if isinstance(r, Rejection):
                rejects.append((r.reason, r.detail, a.name))
                continue
            if a.id < 0:  # admitted only once a message of it is valid,
                admitted = self._admit(a, topic)  # so garbage cannot fill max_assets
                if isinstance(admitted, Rejection):
                    rejects.append((admitted.reason, admitted.detail, topic))
                    continue
                a = admitted
            slot.fill = pos + 1
            a.seen = t0
            rows.append((a.id, r[0], received, pos))
            seqs.append(r[1])
        return rows, seqs, rejects

    def _retained(self, topic: str, payload: bytes, received: float, rejects: list[tuple[str, str, str]]) -> bool:
        """Whether to drop a retained message (one the broker stored before we subscribed) unscored.

        A gateway that publishes telemetry with the retain flag leaves its last sample at the broker, which
        hands it to every new subscription: at each start of the monitor. One already handled (the state
        directory remembers it) is dropped silently; one older than the skew window, or no telemetry at all,
        is counted once as ``retained_stale``; a fresh one is scored like any other.
        """
        digest = hashlib.blake2b(payload, digest_size=8).hexdigest()
        seen = self._retained_seen
        if seen.get(topic) == digest:
            log.debug("retained_ignored", topic=topic[:200], note="handled at an earlier start")
            return True
        seen[topic] = digest
        while len(seen) > _RETAINED_KEPT:
            del seen[next(iter(seen))]
        t = wire.decode_telemetry(payload)
        if isinstance(t, Rejection) or t.ts < received - self.skew:
            why = t.reason if isinstance(t, Rejection) else f"ts {received - t.ts:.0f} s old, skew={self.skew:g} s"
            rejects.append(("retained_stale", why, topic))
            return True
        return False

    def _screen(
        self, arr: np.ndarray, seqs: list[int], rejects: list[tuple[str, str, str]]
    ) -> tuple[np.ndarray, list[int]]:
        """Drop rows with a payload ts outside the skew window (``ts_out_of_range``) or an implausible value
        (``out_of_range``, naming the sensor and its bounds).

        Both are checked for the whole batch at once. Such a row never reaches the sequence bookkeeping,
        the window, the smoothing or the threshold: the stream goes on exactly as if it had not been sent,
        and a timestamp years ahead cannot make the publisher's next restart look like redeliveries.
        """
        ts, received = arr[:, 1], arr[:, 2]
        off = ts > received + self.skew
        if self.max_age > 0:
            off |= ts < received - self.max_age
        bad = {id(slot): m for slot in self._slots.values() if slot.fill and (m := slot.out_of_range()) is not None}
        if not bad and not off.any():
            return arr, seqs
        keep = ~off
        by_id = self._by_id
        for i in np.flatnonzero(off).tolist():
            t, r = float(ts[i]), float(received[i])
            side = f"{t - r:+.6g} s from our clock; skew={self.skew:g} s" + (
                f", max_age={self.max_age:g} s" if self.max_age > 0 else ""
            )
            rejects.append(("ts_out_of_range", f"ts {t!r}: {side}", by_id[int(arr[i, 0])].name))
        for i, (asset_id, pos) in enumerate(
            zip(arr[:, 0].astype(np.int64).tolist(), arr[:, 3].astype(np.int64).tolist())
        ):
            a = by_id[asset_id]
            m = bad.get(id(a.slot))
            if m is None or not m[pos] or not keep[i]:
                continue
            keep[i] = False
            row, b = a.slot.buf[pos], a.slot.bounds
            j = b.first_bad(row)
            rejects.append(("out_of_range", b.describe(j, a.model.detector.sensors[j], float(row[j])), a.name))
        return arr[keep], [s for s, k in zip(seqs, keep.tolist()) if k]

    def _fill(self, a: _Asset, part: np.ndarray, rows_at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """An asset's rows in stream order with missing sensors held or dropped (``[missing]`` policy)."""
        assert a.filler is not None
        f, st = a.filler, a.stats
        block = a.slot.buf[rows_at]
        filled, dropped = f.filled_rows, f.dropped_rows
        keep = f.apply(block)
        a.slot.buf[rows_at] = block
        st.missing_filled += f.filled_rows - filled  # plain ints only this thread writes
        st.missing_dropped += f.dropped_rows - dropped
        if f.filled_rows != filled or f.dropped_rows != dropped:
            suppressed = self._sampler.take("missing:" + a.name)
            if suppressed is not None:
                log.info(
                    "missing_values",
                    asset=a.name,
                    filled_rows=st.missing_filled,
                    dropped_rows=st.missing_dropped,
                    suppressed=suppressed,
                )
        if keep.all():
            return part, rows_at
        return part[keep], rows_at[keep]

    def _sequence(self, a: _Asset, seqs: np.ndarray, ts: np.ndarray, rejects: list[tuple[str, str, str]]) -> list[int]:
        """Rows of one asset to score, in order; the rest rejected with their reason (:mod:`.sequence`)."""
        st, sq = a.stats, a.seq  # plain ints only this thread writes
        before = sq.last
        o = sq.order(seqs, ts)
        st.gaps += o.gaps
        st.late += o.late
        if st.first_seq < 0 and o.keep:
            st.first_seq = int(seqs[o.keep[0]])
        st.last_seq = sq.last
        for reason, seq in o.rejected:
            if reason == "duplicate":
                detail = f"seq {seq} already scored (newest {before})"
            elif reason == "seq_jump":
                detail = f"seq {seq} more than max_jump={sq.max_jump} ahead of {before}"
            else:
                detail = f"seq {seq} more than reorder_window={sq.reorder_window} behind {before}"
            rejects.append((reason, detail, a.name))
        for last, seq, why in o.restarts:
            log.warning("sequence_restarted", asset=a.name, last_seq=last, seq=seq, why=why)
        return o.keep

    def _score(
        self, scored: dict[int, list[_Scored]], rejects: list[tuple[str, str, str]], n: int
    ) -> list[tuple[str, bytes]]:
        results: list[tuple[_Scored, StreamResult]] = []
        shadows: list[tuple[_Scored, StreamResult]] = []
        for group in scored.values():
            det = group[0][0].model.detector
            blocks = [a.slot.buf[rows] for a, rows, _, _ in group]
            outs = det.score_many([(a.stream, b, ts) for (a, _, ts, _), b in zip(group, blocks)])
            results.extend(zip(group, outs))
            accumulate(self._ref(det), blocks, [None if a.stream.muted else a.drift for a, _, _, _ in group])
            if group[0][0].model.challenger is not None:
                shadows.extend(self._shadow(group, blocks))
        done = time.time()
        events: list[tuple[str, bytes]] = []
        s = self.state
        with s.lock:
            for (a, _rows, ts, _received), res in results:
                self._update(a, ts, res, events)
            for (a, _rows, _ts, _received), res in shadows:
                a.stats.ch_score, a.stats.ch_threshold = res.score.item(-1), res.threshold.item(-1)
            if results:
                s.lag["receive"].observe_many(done - np.concatenate([g[3] for g, _ in results]))
                s.lag["source"].observe_many(done - np.concatenate([g[2] for g, _ in results]))
            for reason, _, _ in rejects:
                s.rejected[reason] += 1
            s.batch.observe_many(np.array([float(n)]))
        if shadows:
            champion = {id(g[0]): r for g, r in results}
            for (a, _rows, ts, _received), res in shadows:
                ch = a.model.challenger
                assert ch is not None
                versions = (a.model.version, ch.version)
                self.shadow_log.add(a.name, a.model.name, versions, ts, champion[id(a)].anomaly, res.anomaly)
        for reason, detail, where in rejects:
            suppressed = self._sampler.take(reason)
            if suppressed is not None:
                log.warning("message_rejected", reason=reason, source=where[:200], detail=detail, suppressed=suppressed)
        return events

    def _shadow(self, group: list[_Scored], blocks: list[np.ndarray]) -> list[tuple[_Scored, StreamResult]]:
        """The same rows scored by each asset's challenger, on a stream of its own: its threshold learns from
        them, it keeps its own alarm state, and nothing it computes reaches the champion, the alarm topic or
        the drift sums. A maintenance window mutes it as it mutes the champion."""
        by: dict[tuple[str, str, str], list[int]] = {}
        for i, (a, *_) in enumerate(group):
            ch = a.model.challenger
            if ch is None:
                continue
            if a.shadow is None or a.shadow_of != ch.identity:
                a.shadow, a.shadow_of = ch.detector.new_stream(), ch.identity
                a.stats.challenger = ch.version
            a.shadow.muted = a.stream.muted
            by.setdefault(ch.identity, []).append(i)
        out: list[tuple[_Scored, StreamResult]] = []
        for idx in by.values():
            ch = group[idx[0]][0].model.challenger
            assert ch is not None
            res = ch.detector.score_many([(group[i][0].shadow, blocks[i], group[i][2]) for i in idx])  # type: ignore[misc]
            out.extend((group[i], r) for i, r in zip(idx, res))
        return out

    def _update(self, a: _Asset, ts: np.ndarray, res: StreamResult, events: list[tuple[str, bytes]]) -> None:
        st, det = a.stats, a.model.detector
        st.messages += len(res.score)
        st.score, st.threshold, st.alarm = res.score.item(-1), res.threshold.item(-1), bool(res.anomaly.item(-1))
        last_ts = ts.item(-1)
        st.last_ts = last_ts if not last_ts < st.last_ts else st.last_ts  # NaN (nothing yet) compares False
        st.warming_up = a.stream.rows < det.window or a.mute.rearm > 0
        if a.mute.rearm:
            self.gate.rearm_step(a, len(res.score))
        st.top = tuple(res.top[-1].tolist())
        st.contrib = res.contrib  # the last row of this batch's array: never written again
        if res.outside is not None:
            self._outside(a, res)
        for i, tr in res.transitions:
            ep = tr.episode
            self.feedback.episodes.note(a.name, ep.start, None if tr.kind == "raised" else ep.end)
            if tr.kind == "raised":
                st.alarms += 1
                st.episode = wire.episode_id(a.name, ep.start)
            ev = transition_event(a.name, tr, float(ts[i]), float(res.score[i]), float(res.threshold[i]))
            events.append((wire.alarm_topic(self.prefix, a.name), ev.encode()))

    def _outside(self, a: _Asset, res: StreamResult) -> None:
        """Count (and say, rate-limited) rows far outside the training range, naming the sensors furthest out."""
        assert res.outside is not None
        a.stats.outside += int(res.outside.sum())
        suppressed = self._sampler.take("outside:" + a.name)
        if suppressed is not None:
            last = int(np.flatnonzero(res.outside)[-1])
            log.warning(
                "outside_training_range",
                asset=a.name,
                sensors=[a.model.detector.sensors[j] for j in res.top[last]],
                rows=a.stats.outside,
                note="scores here say the data is unlike the training history, not which fault; "
                "retrain on history of this operating point if it is normal",
                suppressed=suppressed,
            )

    # ------------------------------------------------------------ the state directory

    def _save(self, streams: bool = False) -> None:
        """Write the sequence file, then acknowledge what it covers; the stream file every ``state_interval``.

        Before its acknowledgement reaches the broker, a scored message is in the sequence file, so a
        redelivery after a crash is recognised as a duplicate (one that failed to write is acknowledged
        anyway, logged: scoring must go on).
        """
        store = self._store
        if store is None:
            return
        now = time.monotonic()
        if store.before_ack:
            self._checkpoint(store, streams, now)
            return
        if not streams and now - self._streams_saved >= self.state_interval:
            if self._scored_since:  # an idle monitor does not rewrite (and fsync) the same file
                streams = True
            else:
                self._streams_saved = now
        if not streams and not (
            self._unacked and (now - self._seq_saved >= SEQ_EVERY_S or len(self._unacked) >= SEQ_EVERY_N)
        ):
            return
        if streams:
            for a in self._assets.values():
                self._records[a.name] = self._record(a, stream=True)
            store.write_streams(self._records)
            self._streams_saved, self._scored_since = now, False
        else:
            for a in self._dirty:
                if a.name in self._assets:
                    self._records[a.name] = self._record(a, stream=False)
            store.write_seq(self._records)
        self._dirty.clear()
        self._seq_saved = now
        if self._unacked:
            self._ack(self._unacked)
            self._unacked = []

    def _save_final(self) -> None:
        """The last save; with KV checkpoints, retried until it is written or :meth:`stop`'s time is up."""
        store = self._store
        if store is None or not store.before_ack:
            self._save(streams=True)
            return
        if self._final_checkpoint:
            self._checkpoint(store, True, time.monotonic())
            give_up_at = self._give_up_at
            while self._unacked and give_up_at is not None and time.monotonic() + FINAL_RETRY_S < give_up_at:
                time.sleep(FINAL_RETRY_S)
                self._checkpoint(store, True, time.monotonic())
        if self._unacked:
            log.warning("final_checkpoint_not_written", messages=len(self._unacked), skipped=not self._final_checkpoint,
                        note="left unacknowledged: the partition's next owner scores them again from the previous checkpoint")  # fmt: skip

    def _checkpoint(self, store: StateStore | KvCheckpoints, final: bool, now: float) -> None:
        """Checkpoint the assets scored since the last one, then acknowledge what it covers (KV store).

        Due every ``checkpoint_interval`` while messages wait for their acknowledgement, early when
        half of the consumers' ``max_ack_pending`` waits, and at a clean stop. A failed write keeps
        the acknowledgements back (the server stops delivering at ``max_ack_pending``: backpressure).
        """
        waiting = len(self._unacked)
        if not (
            final or (waiting and (now - self._streams_saved >= self.state_interval or waiting >= store.max_unacked))
        ):
            return
        records = {a.name: self._record(a, stream=True) for a in self._dirty if a.name in self._assets}
        if records and not store.write_streams(records):
            self._streams_saved = now  # retried after another period
            return
        self._records.update(records)
        self._dirty.clear()
        self._streams_saved = self._seq_saved = now
        if self._unacked:
            self._ack(self._unacked)
            self._unacked = []

    def _record(self, a: _Asset, stream: bool) -> Record:
        rec: Record = {"seq": a.seq.to_state(), "scored": a.scored_before + a.stats.messages}
        if stream:
            rec["stream"], rec["model"] = a.stream.to_state(), _model_id(a.model)
        return rec

    def _restore(self, a: _Asset) -> None:
        """Continue a new asset from its saved record: its sequence always, its stream if of the same model."""
        rec = self._records.get(a.name)
        if rec is None and self._store is not None:
            rec = self._store.fetch(a.name)
        if rec is None:
            return
        try:
            a.seq.load_state(rec.get("seq") or {})
        except ValueError as exc:
            log.warning("state_not_restored", asset=a.name, reason=str(exc))
            return
        scored = rec.get("scored")
        a.scored_before = scored if isinstance(scored, int) and scored >= 0 else 0
        a.stats.last_seq = a.seq.last
        stream, why = rec.get("stream"), ""
        result = "restored"
        if stream is not None and rec.get("model") == _model_id(a.model):
            try:
                a.stream = a.model.detector.restore_stream(stream)
                a.stats.warming_up = a.stream.rows < a.model.detector.window
            except (ValueError, TypeError) as exc:
                why, result = str(exc), "refused_corrupt"
        elif stream is not None:
            why, result = "saved with another model (weights or settings): the stream starts afresh", "refused_model"
        if stream is not None:
            with self.state.lock:
                self.state.checkpoints[result] += 1
        if why:
            log.warning("stream_not_restored", asset=a.name, reason=why, note="its seq bookkeeping is restored")
        log.info("asset_restored", asset=a.name, last_seq=a.seq.last, stream=not why and stream is not None)

    # ------------------------------------------------------------ assets and models

    def _slot(self, model: LoadedModel) -> _Slot:
        slot = self._slots.get(model.slot_key)
        if slot is None:
            slot = self._slots[model.slot_key] = _Slot(model, self.batch_max)
        slot.bounds = model.bounds or model.detector.bounds  # a reload may have changed [sensors] bounds
        return slot

    def _lookup(self, topic: str) -> _Asset | Rejection:
        """The asset of a topic not in the cache: a known one, a candidate (id -1) or a rejection."""
        name = wire.asset_of(topic, self.prefix)
        if isinstance(name, Rejection):
            return name
        known = self._assets.get(name)
        if known is not None:  # the topic cache was reset by a reload
            self._by_topic[topic] = known
            return known
        return self._candidate(name)

    def _candidate(self, name: str) -> _Asset | Rejection:
        """A new asset (id -1, not yet admitted) with its model, or unknown_asset."""
        model = self.models.resolve(name)
        if model is None:
            return Rejection("unknown_asset", name)
        det = model.detector
        return _Asset(
            -1,
            name,
            model,
            det.new_stream(),
            self._slot(model),
            AssetStats(name, model.name, model.version, det.sensors),
            configured=self.models.configured(name),
            seq=Sequence(self.reorder_window, self.max_jump),
        )

    def _admit(self, a: _Asset, topic: str | None) -> _Asset | Rejection:
        if a.name in self._assets:  # a second new topic spelling of it in this batch
            return self._assets[a.name]
        if len(self._assets) >= self.max_assets:
            freed = self._free_slot(a)
            if freed is None:
                return Rejection("too_many_assets", a.name)
            self._evict(*freed, newcomer=a.name)
        a.id = next(self._ids)
        a.seen = time.monotonic()
        a.use_policy(a.model)
        if self._store is not None:
            self._restore(a)
        a.drift = self._drift(a.model)
        self._assets[a.name] = self._by_id[a.id] = a
        if topic is not None:
            self._by_topic[topic] = a
        with self.state.lock:
            self.state.assets[a.name] = a.stats
        log.info("asset_added", asset=a.name, model=a.model.name, version=a.model.version)
        self.gate.apply(a, time.time())
        return a

    def _free_slot(self, newcomer: _Asset) -> tuple[_Asset, str] | None:
        """max_assets is reached: the asset that gives its slot to ``newcomer``, and why (None: nobody).

        The longest silent one, once silent longer than ``asset_idle_timeout``; else, for an asset a
        ``[models.assets]`` pattern names, the longest silent asset only the default model took in (so
        unknown names cannot lock out the configured ones). Scans only when one may qualify.
        """
        now, t0 = time.monotonic(), self.batch_t0  # an asset with rows in this batch is never taken
        if self.idle_timeout > 0 and now >= self._next_idle:
            oldest = min(self._assets.values(), key=lambda x: x.seen)
            if now - oldest.seen > self.idle_timeout and oldest.seen < t0:
                return oldest, "idle"
            self._next_idle = oldest.seen + self.idle_timeout  # seen times only grow
        if newcomer.configured:
            unknown = [x for x in self._assets.values() if not x.configured and x.seen < t0]
            if unknown:
                return min(unknown, key=lambda x: x.seen), "configured_asset"
        return None

    def _evict(self, a: _Asset, reason: str, newcomer: str) -> None:
        """Free ``a``'s slot: its alarm cleared, its series gone; it comes back as a new asset."""
        silent = time.monotonic() - a.seen
        self._retire(a)
        for topic in [t for t, x in self._by_topic.items() if x is a]:
            del self._by_topic[topic]
        with self.state.lock:
            self.state.evicted[reason] += 1
        log.warning("asset_evicted", asset=a.name, reason=reason, silent_s=round(silent, 1), for_asset=newcomer)

    def _drift(self, m: LoadedModel) -> Drift:
        d = m.detector.n_sensors
        sums = self._sums.get(d)
        if sums is None:
            sums = self._sums[d] = Sums(d)
        return Drift(sums)

    def _ref(self, det: Detector) -> Reference:
        ref = self._refs.get(id(det))
        if ref is None:
            ref = self._refs[id(det)] = Reference.of(det)
        return ref

    def _fold_drift(self, now: float) -> None:
        """Every few seconds: each asset's recent inputs into its drift window, then into the metrics."""
        self._drift_next = now + FOLD_EVERY_S
        folded = []
        for a in self._assets.values():
            per = a.drift.fold(self.drift_window) if a.drift is not None else None
            if per is not None and a.drift is not None:
                folded.append((a.stats, float(per.max()), worst(per, a.model.detector.sensors), a.drift.share))
        if folded:
            with self.state.lock:
                for st, drift, top, share in folded:
                    st.drift, st.drift_top, st.outside_share = drift, top, share

    def _last_ts(self, asset: str) -> float:
        a = self._assets.get(asset)
        return a.stats.last_ts if a is not None and a.stats.last_ts == a.stats.last_ts else time.time()

    def _controls(self) -> None:
        """Operators' requests of this batch, applied between batches (see :mod:`.suppression`)."""
        known = list(dict.fromkeys([*self._assets, *self._listed]))
        now = time.time()
        for user, payload in self._control:
            if self.gate.handle(user, payload, known, now):
                self.gate.refresh(self._assets.values(), now)
        self._control = []

    def _apply_models(self, new: ModelSet) -> None:
        self._pending = None
        changed, dropped = [], []
        for a in list(self._assets.values()):
            m = new.resolve(a.name)
            a.configured = new.configured(a.name)
            if m is None:
                dropped.append(a.name)
                self._retire(a)
            elif m.identity != a.model.identity:
                changed.append(a.name)
                self._clear_alarm(a)
                a.model, a.stream, a.slot = m, self._promoted(a, m), self._slot(m)
                if a.drift is not None:
                    a.drift.release()
                a.drift = self._drift(m)
                with self.state.lock:
                    a.stats = self.state.assets[a.name] = AssetStats(
                        a.name,
                        m.name,
                        m.version,
                        m.detector.sensors,
                        messages=a.stats.messages,  # a counter: a promotion does not reset it
                        last_seq=a.stats.last_seq,
                        first_seq=a.stats.first_seq,
                        missing_filled=a.stats.missing_filled,
                        missing_dropped=a.stats.missing_dropped,
                        outside=a.stats.outside,
                        late=a.stats.late,
                    )
                a.use_policy(m)
            else:
                if m.slot_key != a.model.slot_key:
                    a.use_policy(m)
                a.model, a.slot = m, self._slot(m)
                if m.challenger is None and a.shadow is not None:
                    a.shadow = None
                    with self.state.lock:
                        a.stats.challenger = ""
        live = {m.slot_key for m in new.loaded}
        self._slots = {k: v for k, v in self._slots.items() if k in live}
        self._by_topic.clear()
        self.models = new
        self.gate.next_change = 0.0  # new streams are muted again where a window covers them
        self._refs.clear()
        if self.sparkplug is not None:
            self.sparkplug.models_changed()
        self._swapped.set()
        log.info(
            "models_swapped",
            changed=changed[:50],
            changed_count=len(changed),
            dropped=dropped[:50],
            models=[m.name for m in new.loaded],
        )

    def _promoted(self, a: _Asset, m: LoadedModel) -> StreamState:
        """The stream ``a`` goes on with under ``m``: the challenger's, when ``m`` is the challenger it scored
        in shadow and that stream is not in alarm (its threshold has learned this asset: no warm-up), else
        a fresh one. An alarm it holds was never raised on the alarm topic, so it starts afresh then."""
        shadow, a.shadow = a.shadow, None
        if shadow is None or a.shadow_of != m.identity or shadow.alarm.episode is not None:
            return m.detector.new_stream()
        try:
            stream = m.detector.restore_stream(shadow.to_state())
        except (ValueError, TypeError):
            return m.detector.new_stream()
        stream.muted = a.stream.muted
        log.info("challenger_stream_taken_over", asset=a.name, version=m.version, rows=stream.rows)
        return stream

    def _retire(self, a: _Asset) -> None:
        self._clear_alarm(a)
        if a.drift is not None:
            a.drift.release()
            a.drift = None
        del self._assets[a.name], self._by_id[a.id]
        self._records.pop(a.name, None)
        self._dirty.discard(a)
        with self.state.lock:
            self.state.assets.pop(a.name, None)

    def _accept(self, names: tuple[str, ...], reason: str) -> list[str]:
        """An operator accepts where these assets run now as normal (``plantwatch accept``): a running alarm
        clears at once, with why, and each stream learns its new baseline (:meth:`Detector.accept`)."""
        took = []
        for name in names:
            a = self._assets.get(name)
            if a is None:
                continue
            self._clear_alarm(a, reason)
            last = a.stats.last_ts
            a.model.detector.accept(a.stream, ts=last if math.isfinite(last) else None)
            with self.state.lock:
                a.stats.alarm = False
            log.info("operating_point_accepted", asset=name, reason=reason)
            took.append(name)
        return took

    def _clear_alarm(self, a: _Asset, reason: str = "model_changed") -> None:
        """An alarm whose stream is reset would stay raised on the retained topic: clear it."""
        ep = a.stream.alarm.episode
        if a.stats.alarm and ep is not None:
            ev = reset_event(a.name, ep, a.stats.last_ts, a.stats.score, a.stats.threshold, reason)
            self.feedback.episodes.note(a.name, ep.start, ev.ended)
            self._publish(wire.alarm_topic(self.prefix, a.name), ev.encode())


def _model_id(model: LoadedModel) -> str:
    """Which weights and settings a saved stream belongs to (not the folder's path: a moved folder is the same)."""
    return hashlib.sha256(repr(model.identity[1:]).encode()).hexdigest()[:16]
