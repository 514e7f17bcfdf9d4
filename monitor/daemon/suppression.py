"""Maintenance windows in the monitor: which assets are suppressed, operators' requests, and what survives a restart.

A suppressed asset is still scored and exported, but raises no alarm episode
and its threshold learns nothing (``StreamState.muted``); its retained alarm
topic says ``suppressed`` and until when, ``plantwatch_suppressed`` is 1. When
its window ends it re-arms after ``[suppression] warmup_rows`` more messages
(alarm topic ``rearming``, ``plantwatch_asset_warming_up`` 1), so the
transient of a unit coming back raises nothing.

Cost: the worker asks :attr:`Gate.next_change` once per batch (one float
comparison); only when a window starts or ends, a request arrives, an asset
is added or models are swapped does :meth:`Gate.refresh` walk the assets.

Operators' windows are kept in ``<state_dir>/suppressions-<instance>.json``,
written whole to a temporary file and renamed over the old one (atomic), so a
restart, or a crash mid-write, keeps them; expired ones are dropped on load.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Protocol

from .. import logs, wire
from ..detector import ACCEPT_ROWS, AlarmLogic, StreamState
from ..maintenance import Schedule, Window
from .alarm_events import reset_event, status_event
from .feedback import Feedback
from .metrics import AssetStats, State

log = logs.get("suppression")

FILE_SCHEMA = 1
#: a request older than this (by its sender's clock) when it arrives is refused: it waited at the broker
#: while the monitor was away, and the operator was told no monitor answered
MAX_REQUEST_AGE_S = 300.0
#: how far ahead scheduled windows are expanded; the gate looks again before then
_HORIZON_S = 8 * 86400.0


@dataclass
class Mute:
    """An asset's suppression as the worker holds it."""

    window: Window | None = None  # the window in force (the latest-ending that covers it)
    rearm: int = 0  # messages left in the warm-up after a window ended


class Suppressible(Protocol):
    """What the gate needs of the worker's asset."""

    name: str
    stream: StreamState
    stats: AssetStats
    mute: Mute

    def fresh_alarm(self) -> AlarmLogic: ...


def iso(ts: float) -> str:
    """Epoch seconds as an ISO 8601 UTC time for messages (``2026-12-05T08:00:00Z``)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Outcome:
    """What a control request did: ``reason`` empty when accepted."""

    message: str
    reason: str = ""
    assets: tuple[str, ...] = ()


#: next to ``suppressions-<instance>.json``: every operator window ever applied, one JSON object a line
HISTORY_SUFFIX = ".history.jsonl"


class Store:
    """The operators' windows, kept in a JSON file replaced atomically (None: in memory only)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._logged: set[tuple[str, float]] = set()  # windows already appended to the history

    def load(self, now: float) -> list[Window]:
        if self.path is None or not self.path.exists():
            return []
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if doc.get("schema") != FILE_SCHEMA:
                raise ValueError(f"schema {doc.get('schema')!r}, this monitor reads {FILE_SCHEMA}")
            windows = [
                Window(
                    tuple(str(p) for p in w["patterns"]),
                    float(w["start"]),
                    float(w["end"]),
                    str(w["reason"]),
                    str(w.get("by", "")),
                    str(w.get("id", "")),
                )
                for w in doc["windows"]
            ]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = self.path.with_name(f"{self.path.name}.unreadable-{int(now)}")
            try:
                os.replace(self.path, aside)
            except OSError:
                aside = self.path  # left where it is: the next save replaces it
            log.error("suppressions_unreadable", path=str(self.path), moved_to=str(aside), reason=str(exc)[:300])
            return []
        live = [w for w in windows if w.end > now]
        log.info("suppressions_loaded", path=str(self.path), active=len(live), expired=len(windows) - len(live))
        return live

    def save(self, windows: Sequence[Window]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"schema": FILE_SCHEMA, "windows": [w.to_dict() for w in windows]}, indent=1)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dirfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
        self._log_history(windows)

    def _log_history(self, windows: Sequence[Window]) -> None:
        """Append windows not yet appended to ``<file>.history.jsonl``: the file above forgets a window once it
        ends, but 'plantwatch retrain' leaves the rows of every past window out of the next training set."""
        assert self.path is not None
        new = [w for w in windows if (w.id, w.end) not in self._logged]
        if not new:
            return
        try:
            with open(self.path.with_name(self.path.stem + HISTORY_SUFFIX), "a", encoding="utf-8") as f:
                f.write("".join(json.dumps(w.to_dict(), sort_keys=True) + "\n" for w in new))
        except OSError as exc:
            log.error("suppression_history_not_written", path=str(self.path), reason=str(exc))
            return
        self._logged.update((w.id, w.end) for w in new)


