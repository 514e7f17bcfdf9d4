"""Where a Sparkplug B message enters the worker: births, data and deaths into rows and lifecycle changes.

The JSON path decodes each message into its asset's row on its own; Sparkplug messages mean something
only in order (a DATA is read with the aliases of the last BIRTH and completed with the values held
since), so :class:`monitor.sparkplug.Host` follows them one by one and this module hands its rows to the
worker in the same form as JSON rows: a buffer row of the asset's model, the payload time, and a
per-asset sequence that is consecutive, so scoring, metrics and alarms are the worker's, unchanged.

A batch is cut into segments at every birth or death of an asset that already has rows in the current
segment: those rows are scored first, then its stream restarts (birth) or it goes offline (death).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

from .. import logs, wire
from ..config import SourceConfig
from ..sparkplug import Host, Naming, Outcome, ReadBatch, Staleness
from ..wire import Rejection
from .alarm_events import lifecycle_event
from .log_sampler import LogSampler
from .metrics import State
from .mqtt_session import Item

log = logs.get("sparkplug")

Rows = list[tuple[int, float, float, int]]
Rejects = list[tuple[str, str, str]]


class WorkerSide(Protocol):
    """What the intake needs of the worker (:class:`monitor.daemon.worker.Worker`)."""

    state: State
    prefix: str
    models: Any
    _assets: dict[str, Any]
    _slots: dict[Any, Any]
    batch_t0: float

    def _candidate(self, name: str) -> Any: ...
    def _admit(self, a: Any, topic: str | None) -> Any: ...
    def _clear_alarm(self, a: Any, reason: str = ...) -> None: ...
    def _publish(self, topic: str, payload: bytes) -> None: ...


def host_for(
    source: SourceConfig,
    bind: Callable[[str], Sequence[str] | None],
    optional: Callable[[str], Collection[str]] = lambda asset: (),
) -> Host:
    """The :class:`Host` a ``[source]`` table describes."""
    return Host(
        bind,
        Naming(source.device_asset, source.node_asset),
        Staleness(source.stale_after, tuple(source.stale_after_metrics.items())),
        source.rebirth_interval if source.rebirth else None,
        sample_period=source.sample_period,
        optional=optional,
    )


class SparkplugIntake:
    """Turns a batch of Sparkplug messages into the worker's rows, segment by segment."""

    def __init__(
        self, source: SourceConfig, worker: WorkerSide, command: Callable[[str, bytes], None], capacity: int
    ) -> None:
        self.w, self.command = worker, command
        self.capacity = capacity  # rows the worker's buffers hold per segment
        self.host = host_for(source, self._sensors, self._optional)
        self._carry: tuple[int, Outcome] | None = None  # an outcome that ended the last segment
        self._sampler = LogSampler()

    def _sensors(self, asset: str) -> Sequence[str] | None:
        model = self.w.models.resolve(asset) if wire.valid_asset(asset) else None
        return None if model is None else model.detector.sensors

    def _optional(self, asset: str) -> Collection[str]:
        """The sensors the asset's ``[missing]`` policy lets a row lack (held or dropped by the worker)."""
        model = self.w.models.resolve(asset) if wire.valid_asset(asset) else None
        return () if model is None else model.optional

    def models_changed(self) -> None:
        self.host.rebind()

    def decode(
        self, batch: list[Item], start: int, reads: ReadBatch | None = None
    ) -> tuple[int, Rows, list[int], Rejects]:
        """Rows of ``batch[start:end]``; ``end`` stops before a birth or death of an asset with rows in it.

        ``reads``: the batch's payloads read already (:mod:`monitor.daemon.read_ahead`), item ``i``'s at ``i``."""
        w = self.w
        rows: Rows = []
        seqs: list[int] = []
        rejects: Rejects = []
        pending: set[str] = set()
        for slot in w._slots.values():
            slot.fill = 0
        assets = w._assets
        take, take_read, t0, capacity = self.host.take, self.host.take_read, w.batch_t0, self.capacity
        carry_at = self._carry[0] if self._carry is not None else -1
        i, end = start, len(batch)
        while i < end:
            item = batch[i]
            topic, received = item[0], item[2]
            if i == carry_at:
                assert self._carry is not None
                out = self._carry[1]
                self._carry, carry_at = None, -1
            else:
                if len(rows) >= capacity:
                    got = None
                elif reads is None:
                    got = take(topic, item[1])
                else:
                    got = take_read(topic, reads.record(i))
                if got is not None:  # the common DATA message: its row straight into the buffer
                    asset, values, ts, seq = got
                    a = assets.get(asset)
                    if a is None:
                        a = self._new_asset(asset, rejects)
                        if a is None:
                            i += 1
                            continue
                    a.seen = t0
                    slot = a.slot
                    pos = slot.fill
                    slot.buf[pos] = values
                    slot.fill = pos + 1
                    rows.append((a.id, ts, received, pos))
                    seqs.append(seq)
                    pending.add(asset)
                    i += 1
                    continue
                out = self.host.handle(topic, item[1])
            if out.events or out.restart:
                touched = {e[0] for e in out.events} | ({out.asset} if out.restart else set())
                if touched & pending:
                    self._carry = (i, out)
                    return i, rows, seqs, rejects
                self._lifecycle(out)
            made = out.rows if out.row is None else ((out.ts, out.seq, out.row),)
            if rows and len(rows) + len(made) > self.capacity:  # the buffers are full: score what is in them first
                self._carry = (i, dataclasses.replace(out, events=(), restart=False))  # its lifecycle is done
                return i, rows, seqs, rejects
            i += 1
            if out.rejection is not None:
                rejects.append((out.rejection.reason, out.rejection.detail, out.asset or topic))
            if out.command is not None:
                self._ask_rebirth(*out.command)
            if out.ignored:
                self._ignored(out)
            if out.gaps and out.asset is not None:
                known = assets.get(out.asset)
                if known is not None:
                    known.stats.gaps += out.gaps
            if not made:
                continue
            name = out.asset
            assert name is not None
            a = assets.get(name)
            if a is None:
                a = self._new_asset(name, rejects)
                if a is None:
                    continue
            slot = a.slot
            if len(made) > self.capacity:  # one message's sample-period rows beyond a batch: the newest
                made = made[len(made) - self.capacity :]
            a.seen = w.batch_t0  # its slot is not given away while its rows are in this batch
            for ts, seq, row in made:
                pos = slot.fill
                slot.buf[pos] = row
                slot.fill = pos + 1
                rows.append((a.id, ts, received, pos))
                seqs.append(seq)
            pending.add(name)
        return i, rows, seqs, rejects

    def _new_asset(self, name: str, rejects: Rejects) -> Any:
        a = self.w._candidate(name)
        if not isinstance(a, Rejection):
            a = self.w._admit(a, None)
        if isinstance(a, Rejection):
            rejects.append((a.reason, a.detail, name))
            return None
        return a

    def _lifecycle(self, out: Outcome) -> None:
        """Apply a birth (the stream starts again, warm-up visible) and deaths (offline, said on the alarm topic)."""
        w = self.w
        if out.restart and out.asset is not None:
            a = w._assets.get(out.asset)
            if a is not None:
                w._clear_alarm(a, "rebirth")
                a.stream = a.model.detector.new_stream()
                with w.state.lock:
                    a.stats.warming_up, a.stats.alarm, a.stats.online = True, False, True
        for asset, online, reason in out.events:
            a = w._assets.get(asset)
            if a is None:
                continue  # never scored: nothing to say yet
            st = a.stats
            if not online:
                w._clear_alarm(a, reason)
            with w.state.lock:
                st.online = online
                if not online:
                    st.alarm = False
            ev = lifecycle_event(asset, online, reason, st.last_ts, st.score, st.threshold)
            w._publish(wire.alarm_topic(w.prefix, asset), ev.encode())

    def _ask_rebirth(self, topic: str, payload: bytes) -> None:
        self.command(topic, payload)
        with self.w.state.lock:
            self.w.state.rebirth_requests += 1
        log.info("rebirth_requested", topic=topic)

    def _ignored(self, out: Outcome) -> None:
        with self.w.state.lock:
            self.w.state.ignored_metrics += len(out.ignored)
        suppressed = self._sampler.take(f"ignored:{out.asset}")
        if suppressed is not None:
            log.info("metrics_ignored", asset=out.asset, metrics=out.ignored[:20], count=len(out.ignored))
