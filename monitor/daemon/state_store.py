"""The state directory: what each asset's stream has seen, kept across restarts and crashes.

Without it, a monitor killed while draining a backlog forgets which ``seq`` it scored, and the broker's
redeliveries of messages it had scored (their acknowledgements had not reached the broker) are scored a
second time. Two files per monitor instance, each replaced atomically (written aside, then renamed), so
a crash at any moment leaves the previous or the next version, never half of one:

* ``seq-<instance>.json``: per asset, the sequence state (:class:`.sequence.Sequence`: newest seq, the
  gaps still open, the timestamps restart detection uses) and how many messages its stream has scored.
  The worker writes it *before* it acknowledges the messages it covers, at most every
  :data:`SEQ_EVERY_S` (or every :data:`SEQ_EVERY_N` messages), so every message the broker will not
  send again is in it, and every redelivery of a scored message is recognised as a ``duplicate``;
  It also lists, per topic, a digest of the retained telemetry message already handled there, so that a
  retained sample is not scored or counted again at every start;
* ``streams-<instance>.json``: the same plus each stream's detector state (window, smoothing,
  threshold, alarm; :meth:`StreamState.to_state`) and the model it belongs to, every
  ``state_interval`` seconds and at a clean stop, flushed to disk (fsync). A restarted monitor
  continues each stream from there instead of warming up again; a stream of another model (weights or
  settings changed meanwhile) starts afresh, its sequence state is kept.

The files are JSON (numbers, lists and strings only: nothing is unpickled), versioned by :data:`FORMAT`.
One that cannot be read is set aside as ``*.bad`` and logged; the monitor then starts without it.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import orjson

from .. import logs
from ..errors import ConfigError

log = logs.get("state")

FORMAT = 1
#: the sequence file is rewritten (and the messages it covers acknowledged) at most this often ...
SEQ_EVERY_S = 0.05
#: ... unless this many messages wait for their acknowledgement (the broker's in-flight window is finite)
SEQ_EVERY_N = 500

Record = dict[str, Any]  # one asset: {"seq": ..., "scored": int, "model": str | None, "stream": {...} | None}


class StateStore:
    """The two state files of one monitor instance in ``folder``."""

    #: messages are acknowledged once the sequence file covers them, not the stream file (see the worker)
    before_ack = False
    max_unacked = SEQ_EVERY_N

    def __init__(self, folder: Path, instance: str) -> None:
        self.folder, self.instance = folder, instance
        self.seq_path = folder / f"seq-{instance}.json"
        self.streams_path = folder / f"streams-{instance}.json"
        self.generation = 0
        #: topic -> digest of the retained message already handled there (the worker's, saved with the seq file)
        self.retained: dict[str, str] = {}
        self.failed: str | None = None  # the last write error, until a write succeeds

    @classmethod
    def open(cls, folder: str | None, instance: str) -> StateStore | None:
        """The store in ``folder`` (created if needed); None when no folder is configured.

        Raises ConfigError naming the folder when it cannot be created or written.
        """
        if not folder:
            return None
        path = Path(folder)
        try:
            path.mkdir(mode=0o750, parents=True, exist_ok=True)
            probe = path / f".{instance}.probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"state_dir: cannot write to {path}: {exc.strerror or exc}") from None
        return cls(path, instance)

    # ------------------------------------------------------------ reading

    def load(self) -> dict[str, Record]:
        """Every asset's last saved record: the stream file's, with the newer sequence file's seq on top."""
        streams, seq = self._read(self.streams_path), self._read(self.seq_path)
        records: dict[str, Record] = {}
        for doc in sorted((d for d in (streams, seq) if d is not None), key=lambda d: d["generation"]):
            for name, rec in doc["assets"].items():
                if isinstance(rec, dict):
                    records[name] = {**records.get(name, {}), **rec}
        self.generation = max((d["generation"] for d in (streams, seq) if d is not None), default=0)
        kept = seq.get("retained") if seq is not None else None
        if isinstance(kept, dict):
            self.retained.update({k: v for k, v in kept.items() if isinstance(k, str) and isinstance(v, str)})
        if records:
            written = max(d["written"] for d in (streams, seq) if d is not None)
            log.info(
                "state_restored",
                folder=str(self.folder),
                assets=len(records),
                streams=sum(1 for r in records.values() if r.get("stream") is not None),
                age_s=round(time.time() - written, 1),
            )
        return records

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("state_unreadable", path=str(path), reason=exc.strerror or str(exc))
            return None
        try:
            doc = orjson.loads(raw)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError(f"not a plantwatch state file of format {FORMAT}")
            if not isinstance(doc.get("assets"), dict) or not isinstance(doc.get("generation"), int):
                raise ValueError("no assets table or generation")
            if not isinstance(doc.get("written"), (int, float)):
                raise ValueError("no written time")
        except ValueError as exc:  # orjson.JSONDecodeError is one
            bad = path.with_name(path.name + ".bad")
            with contextlib.suppress(OSError):
                path.replace(bad)
            log.error("state_unreadable", path=str(path), reason=str(exc)[:200], moved_to=str(bad),
                      note="starting without it: redeliveries of what it covered may be scored again")  # fmt: skip
            return None
        return doc

    def fetch(self, asset: str) -> Record | None:
        """Nothing beyond :meth:`load`: the files are read whole at start."""
        return None

    # ------------------------------------------------------------ writing

    def write_seq(self, records: dict[str, Record]) -> bool:
        """Replace the sequence file (records without their stream states); False if it could not be written."""
        return self._write(
            self.seq_path, {n: {k: v for k, v in r.items() if k != "stream"} for n, r in records.items()}
        )

    def write_streams(self, records: dict[str, Record]) -> bool:
        """Replace the stream file, flushed to disk; then the sequence file, so that it stays the newer one."""
        return self._write(self.streams_path, records, sync=True) and self.write_seq(records)

    def _write(self, path: Path, assets: dict[str, Record], sync: bool = False) -> bool:
        self.generation += 1
        doc = {
            "format": FORMAT,
            "instance": self.instance,
            "written": time.time(),
            "generation": self.generation,
            "assets": assets,
            "retained": self.retained,
        }
        tmp = path.with_name(path.name + ".tmp")
        try:
            data = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
            with open(tmp, "wb") as f:
                f.write(data)
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
            tmp.replace(path)
        except (OSError, TypeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            if reason != self.failed:  # said once per kind of failure, and again when it changes
                log.error("state_write_failed", path=str(path), reason=reason,
                          note="scoring goes on; after a crash, redeliveries may be scored again")  # fmt: skip
            self.failed = reason
            return False
        if self.failed is not None:
            log.info("state_write_recovered", path=str(path))
            self.failed = None
        return True
