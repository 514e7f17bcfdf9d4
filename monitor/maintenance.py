"""Maintenance windows: when an asset is scored but raises no alarm, spelt once for the config and the daemon.

A window comes from the config (``[[maintenance]]``: a fixed start and end,
or a weekly schedule with a duration, in the plant's time zone) or from an
operator (``plantwatch suppress``). Both become :class:`Window` s of epoch
seconds, so the daemon compares numbers; the time zone is applied once, when a
schedule is turned into its occurrences (daylight saving included: a weekly
"Sat 22:00" in Europe/Berlin starts at 21:00 UTC in winter, 20:00 in summer).

>>> s = Schedule.weekly(("boiler*",), "inspection", "Sat 22:00", "4h", "Europe/Berlin")
>>> [w.start for w in s.occurrences(1765000000.0, 1765000000.0 + 7 * 86400)]  # Sat 6 Dec 2025, 21:00 UTC
[1765054800.0]
>>> parse_duration("1h30m"), parse_duration("2h")
(5400.0, 7200.0)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from fnmatch import fnmatchcase
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_WEEKLY_S = 7 * 86400.0


def parse_duration(text: str) -> float:
    """Seconds of ``90s``, ``15m``, ``2h``, ``1d`` or a sum of them (``1h30m``); ValueError says the form."""
    t = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(t)
    if not t or "".join(n + u for n, u in parts) != t:
        raise ValueError(f"duration {text!r}: write it as 90s, 15m, 2h, 1d or 1h30m")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"duration {text!r}: must be more than 0")
    return seconds


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (e.g. Europe/Berlin); ValueError names it when it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as UTC or Europe/Berlin)") from None


def patterns_overlap(a: Iterable[str], b: Iterable[str]) -> bool:
    """Whether two pattern lists may name the same asset (equal, or one matches the other's text)."""
    bs = list(b)
    return any(p == q or fnmatchcase(p, q) or fnmatchcase(q, p) for p in a for q in bs)


@dataclass(frozen=True)
class Window:
    """Assets matching ``patterns`` are suppressed from ``start`` to ``end`` (epoch seconds)."""

    patterns: tuple[str, ...]
    start: float
    end: float
    reason: str
    by: str = ""  # who asked ("config" for [[maintenance]])
    id: str = ""  # the request id of an ad hoc window; maintenance[N] for a scheduled one

    def covers(self, asset: str) -> bool:
        return any(fnmatchcase(asset, p) for p in self.patterns)

    def to_dict(self) -> dict[str, object]:
        return {
            "patterns": list(self.patterns),
            "start": self.start,
            "end": self.end,
            "reason": self.reason,
            "by": self.by,
            "id": self.id,
        }


def _days(spec: str) -> tuple[int, ...]:
    """``Sat``, ``Mon,Thu``, ``Mon-Fri`` or ``daily`` as weekday numbers (Monday 0)."""
    s = spec.strip().lower()
    if s == "daily":
        return tuple(range(7))
    out: list[int] = []
    for part in s.split(","):
        lo, _, hi = part.strip().partition("-")
        if lo[:3] not in WEEKDAYS or (hi and hi[:3] not in WEEKDAYS):
            raise ValueError(f"weekly day {part.strip()!r}: use Mon..Sun, a list (Mon,Thu), a range (Mon-Fri) or daily")
        a, b = WEEKDAYS.index(lo[:3]), WEEKDAYS.index((hi or lo)[:3])
        out.extend(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class Schedule:
    """One ``[[maintenance]]`` entry: a fixed window, or weekly days at a local time for a duration."""

    patterns: tuple[str, ...]
    reason: str
    tz: ZoneInfo
    duration: float  # seconds
    start: datetime | None = None  # fixed window (aware)
    days: tuple[int, ...] = ()  # weekly: weekdays, Monday 0
    at: clock | None = None  # weekly: local start time
    id: str = ""

    @classmethod
    def fixed(
        cls, patterns: Sequence[str], reason: str, start: datetime, end: datetime, tz: str, id: str = ""
    ) -> Schedule:
        """From ``start`` to ``end``; times without an offset are in ``tz``."""
        z = zone(tz)
        s, e = (t if t.tzinfo is not None else t.replace(tzinfo=z) for t in (start, end))
        if e <= s:
            raise ValueError(f"end {end.isoformat()} is not after start {start.isoformat()}")
        return cls(tuple(patterns), reason, z, (e - s).total_seconds(), start=s, id=id)

    @classmethod
    def weekly(cls, patterns: Sequence[str], reason: str, when: str, duration: str, tz: str, id: str = "") -> Schedule:
        """``when`` is ``"<days> HH:MM"`` in ``tz`` (e.g. ``"Sat 22:00"``, ``"Mon-Fri 06:30"``)."""
        z = zone(tz)
        days, _, hhmm = when.strip().rpartition(" ")
        try:
            at = clock.fromisoformat(hhmm.zfill(5))
        except ValueError:
            raise ValueError(f"weekly {when!r}: write '<days> HH:MM', e.g. 'Sat 22:00' or 'Mon-Fri 06:30'") from None
        seconds = parse_duration(duration)
        if seconds >= MAX_WEEKLY_S:
            raise ValueError(f"duration {duration!r}: a weekly window must be shorter than a week")
        return cls(tuple(patterns), reason, z, seconds, days=_days(days), at=at, id=id)

    def occurrences(self, t0: float, t1: float) -> list[Window]:
        """Its windows that overlap [t0, t1] (epoch seconds), in order."""
        if self.start is not None:
            starts = [self.start.timestamp()]
        else:
            assert self.at is not None
            first = datetime.fromtimestamp(t0 - self.duration, UTC).astimezone(self.tz).date() - timedelta(days=1)
            last = datetime.fromtimestamp(t1, UTC).astimezone(self.tz).date() + timedelta(days=1)
            starts = [
                datetime.combine(d, self.at, tzinfo=self.tz).timestamp()
                for d in _dates(first, last)
                if d.weekday() in self.days
            ]
        return [
            Window(self.patterns, s, s + self.duration, self.reason, "config", self.id)
            for s in starts
            if s < t1 and s + self.duration > t0
        ]

    def describe(self) -> str:
        """How an operator would say it: ``Sat 22:00 for 4h (Europe/Berlin)``."""
        if self.start is not None:
            end = self.start + timedelta(seconds=self.duration)
            return f"{self.start.isoformat()} to {end.isoformat()} ({self.tz.key})"
        assert self.at is not None
        names = ",".join(WEEKDAYS[d].title() for d in self.days)
        return f"{names} {self.at.strftime('%H:%M')} for {self.duration / 3600:g}h ({self.tz.key})"


def _dates(first: date, last: date) -> Iterable[date]:
    d = first
    while d <= last:
        yield d
        d += timedelta(days=1)


def overlapping(a: Schedule, b: Schedule, now: float) -> Window | None:
    """An occurrence of ``a`` that overlaps one of ``b`` (for assets both name), or None.

    Fixed windows are compared as they are; a weekly one over the fortnight around the other
    (or around ``now`` when both are weekly), which covers every way two weekly patterns meet.
    """
    if not patterns_overlap(a.patterns, b.patterns):
        return None
    fixed = next((s for s in (a, b) if s.start is not None), None)
    t0 = fixed.start.timestamp() - 8 * 86400 if fixed is not None and fixed.start is not None else now
    t1 = t0 + 16 * 86400 + (fixed.duration if fixed is not None else 0.0)
    wb = b.occurrences(t0, t1)
    for w in a.occurrences(t0, t1):
        if any(w.start < x.end and x.start < w.end for x in wb):
            return w
    return None
