"""``plantwatch record``: live telemetry into per-asset CSV files that ``plantwatch train`` reads.

The loop it closes: record normal operation -> ``plantwatch train`` on the
file -> point the monitor at the new model folder -> ``kill -HUP`` the
monitor. It subscribes like the monitor (persistent session, QoS 1) and
acknowledges a message only after its row is written and flushed, so a
crash or a restart loses nothing: the broker redelivers what was not
acknowledged, and a row whose timestamp is not newer than the file's last
one is dropped as a duplicate.

``DIR/<asset>.csv``: a header ``timestamp,<sensors in the order first
seen>``, then one row per message: the payload ``ts`` as ISO 8601 UTC and
the values. A message whose sensors differ from the header is rejected
(``unknown_sensor``/``missing_sensor``), counted and logged, never written.
So is a message whose ``ts`` lies more than 5 minutes ahead of this clock
(``ts_out_of_range``: ``1e12`` is no date, and a far-future row would make every
later one a duplicate) and every message of an asset whose ``<asset>.csv`` in
the folder is not a recording (``not_a_recording``: a stray ``notes.csv`` stops
only the asset ``notes``). Rejected messages are acknowledged: none comes back.

A write that fails (disk full, file too large) cuts the file back to its last
whole row and ends the run with one error line and exit 1; what was not
written was not acknowledged, so the next run records it. At most a quarter
of the open-files limit (8-256) files are open at once, least recently used
closed first and reopened to append, so thousands of assets record fine.

``--format sparkplug`` records Sparkplug B devices the way the monitor reads
them (:class:`monitor.sparkplug.Host`): one row per BIRTH or DATA, every
numeric metric of the BIRTH a column (report-by-exception values held), into
``DIR/<edge_node_id>/<device_id>.csv``. Sparkplug data is QoS 0: what the
broker did not deliver is counted as a sequence gap, never invented.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import resource
import socket
import sys
import time
from collections import Counter, OrderedDict
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path

from .. import broker_login, columns, csvio, logs, outputs, wire
from ..daemon import BatchQueue, Item, LogSampler, MqttSession, State
from ..errors import BrokerError, InputError, OutputError
from ..mqtt import BrokerSettings
from ..signals import stop_on_signals
from ..sparkplug import ALL_SENSORS, Host, topics
from ..wire import Rejection, Telemetry

log = logs.get("record")
BATCH = 1000
#: a payload ts further ahead of this clock is rejected (as the monitor's [time] skew): 1e12 is no date, and a
#: year-3000 row would make every later row a duplicate
MAX_AHEAD_S = 300.0
TS_REJECTED = "ts_out_of_range"
#: how long the first connection may take before record gives up (as simulate and drill do)
CONNECT_TIMEOUT_S = 10.0


def iso(ts: float) -> str:
    """Payload time as the ISO 8601 UTC text csvio reads back to the same float (to the microsecond).

    >>> iso(1700000000.25)
    '2023-11-14T22:13:20.250000Z'
    """
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class AssetFile:
    """One asset's CSV: its header is fixed by the existing file or by the first message.

    Rows wait in memory until :meth:`flush` appends them with ``os.write``; when
    the disk is full, the file is cut back to its last whole row and
    :class:`OutputError` says so (the rows stay unacknowledged at the broker).
    The handle can be closed between batches (:meth:`release`, the recorder
    keeps a bounded number open) and is reopened to append.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sensors: list[str] | None = None
        self.last_ts = -math.inf
        self.size = 0  # bytes on disk, ending on a whole row
        self._pending: list[str] = []
        self._fd: int | None = None
        if path.exists() and path.stat().st_size > 0:
            self._resume()
        self.open()

    def _resume(self) -> None:
        """Continue an existing recording: its header, and its last timestamp for deduplication."""
        with open(self.path, "rb+") as f:
            header = next(csv.reader([f.readline().decode("utf-8", "replace")]), [])
            if not header or header[0] != "timestamp":
                raise InputError(f"{self.path}: exists but is not a recording (first column is not 'timestamp')")
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 65536))
            tail = f.read()
            if tail and not tail.endswith(b"\n"):  # a row cut by a crash: never acknowledged,
                cut = tail.rfind(b"\n") + 1  # the broker sends it again
                f.truncate(size - len(tail) + cut)
                size -= len(tail) - cut
                tail = tail[:cut]
        self.size = size
        self.sensors = header[1:]
        lines = [ln for ln in tail.decode("utf-8", "replace").splitlines() if ln.strip()]
        if lines and lines[-1].split(",", 1)[0] != "timestamp":
            self.last_ts = datetime.fromisoformat(lines[-1].split(",", 1)[0].replace("Z", "+00:00")).timestamp()

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def open(self) -> None:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise OutputError(f"cannot open {self.path}: {exc.strerror or exc}") from None

    def write(self, t: Telemetry, now: float | None = None) -> Rejection | None:
        """Queue ``t`` as a row (written by :meth:`flush`), or why not; ``now``: this clock (default: read it)."""
        if (
            t.ts > (time.time() if now is None else now) + MAX_AHEAD_S
        ):  # a date CSV cannot hold (1e12), or one that would make every later
            return Rejection(TS_REJECTED, f"ts {t.ts!r}: more than {MAX_AHEAD_S:.0f} s ahead of this clock")
        if self.sensors is None:
            self.sensors = list(t.values)
            self._pending.append(csvio.csv_line(["timestamp", *self.sensors]) + "\n")
        if len(t.values) != len(self.sensors) or any(s not in t.values for s in self.sensors):
            extra = [s for s in t.values if s not in self.sensors]
            missing = [s for s in self.sensors if s not in t.values]
            return (
                Rejection("unknown_sensor", ",".join(extra[:5]))
                if extra
                else Rejection("missing_sensor", ",".join(missing[:5]))
            )
        if t.ts <= self.last_ts:
            return Rejection("duplicate", f"ts {t.ts} <= {self.last_ts}")
        self._pending.append(iso(t.ts) + "," + ",".join(repr(t.values[s]) for s in self.sensors) + "\n")
        self.last_ts = t.ts
        return None

    def flush(self) -> None:
        """Append the queued rows; on failure cut the file back to its last whole row and raise OutputError."""
        if not self._pending:
            return
        data = "".join(self._pending).encode("utf-8")
        self._pending.clear()
        self.open()
        assert self._fd is not None
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)
            raise OutputError(
                f"cannot write {self.path}: {exc.strerror or exc}; it ends on its last whole row, and the rows "
                "not written were not acknowledged (the broker keeps them for the next run)"
            ) from None
        self.size += done

    def release(self) -> None:
        """Flush and close the handle (it reopens to append); the header and last ts stay known."""
        try:
            self.flush()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def close(self) -> None:
        """Flush, sync to disk and close."""
        try:
            self.flush()
            if self._fd is not None:
                os.fsync(self._fd)
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def open_files_cap() -> int:
    """How many recording files stay open at once: a quarter of the open-files limit, 8 to 256."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 256 if soft == resource.RLIM_INFINITY else max(8, min(256, soft // 4))


class Recorder:
    """Subscribe, write, flush, acknowledge; :meth:`request_stop` is safe in a signal handler."""

    def __init__(
        self,
        settings: BrokerSettings,
        out: Path,
        prefix: str = wire.DEFAULT_PREFIX,
        assets: list[str] | None = None,
        client_id: str | None = None,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        group_ids: list[str] | None = None,
        sample_period: float = 0.0,
    ) -> None:
        """``group_ids``: record Sparkplug B of these groups (``assets`` then filters asset names), a row per
        message or, with ``sample_period`` (s), per period as the monitor's ``[source] sample_period``."""
        try:
            if group_ids:
                filters = topics.read_filters(group_ids)
            elif assets:
                filters = [wire.telemetry_filter(prefix, a) for a in assets]
            else:
                filters = [wire.telemetry_filter(prefix)]
        except ValueError as exc:
            raise InputError(str(exc)) from None
        wanted = set(assets or ())
        self.sparkplug = (
            Host(lambda asset: ALL_SENSORS if not wanted or asset in wanted else None, sample_period=sample_period)
            if group_ids
            else None
        )
        self.gaps: Counter[str] = Counter()
        out.mkdir(parents=True, exist_ok=True)
        self.out, self.prefix = out, prefix
        self.queue: BatchQueue[Item] = BatchQueue(10000)
        cid = client_id or f"plantwatch-record-{socket.gethostname()}"[:200]
        self.session = MqttSession(settings, cid, filters, self.queue, State())
        self.files: dict[str, AssetFile] = {}
        self._open: OrderedDict[str, AssetFile] = OrderedDict()  # the files with a handle, least recent first
        self.max_open = open_files_cap()
        self.blocked: dict[str, str] = {}  # asset -> why its file cannot be a recording (a stray CSV)
        self.rows: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self._sampler = LogSampler()
        self._stop = False
        self.include, self.exclude = include or [], exclude or []
        self._kept: dict[frozenset[str], frozenset[str]] = {}

    def request_stop(self) -> None:
        self._stop = True

    def run(self, duration: float | None = None) -> None:
        self.session.start()
        started = time.monotonic()
        deadline = None if duration is None else started + duration
        log.info("record_started", broker=self.session.settings.url, filters=self.session.filters, out=str(self.out))
        try:
            while not self._stop and (deadline is None or time.monotonic() < deadline):
                self._batch(0.2)
                if self.session.login_refused:
                    raise BrokerError(
                        f"{self.session.settings.url} refused the login: {self.session.login_refused} "
                        "(check --username and the password file or variable)"
                    )
                if not self.session.ever_connected and time.monotonic() - started > CONNECT_TIMEOUT_S:
                    self._unreachable()
            if not self.session.ever_connected:
                self._unreachable()
            self.session.close_intake()
            while self._batch(0.0):  # drain what was taken in
                pass
        finally:
            self.session.close()
            failed: OutputError | None = None
            for f in self.files.values():
                try:
                    f.close()  # each ends on a whole row, written or not
                except OutputError as exc:
                    failed = failed or exc
            if failed is not None and sys.exc_info()[0] is None:
                raise failed

    def _unreachable(self) -> None:
        """Never connected: an error (exit 3), not 'recorded 0 rows'."""
        reason = self.session.unreachable or f"no answer within {CONNECT_TIMEOUT_S:.0f}s"
        raise BrokerError(f"cannot connect to broker {self.session.settings.url}: {reason}")

    def _sensors(self, t: Telemetry) -> Telemetry | Rejection:
        """The message with only the sensors --sensors/--exclude keep (the same set for the same names)."""
        if not (self.include or self.exclude):
            return t
        names = frozenset(t.values)
        kept = self._kept.get(names)
        if kept is None:
            kept = self._kept[names] = frozenset(
                n
                for n in names
                if (not self.include or any(fnmatchcase(n, p) for p in self.include))
                and not any(fnmatchcase(n, p) for p in self.exclude)
            )
            if len(self._kept) > 1000:  # names come from the wire: bounded
                self._kept.clear()
        if not kept:
            return Rejection("missing_sensor", "no sensor left by --sensors/--exclude")
        return Telemetry(t.ts, t.seq, {k: v for k, v in t.values.items() if k in kept})

    def _batch(self, wait: float) -> int:
        items = self.queue.take(BATCH, 0.0, wait)
        touched = {self._write(topic, payload) for topic, payload, *_ in items}
        for f in touched:
            if f is not None:
                f.flush()  # written and flushed, then acknowledged
        self.session.ack(items)
        return len(items)

    def _decode(self, topic: str, payload: bytes) -> tuple[str | Rejection | None, list[Telemetry | Rejection]]:
        """(asset, samples): a JSON message, or the rows of a Sparkplug message (none for an NBIRTH)."""
        if self.sparkplug is None:
            asset = wire.asset_of(topic, self.prefix)
            return asset, [asset if isinstance(asset, Rejection) else wire.decode_telemetry(payload)]
        out = self.sparkplug.handle(topic, payload)
        if out.gaps and out.asset is not None:
            self.gaps[out.asset] += out.gaps
        made = out.rows if out.row is None else ((out.ts, out.seq, out.row),)
        found: list[Telemetry | Rejection] = [] if out.rejection is None else [out.rejection]
        if made and out.asset is not None:
            stream = self.sparkplug.topics[topic][2]
            assert stream.table is not None
            found += [Telemetry(ts, seq, dict(zip(stream.table.names, row))) for ts, seq, row in made]
        return out.asset, found

    def _file(self, asset: str) -> AssetFile | Rejection:
        """The asset's file with an open handle; the least recently used beyond ``max_open`` are closed."""
        f = self.files.get(asset)
        if f is None:
            if asset in self.blocked:
                return Rejection("not_a_recording", self.blocked[asset])
            path = self.out / f"{asset}.csv"  # a Sparkplug asset "node/device": DIR/node/device.csv
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                f = AssetFile(path)
            except (InputError, IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
                self.blocked[asset] = why = f"{exc}; move it away to record {asset}"
                log.error("file_not_a_recording", asset=asset, reason=why)
                return Rejection("not_a_recording", why)
            self.files[asset] = f
        elif not f.is_open:
            f.open()
        self._open[asset] = f
        self._open.move_to_end(asset)
        while len(self._open) > self.max_open:
            _, oldest = self._open.popitem(last=False)
            oldest.release()
        return f

    def _write(self, topic: str, payload: bytes) -> AssetFile | None:
        asset, decoded = self._decode(topic, payload)
        found = [self._sensors(t) if isinstance(t, Telemetry) else t for t in decoded]
        f = None
        now = time.time()
        for t in found:
            if isinstance(t, Telemetry) and isinstance(asset, str):
                got = self._file(asset)
                if isinstance(got, AssetFile):
                    f = got
                    rejected = f.write(t, now)
                else:
                    rejected = got
                t = rejected if rejected is not None else t
            if isinstance(t, Rejection):
                self.rejected[t.reason] += 1
                suppressed = self._sampler.take(t.reason)
                if suppressed is not None:
                    log.warning(
                        "message_rejected", reason=t.reason, topic=topic[:200], detail=t.detail, suppressed=suppressed
                    )
                continue
            self.rows[str(asset)] += 1
        return f


def record_command(args: argparse.Namespace) -> int:
    """Record until Ctrl-C, SIGTERM or ``--duration``; prints what was written and rejected."""
    if args.duration is not None and not args.duration > 0:
        raise InputError("--duration must be > 0 seconds")
    assets = [a.strip() for a in args.assets.split(",") if a.strip()] if args.assets else None
    groups = [g.strip() for g in args.group_ids.split(",") if g.strip()] if args.group_ids else None
    if (args.format == "sparkplug") != bool(groups):
        raise InputError("--format sparkplug needs --group-ids G[,H] (and --group-ids needs --format sparkplug)")
    if args.sample_period < 0 or (args.sample_period and not groups):
        raise InputError("--sample-period must be >= 0 seconds, and applies to --format sparkplug only")
    out = outputs.check_folder(args.out, "--out")
    rec = Recorder(
        broker_login.settings({}, args),
        out,
        args.prefix,
        assets,
        args.client_id,
        columns.patterns(args.sensors),
        columns.patterns(args.exclude),
        groups,
        args.sample_period,
    )
    with stop_on_signals(rec.request_stop):
        rec.run(args.duration)
    log.info("record_finished", rows=dict(rec.rows), rejected=dict(rec.rejected), sequence_gaps=dict(rec.gaps))
    print(
        f"recorded {sum(rec.rows.values())} rows for {len(rec.rows)} asset(s) into {args.out}; "
        f"rejected {sum(rec.rejected.values())}" + (f" ({dict(rec.rejected)})" if rec.rejected else ""),
        file=sys.stderr,
    )
    return 0
