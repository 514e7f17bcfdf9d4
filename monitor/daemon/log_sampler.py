"""Rate-limited log lines for events that can arrive thousands of times a second (rejections, callback errors)."""

from __future__ import annotations

import time


class LogSampler:
    """At most one log line per key per ``period`` seconds, carrying how many were suppressed.

    >>> s = LogSampler(10.0)
    >>> s.take("not_json", now=0.0), s.take("not_json", now=1.0), s.take("not_json", now=11.0)
    (0, None, 1)
    """

    def __init__(self, period: float = 10.0) -> None:
        self.period = period
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def take(self, key: str, now: float | None = None) -> int | None:
        """None: stay quiet; else log now, with this many suppressed since the last line."""
        now = time.monotonic() if now is None else now
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)
