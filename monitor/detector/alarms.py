"""Alarm hysteresis: turn a score and a threshold into alarm episodes.

The terms are the ones plant alarm engineers use (ISA-18.2): an on-delay
(the score must stay above the threshold for N samples before the alarm is
raised), an off-delay (it must stay below the clear level for N samples
before it clears) and a deadband (the clear level is a fraction of the
threshold), so a score hovering at the threshold does not chatter.

>>> a = AlarmLogic(on_delay=2, off_delay=1, deadband=0.9)
>>> [a.step(i, s, 1.0, None) is not None for i, s in enumerate([2, 2, 0.5])]
[False, True, True]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class AlarmSettings:
    on_delay: int = 5
    off_delay: int = 3
    deadband: float = 0.95

    def __post_init__(self) -> None:
        if self.on_delay < 1 or self.off_delay < 1:
            raise ValueError(f"on_delay and off_delay must be >= 1 sample, got {self.on_delay}, {self.off_delay}")
        if not 0 < self.deadband <= 1:
            raise ValueError(f"deadband must be in (0, 1], got {self.deadband}")


@dataclass
class Episode:
    """One alarm from raise to clear; ``start`` is the first sample of the run that raised it."""

    start: float
    raised: float
    peak: float
    threshold: float
    top_sensors: tuple[str, ...] = ()
    end: float | None = None


@dataclass
class Transition:
    kind: str  # "raised" or "cleared"
    episode: Episode


@dataclass
class AlarmLogic:
    on_delay: int = 5
    off_delay: int = 3
    deadband: float = 0.95
    active: bool = False
    above: int = 0
    below: int = 0
    run_start: float = 0.0
    run_peak: float = 0.0
    episode: Episode | None = field(default=None)

    @classmethod
    def from_settings(cls, s: AlarmSettings) -> AlarmLogic:
        return cls(on_delay=s.on_delay, off_delay=s.off_delay, deadband=s.deadband)

    def to_state(self) -> dict[str, Any]:
        """Where the hysteresis stands, with the open episode; the delays and deadband come from the config.

        >>> a = AlarmLogic(on_delay=1)
        >>> _ = a.step(5.0, 2.0, 1.0, ("T1",))
        >>> b = AlarmLogic(on_delay=1)
        >>> b.load_state(a.to_state())
        >>> b.active, b.episode.top_sensors
        (True, ('T1',))
        """
        ep = self.episode
        return {
            "active": self.active,
            "above": self.above,
            "below": self.below,
            "run_start": self.run_start,
            "run_peak": self.run_peak,
            "episode": None if ep is None else {**asdict(ep), "top_sensors": list(ep.top_sensors)},
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`to_state`; ValueError names the field that does not fit."""
        active, ep = state.get("active"), state.get("episode")
        if not isinstance(active, bool):
            raise ValueError(f"alarm state 'active' must be true or false, got {active!r}")
        if active != (ep is not None):
            raise ValueError("alarm state: an active alarm needs its episode and only an active one has one")
        above, below = _count(state, "above"), _count(state, "below")
        run_start, run_peak = _real(state, "run_start"), _real(state, "run_peak")
        episode = None
        if ep is not None:
            if not isinstance(ep, Mapping) or not isinstance(ep.get("top_sensors"), list):
                raise ValueError("alarm state 'episode' must be a table with a list of top_sensors")
            episode = Episode(
                _real(ep, "start"),
                _real(ep, "raised"),
                _real(ep, "peak"),
                _real(ep, "threshold"),
                tuple(str(s) for s in ep["top_sensors"]),
            )
        self.active, self.above, self.below, self.episode = active, above, below, episode
        self.run_start, self.run_peak = run_start, run_peak

    def clear(self, ts: float) -> Transition | None:
        """End a running alarm now (an operator accepted the state it alarms on); counts start afresh."""
        ep, self.episode = self.episode, None
        self.active, self.above, self.below = False, 0, 0
        if ep is None:
            return None
        ep.end = ts
        return Transition("cleared", ep)

    def step(self, ts: float, score: float, threshold: float, top: tuple[str, ...] | None) -> Transition | None:
        """Advance one sample; returns the raise/clear transition it caused, if any."""
        if not self.active:
            if score > threshold:
                if self.above == 0:
                    self.run_start, self.run_peak = ts, score
                self.above += 1
                self.run_peak = max(self.run_peak, score)
                if self.above >= self.on_delay:
                    self.active, self.below = True, 0
                    self.episode = Episode(self.run_start, ts, self.run_peak, threshold, top or ())
                    return Transition("raised", self.episode)
            else:
                self.above = 0
            return None
        ep = self.episode
        assert ep is not None, "active alarm without an episode"
        if score > ep.peak:
            ep.peak = score
            if top:
                ep.top_sensors = top
        if score < threshold * self.deadband:
            self.below += 1
            if self.below >= self.off_delay:
                self.active, self.above, self.below = False, 0, 0
                ep.end = ts
                self.episode = None
                return Transition("cleared", ep)
        else:
            self.below = 0
        return None


def _count(state: Mapping[str, Any], key: str) -> int:
    v = state.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ValueError(f"alarm state {key!r} must be a count >= 0, got {v!r}")
    return v


def _real(state: Mapping[str, Any], key: str) -> float:
    v = state.get(key)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise ValueError(f"alarm state {key!r} must be a finite number, got {v!r}")
    return float(v)
