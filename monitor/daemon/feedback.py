"""Operators' feedback on alarm episodes: which were false alarms, which real faults.

Every episode has a stable id (:func:`monitor.wire.episode_id`), on the alarm
topic and in the log. The monitor remembers the episodes it raised (kept in
``<state_dir>/episodes-<instance>.jsonl``, so feedback can come after a
restart); ``plantwatch feedback --asset A --episode ID --label
false_alarm|confirmed`` is checked against them and stored with the
episode's time range in ``<state_dir>/feedback-<instance>.jsonl``, one JSON
object a line, the latest label of an episode winning. ``plantwatch train
--feedback FILE`` reads that file: a false alarm's rows are normal operation
and stay in (or go back into) the training set, a confirmed fault's rows are
left out of it.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import logs, wire
from ..labels import read_labels
from .metrics import State

log = logs.get("feedback")

#: episodes remembered (the oldest are forgotten first; feedback for them is refused as unknown)
MAX_EPISODES = 20000


class Episodes:
    """The episodes this monitor raised: id -> (asset, start, end or None), kept in a JSON-lines file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.known: OrderedDict[str, dict[str, Any]] = OrderedDict()
        if path is not None and path.exists():
            lines = 0
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                lines += 1
                try:
                    rec = json.loads(line)
                    self._put(str(rec["episode"]), rec)
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line after a crash: the rest still counts
            if lines > 2 * len(self.known) + 1000:
                self._compact()

    def _put(self, eid: str, rec: dict[str, Any]) -> None:
        old = self.known.pop(eid, {})
        self.known[eid] = {**old, **rec}
        while len(self.known) > MAX_EPISODES:
            self.known.popitem(last=False)

    def note(self, asset: str, start: float, end: float | None) -> None:
        """An episode raised (end None) or ended."""
        eid = wire.episode_id(asset, start)
        rec = {"episode": eid, "asset": asset, "start": start, "end": end}
        self._put(eid, rec)
        _append(self.path, rec)

    def get(self, asset: str, eid: str) -> dict[str, Any] | None:
        rec = self.known.get(eid)
        return rec if rec is not None and rec.get("asset") == asset else None

    def _compact(self) -> None:
        assert self.path is not None
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.known.values()), encoding="utf-8")
        os.replace(tmp, self.path)


def _append(path: Path | None, rec: dict[str, Any]) -> None:
    """One line, flushed and synced: a crash loses at most the line being written."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        log.error("not_saved", path=str(path), reason=str(exc))


class Feedback:
    """Labels operators give episodes: checked against :class:`Episodes`, stored, counted per asset and label."""

    def __init__(self, folder: str | None, instance: str, state: State) -> None:
        base = Path(folder) if folder else None
        self.episodes = Episodes(base / f"episodes-{instance}.jsonl" if base else None)
        self.path = base / f"feedback-{instance}.jsonl" if base else None
        self.state = state
        #: the payload time of an asset's last scored message (an active episode's range ends there)
        self.clock: Callable[[str], float] = lambda asset: time.time()
        if self.path is not None and self.path.exists():
            try:
                for rec in read_labels(self.path):
                    self._count(rec["asset"], rec["label"])
            except (OSError, ValueError) as exc:
                log.error("feedback_unreadable", path=str(self.path), reason=str(exc))

    def _count(self, asset: str, label: str) -> None:
        with self.state.lock:
            key = (asset, label)
            self.state.feedback[key] = self.state.feedback.get(key, 0) + 1

    def label(self, req: wire.ControlRequest, user: str) -> tuple[str, str]:
        """(message, refusal reason or ""): the label stored with the episode's time range."""
        ep = self.episodes.get(req.asset, req.episode)
        if ep is None:
            return (
                f"no episode {req.episode} of asset {req.asset} is known to this monitor "
                "(the id is on the alarm topic and in the alarm_raised log line)",
                "unknown_episode",
            )
        end = ep.get("end")
        rec = {
            "asset": req.asset,
            "episode": req.episode,
            "label": req.label,
            "start": ep["start"],
            "end": end if end is not None else self.clock(req.asset),  # still active: up to its last message
            "note": req.reason,
            "by": f"{user} ({req.by})" if req.by and req.by != user else user,
            "at": time.time(),
        }
        _append(self.path, rec)
        self._count(req.asset, req.label)
        log.info("feedback_stored", **{k: rec[k] for k in ("asset", "episode", "label", "note", "by")})
        return f"episode {req.episode} of {req.asset} labelled {req.label}", ""
