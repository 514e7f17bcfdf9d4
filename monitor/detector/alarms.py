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

from dataclasses import dataclass, field


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
