"""Per-asset sequence bookkeeping: which rows to score, in what order; redeliveries, gaps, late rows, restarts.

The rules (the README's reliability section says the same), for one asset whose newest scored ``seq``
is ``last``:

* ``seq`` is an integer 0..2**63-1 (the wire refuses others as ``bad_seq``).
* ``last < seq <= last + max_jump``: the stream goes on; the numbers skipped count as gaps.
* ``seq > last + max_jump``: not believed at once (one message saying 1,000,000 must not make the next
  999,960 look like redeliveries): ``seq_jump``, unless it is the third of consecutive numbers out there,
  which is a publisher that really jumped: the stream goes on from it (no gaps counted).
* ``last - reorder_window < seq <= last``: a number that was skipped (a gap) is scored late (counted in
  ``late``); one already scored is a redelivery (``duplicate``) unless the publisher restarted (below).
* further behind, down to the first seq of this run: a redelivery too (``duplicate``; a crash can leave
  thousands unacknowledged), unless the publisher restarted.
* below the first seq of this run and beyond the window: ``out_of_order``, unless the publisher restarted.
* The publisher restarted its numbering when a ``seq`` at or below ``last`` carries a payload timestamp
  newer than every scored one but one: newer than the second newest, or than the newest itself for the
  message that carried it. A single message with a timestamp in the future can therefore not hold the
  restart detection hostage (a redelivery repeats its original timestamp, so it never looks newer). A
  restarted publisher whose clock is behind is recognised by three consecutive numbers below the run's
  first; within the run's numbers it is rejected as duplicates until it passes ``last`` (an alert fires
  on a high duplicate rate), since it looks exactly like a redelivery.
* A run that a restart ended goes on when a newer message continues it (within ``max_jump``), so a single
  message that looked like a restart costs the stream it interrupted nothing.

The common case, a batch holding one consecutive run just above ``last``, costs a few integer operations
per asset (:meth:`Sequence.advance`); everything else goes through :meth:`Sequence.order`, per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

#: consecutive numbers off the stream (a jump, or a restart behind in time) that make a new run believed
RUN_TO_BELIEVE = 3
DEFAULT_REORDER_WINDOW = 1000
DEFAULT_MAX_JUMP = 100_000


class Ordered(NamedTuple):
    """What :meth:`Sequence.order` decided for one asset's rows of a batch."""

    keep: list[int]  # row indices to score, in this order
    gaps: int  # sequence numbers skipped
    late: int  # rows scored after a later number (within the reorder window)
    rejected: list[tuple[str, int]]  # (reason, seq): duplicate, out_of_order, seq_jump
    restarts: list[tuple[int, int, str]]  # (last seq, new seq, why): the publisher started again or jumped