class Gate:
    """Scheduled and operators' windows, applied to the worker's assets between batches."""

    def __init__(
        self,
        schedules: Sequence[Schedule],
        store: Store,
        warmup_rows: int,
        state: State,
        publish: Callable[[str, bytes], None],
        reply: Callable[[str, bytes], None],
        prefix: str,
        instance: str,
        now: float | None = None,
    ) -> None:
        now = time.time() if now is None else now
        self.store, self.warmup_rows, self.state, self._publish, self.prefix = (
            store,
            warmup_rows,
            state,
            publish,
            prefix,
        )
        self._reply, self.instance = reply, instance
        self.feedback: Feedback | None = None  # operators' labels of alarm episodes, set by the worker
        #: accepts the current operating point of the named assets (the worker's; returns the ones it took)
        self.accept: Callable[[tuple[str, ...], str], list[str]] | None = None
        self.adhoc: list[Window] = store.load(now)
        self.schedules: list[Schedule] = []
        self.next_change = 0.0  # epoch seconds; 0: refresh at the next batch
        self._scheduled: list[Window] = []
        self._pending: list[Schedule] | None = None
        self.reschedule(schedules, now)
        if store.path is None:
            log.warning(
                "suppressions_not_persistent",
                note="no state_dir (nor $STATE_DIRECTORY): operators' suppressions are lost when the monitor restarts",
            )

    # ------------------------------------------------------------ windows

    def reschedule(self, schedules: Sequence[Schedule], now: float | None = None) -> None:
        """New [[maintenance]] windows (a reload), taken by the worker at its next batch; says which have ended."""
        now = time.time() if now is None else now
        ended = [s for s in schedules if s.start is not None and s.start.timestamp() + s.duration <= now]
        for s in ended:
            log.warning("maintenance_window_expired", window=s.id, when=s.describe(), note="ignored; remove it")
        with self.state.lock:
            self.state.windows_expired = len(ended)
        self._pending = list(schedules)
        self.next_change = 0.0

    def windows(self) -> list[Window]:
        return self._scheduled + self.adhoc

    def window_of(self, asset: str) -> Window | None:
        """The window in force for ``asset`` (the one ending last), as of the last refresh."""
        best: Window | None = None
        for w in self._scheduled + self.adhoc:
            if (best is None or w.end > best.end) and w.covers(asset):
                best = w
        return best

    def _expand(self, now: float) -> None:
        """Windows active now, and the next time any starts or ends."""
        if self._pending is not None:
            self.schedules, self._pending = self._pending, None
        upcoming = [w for s in self.schedules for w in s.occurrences(now, now + _HORIZON_S)]
        expired = [w for w in self.adhoc if w.end <= now]
        if expired:
            self.adhoc = [w for w in self.adhoc if w.end > now]
            for w in expired:
                log.info("suppression_expired", patterns=list(w.patterns), by=w.by, reason=w.reason, id=w.id)
            self._save()
        self._scheduled = [w for w in upcoming if w.start <= now]
        edges = [w.start for w in upcoming if w.start > now] + [w.end for w in self._scheduled + self.adhoc]
        self.next_change = min(edges, default=now + _HORIZON_S)

    def refresh(self, assets: Iterable[Suppressible], now: float) -> None:
        """Apply the windows in force at ``now`` to every asset (a window started or ended, or things changed)."""
        self._expand(now)
        for a in assets:
            self.apply(a, now)

    def apply(self, a: Suppressible, now: float) -> None:
        """One asset: mute it when a window covers it, start its warm-up when its window has ended."""
        w, m = self.window_of(a.name), a.mute
        if w is not None and w.end <= now:
            w = None
        if w is not None and w != m.window:
            self._suppress(a, w)
        elif w is None and m.window is not None:
            m.window = None
            m.rearm = self.warmup_rows
            log.info("asset_rearming", asset=a.name, messages=self.warmup_rows)
            if m.rearm:
                self._event(a, "rearming", now, "maintenance window ended", until=now)
            else:
                self._rearmed(a)
        a.stream.muted = m.window is not None or m.rearm > 0
        with self.state.lock:
            a.stats.suppressed_until = m.window.end if m.window is not None else math.nan
            a.stats.warming_up = a.stats.warming_up or m.rearm > 0

    def rearm_step(self, a: Suppressible, rows: int) -> None:
        """Count down the warm-up by the messages just scored (the worker calls this only while it runs)."""
        m = a.mute
        m.rearm = max(0, m.rearm - rows)
        if m.rearm == 0:
            self._rearmed(a)

    def _suppress(self, a: Suppressible, w: Window) -> None:
        m, st = a.mute, a.stats
        if a.stream.alarm.active and a.stream.alarm.episode is not None:  # an alarm in force is ended, not frozen
            ep = a.stream.alarm.episode
            ev = reset_event(a.name, ep, st.last_ts, st.score, st.threshold, "suppressed")
            if self.feedback is not None:
                self.feedback.episodes.note(a.name, ep.start, ev.ended)
            self._publish(wire.alarm_topic(self.prefix, a.name), ev.encode())
        a.stream.alarm = a.fresh_alarm()
        with self.state.lock:
            st.alarm = False
        m.window, m.rearm = w, 0
        log.warning(
            "asset_suppressed", asset=a.name, until=iso(w.end), reason=w.reason, by=w.by, window=w.id or "ad hoc"
        )
        who = w.id if w.by == "config" else f"by {w.by}"
        self._event(a, "suppressed", w.start, f"{w.reason} ({who})", until=w.end)

    def _rearmed(self, a: Suppressible) -> None:
        a.stream.muted = False
        log.info("asset_rearmed", asset=a.name)
        self._event(a, "cleared", time.time(), "rearmed")

    def _event(self, a: Suppressible, state: str, ts: float, reason: str, until: float | None = None) -> None:
        ev = status_event(a.name, state, ts, a.stats.score, a.stats.threshold, reason, until)
        self._publish(wire.alarm_topic(self.prefix, a.name), ev.encode())

    # ------------------------------------------------------------ operators' requests

    def handle(self, user: str, payload: bytes, known: Sequence[str], now: float) -> bool:
        """One control message from ``user`` (the topic's, which the broker's ACL vouches for): validated,
        logged with who and why, counted, answered on the user's reply topic. True if it changed anything."""
        req = wire.decode_control(payload)
        if isinstance(req, wire.Rejection):
            rid, outcome = _id_of(payload), Outcome(f"refused: {req.detail}", req.reason)
            action, asset, why, by = "?", "?", "", ""
        else:
            rid, outcome = req.id, self.request(req, user, known, now)
            action, asset, why, by = req.action, req.asset, req.reason, req.by
        result = outcome.reason or "accepted"
        with self.state.lock:
            self.state.control[result] = self.state.control.get(result, 0) + 1
        (log.warning if outcome.reason else log.info)(
            "control_" + ("refused" if outcome.reason else "accepted"),
            user=user,
            by=by,
            action=action,
            asset=asset,
            reason=why,
            result=result,
            message=outcome.message,
            request=rid,
        )
        reply = wire.ControlReply(
            rid, self.instance, not outcome.reason, outcome.message, outcome.reason, outcome.assets
        )
        self._reply(wire.reply_topic(self.prefix, self.instance, user), reply.encode())
        return not outcome.reason

    def request(self, req: wire.ControlRequest, user: str, known: Sequence[str], now: float) -> Outcome:
        """Suppress, unsuppress or label an episode; a refusal changes nothing. The caller refreshes the assets."""
        if req.sent is not None and now - req.sent > MAX_REQUEST_AGE_S and req.action != "list":
            return Outcome(
                f"sent {now - req.sent:.0f} s ago (it waited at the broker while this monitor was away); "
                "send it again if it still holds",
                "expired",
            )
        if req.action == "suppress":
            return self._add(req, user, known, now)
        if req.action == "list":
            return self._list(req.asset, now)
        if req.action == "accept":
            return self._accept(req, user, known)
        if req.action == "feedback":
            if self.feedback is None:
                return Outcome("this monitor takes no feedback", "unknown_episode")
            message, refused = self.feedback.label(req, user)
            return Outcome(message, refused, (req.asset,) if not refused else ())
        return self._remove(req, known)

    def _add(self, req: wire.ControlRequest, user: str, known: Sequence[str], now: float) -> Outcome:
        assert req.until is not None  # decode_control checked it
        if any(w.id == req.id for w in self.adhoc):  # a redelivery of a request already applied
            return Outcome(f"already applied (request {req.id})")
        hit = tuple(sorted(a for a in known if fnmatchcase(a, req.asset)))
        if not hit:
            return Outcome(_unknown(req.asset, known), "unknown_asset")
        if req.until <= now:
            return Outcome(f"the window ends at {iso(req.until)}, which has passed", "expired")
        for w in self.adhoc:
            both = [a for a in hit if w.covers(a)]
            if both:
                return Outcome(
                    f"{both[0]} is already suppressed until {iso(w.end)} by {w.by or 'someone'} ({w.reason}); "
                    f"run unsuppress --asset '{w.patterns[0]}' first",
                    "overlapping",
                )
        who = f"{user} ({req.by})" if req.by and req.by != user else user
        self.adhoc.append(Window((req.asset,), now, req.until, req.reason, who, req.id))
        unsaved = self._save()
        self.next_change = 0.0
        return Outcome(
            f"suppressed {len(hit)} asset(s) until {iso(req.until)}: {', '.join(hit[:10])}{unsaved}", assets=hit
        )

    def _accept(self, req: wire.ControlRequest, user: str, known: Sequence[str]) -> Outcome:
        """The operator says where the assets run now is normal: running alarms clear, a new baseline is learned."""
        hit = tuple(sorted(a for a in known if fnmatchcase(a, req.asset)))
        if not hit or self.accept is None:
            return Outcome(_unknown(req.asset, known), "unknown_asset")
        who = f"{user} ({req.by})" if req.by and req.by != user else user
        took = tuple(self.accept(hit, f"accepted by {who}: {req.reason}"))
        return Outcome(
            f"accepted the operating point of {len(took)} asset(s): {', '.join(took[:10])}; alarms cleared, "
            f"the next {ACCEPT_ROWS} samples are learned as normal (no alarms), then scoring measures departures "
            "from them",
            assets=took,
        )

    def _remove(self, req: wire.ControlRequest, known: Sequence[str]) -> Outcome:
        gone = [w for w in self.adhoc if req.asset in w.patterns]
        if not gone:
            named = [a for a in known if fnmatchcase(a, req.asset)]
            gone = [w for w in self.adhoc if any(w.covers(a) for a in named)]
        if not gone:
            active = ", ".join(f"'{w.patterns[0]}' until {iso(w.end)}" for w in self.adhoc[:5]) or "none"
            scheduled = " (scheduled [[maintenance]] windows end by themselves or by editing the config)"
            return Outcome(f"no operator suppression for '{req.asset}' (active: {active}){scheduled}",
                           "no_such_suppression")  # fmt: skip
        self.adhoc = [w for w in self.adhoc if w not in gone]
        unsaved = self._save()
        self.next_change = 0.0
        hit = tuple(sorted(a for a in known if any(w.covers(a) for w in gone)))
        ended = ", ".join(w.patterns[0] for w in gone)
        return Outcome(f"ended {len(gone)} suppression(s): {ended}{unsaved}", assets=hit)

    def _list(self, pattern: str, now: float) -> Outcome:
        """The windows in force now and the scheduled ones of the next week whose patterns may name ``pattern``."""
        ahead = [w for s in self.schedules for w in s.occurrences(now, now + 7 * 86400) if w.start > now]
        lines = []
        for w in sorted(self._scheduled + self.adhoc + ahead, key=lambda w: w.start):
            if w.end <= now or not any(fnmatchcase(p, pattern) or fnmatchcase(pattern, p) or pattern == "*"
                                       for p in w.patterns):  # fmt: skip
                continue
            when = "now" if w.start <= now else f"from {iso(w.start)}"
            who = w.id if w.by == "config" else f"by {w.by}"
            lines.append(f"{','.join(w.patterns)} {when} until {iso(w.end)}: {w.reason} ({who})")
        return Outcome("\n".join(lines) if lines else f"no maintenance window for '{pattern}' now or in the next week")

    def _save(self) -> str:
        """Write the operators' windows; on failure, the words the operator's reply carries (else empty)."""
        try:
            self.store.save(self.adhoc)
        except OSError as exc:
            log.error("suppressions_not_saved", path=str(self.store.path), reason=str(exc))
            return f" (NOT saved to {self.store.path}: {exc}; it holds until this monitor restarts)"
        return ""


def _unknown(pattern: str, known: Sequence[str]) -> str:
    names = sorted(known)
    some = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
    return f"pattern '{pattern}' matches none of the {len(names)} assets this monitor scores ({some or 'none yet'})"


def store_for(state_dir: str | None, instance: str) -> Store:
    """The file of ``instance`` in ``state_dir`` (or $STATE_DIRECTORY, which systemd sets); None: memory only."""
    folder = state_dir or os.environ.get("STATE_DIRECTORY", "").split(":")[0] or None
    return Store(Path(folder) / f"suppressions-{instance}.json" if folder else None)


def _id_of(payload: bytes) -> str:
    """The id of a request refused as malformed, if it has one the sender can match the reply with."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return ""
    rid = doc.get("id") if isinstance(doc, dict) else None
    return rid[:128] if isinstance(rid, str) else ""