@dataclass
class Sequence:
    """One asset's sequence state; see the module's rules.

    >>> s = Sequence()
    >>> s.advance(5, 6, 2.0, 1.0, 6)  # the common case: a consecutive run above the last
    0
    >>> s.order(np.array([9, 7]), np.array([4.0, 3.0]))  # 8 skipped; 7 arrives after 9 (late, still scored)
    Ordered(keep=[1, 0], gaps=1, late=0, rejected=[], restarts=[])
    >>> s.order(np.array([8, 8]), np.array([3.5, 3.5]))  # the gap filled late, then a redelivery of it
    Ordered(keep=[0], gaps=0, late=1, rejected=[('duplicate', 8)], restarts=[])
    """

    reorder_window: int = DEFAULT_REORDER_WINDOW
    max_jump: int = DEFAULT_MAX_JUMP
    last: int = -1  # newest seq scored (-1: none yet)
    first: int = -1  # first seq scored
    seen: int = 0  # bit i: seq last - i was scored, or lies before the stream began (0: a gap still open)
    hi_ts: float = -math.inf  # newest payload ts scored ...
    hi_seq: int = -1  # ... the seq that carried it ...
    ref_ts: float = -math.inf  # ... and the newest but that one
    run: tuple[int, int] = (-1, 0)  # (last seq, length) of consecutive numbers off the stream
    resumable: tuple[int, float] = (-1, math.inf)  # (last seq, ts of the restart) of the run a restart ended
    _full: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self._full = (1 << self.reorder_window) - 1

    # ------------------------------------------------------------ the common case

    def advance(self, first: int, last: int, ts_max: float, ts_second: float, seq_at_max: int) -> int:
        """Take the consecutive run ``first..last`` (caller checked :meth:`continues`); returns the gap before it."""
        gaps = first - self.last - 1 if self.last >= 0 else 0
        self._move(first, last)
        self._times(ts_max, ts_second, seq_at_max)
        self.run = (-1, 0)
        return gaps

    def continues(self, first: int) -> bool:
        """Whether a run starting at ``first`` simply goes on from the last seq (within the bounded jump)."""
        return first > self.last and (self.last < 0 or first - self.last <= self.max_jump)

    def _move(self, first: int, last: int) -> None:
        """The newest seq becomes ``last``, with ``first..last`` scored and the numbers between open gaps."""
        w = self.reorder_window
        n = last - first + 1
        run = self._full if n >= w else (1 << n) - 1
        if self.last < 0:
            self.first, self.seen = first, self._full  # nothing before the stream's first is expected
        else:
            k = last - self.last
            self.seen = ((self.seen << k) & self._full if k < w else 0) | run
        self.last = last

    def _times(self, ts_max: float, ts_second: float, seq_at_max: int) -> None:
        if ts_max > self.hi_ts:
            self.ref_ts = max(self.hi_ts, ts_second)
            self.hi_ts, self.hi_seq = ts_max, seq_at_max
        elif ts_max > self.ref_ts:
            self.ref_ts = ts_max

    # ------------------------------------------------------------ everything else

    def order(self, seqs: np.ndarray, ts: np.ndarray) -> Ordered:
        """Rows (in arrival order) to score, in ``seq`` order within runs of arrival, and what the others are."""
        s_list, t_list = seqs.tolist(), ts.tolist()
        runs: list[list[int]] = [[]]  # a new run of arrival starts where seq falls back and time moves on
        newest = -math.inf
        for j, (s, t) in enumerate(zip(s_list, t_list)):
            if runs[-1] and s < s_list[j - 1] and t > newest:
                runs.append([])
            runs[-1].append(j)
            newest = max(newest, t)
        out = Ordered([], 0, 0, [], [])
        gaps = late = 0
        for j in (j for run in runs for j in sorted(run, key=s_list.__getitem__)):
            verdict = self._one(s_list[j], t_list[j], out)
            if verdict >= 0:
                gaps += verdict
                out.keep.append(j)
            elif verdict == _LATE:
                late += 1
                out.keep.append(j)
        return out._replace(gaps=gaps, late=late)

    def _one(self, s: int, t: float, out: Ordered) -> int:
        """Decide one row: gaps before it (>= 0, scored), _LATE (scored late) or _REJECTED."""
        last = self.last
        if last < 0 or (s > last and s - last <= self.max_jump):
            gaps = s - last - 1 if last >= 0 else 0
            self._accept(s, t)
            return gaps
        if s > last:  # too far ahead: believed only as a run ...
            before, restart_ts = self.resumable
            if before >= 0 and 0 < s - before <= self.max_jump and t > restart_ts:  # ... or the run a single
                out.restarts.append((last, s, "resumed"))  # message had restarted going on after it
                self._restart(s, t)
                return 0
            return self._off_stream(s, t, out, "seq_jump", "jumped")
        behind = last - s
        if behind < self.reorder_window and not (self.seen >> behind) & 1:
            self.seen |= 1 << behind  # a gap filled late: scored, the newest seq stays
            self._times(t, -math.inf, s)
            self.run = (-1, 0)
            return _LATE
        if t > self.hi_ts or (t > self.ref_ts and s != self.hi_seq):
            out.restarts.append((last, s, "newer_timestamp"))
            self._restart(s, t)
            return 0
        if s >= self.first or behind < self.reorder_window:  # a number this run has passed: a redelivery
            out.rejected.append(("duplicate", s))  # (thousands come after a crash: never a "restart")
            return _REJECTED
        return self._off_stream(s, t, out, "out_of_order", "restarted")

    def _off_stream(self, s: int, t: float, out: Ordered, reason: str, why: str) -> int:
        prev, length = self.run
        self.run = (s, length + 1 if s == prev + 1 and length else 1)
        if self.run[1] < RUN_TO_BELIEVE:
            out.rejected.append((reason, s))
            return _REJECTED
        out.restarts.append((self.last, s, why))
        self._restart(s, t)
        return 0

    def _accept(self, s: int, t: float) -> None:
        self._move(s, s)
        self._times(t, -math.inf, s)
        self.run = (-1, 0)

    def _restart(self, s: int, t: float) -> None:
        """A new run of numbers from ``s``: what lies below it is not expected (the times are kept).

        The run it ends stays resumable by a newer message, so that one message that looked like a
        restart costs the stream it interrupted nothing (not even ``seq_jump`` until three consecutive).
        """
        self.resumable = (self.last, t)
        self.last = -1
        self._accept(s, t)

    # ------------------------------------------------------------ checkpoints

    def to_state(self) -> dict[str, Any]:
        """Plain numbers for the state directory (the gaps still open listed by seq); see :meth:`load_state`."""
        missing = self._full & ~self.seen
        open_gaps = [] if not missing else [self.last - i for i in range(self.reorder_window) if missing >> i & 1]
        return {
            "last": self.last,
            "first": self.first,
            "open": open_gaps,
            "hi_ts": self.hi_ts if math.isfinite(self.hi_ts) else None,
            "hi_seq": self.hi_seq,
            "ref_ts": self.ref_ts if math.isfinite(self.ref_ts) else None,
        }

    def load_state(self, d: dict[str, Any]) -> None:
        """Continue from :meth:`to_state`; ValueError names the field that does not fit."""
        for key in ("last", "first", "hi_seq"):
            v = d.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or not -1 <= v <= 2**63 - 1:
                raise ValueError(f"sequence state {key!r} must be an integer -1..2**63-1, got {v!r}")
        times = {}
        for key in ("hi_ts", "ref_ts"):
            v = d.get(key)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)):
                raise ValueError(f"sequence state {key!r} must be a finite number or null, got {v!r}")
            times[key] = -math.inf if v is None else float(v)
        last, open_gaps = d["last"], d.get("open")
        if not isinstance(open_gaps, list) or not all(
            isinstance(g, int) and not isinstance(g, bool) and 0 <= last - g < self.reorder_window for g in open_gaps
        ):
            raise ValueError(f"sequence state 'open' must list seqs within the reorder window, got {open_gaps!r}")
        seen = self._full
        for g in open_gaps:
            seen &= ~(1 << (last - g))
        self.last, self.first, self.hi_seq = last, d["first"], d["hi_seq"]
        self.hi_ts, self.ref_ts = times["hi_ts"], times["ref_ts"]
        self.seen = seen if last >= 0 else 0


_LATE = -1
_REJECTED = -2
