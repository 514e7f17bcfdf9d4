"""Alarm transitions as the wire's retained alarm events, and as log lines.

An episode's raise and clear go to ``<prefix>/<asset>/alarm`` (retained, so a
client that connects later sees the current state) and to the journal.
"""

from __future__ import annotations

from .. import logs, wire
from ..detector import Episode, Transition

log = logs.get("alarms")


def transition_event(asset: str, tr: Transition, ts: float, score: float, threshold: float) -> wire.AlarmEvent:
    """The event for a raise or clear, logged at warning (raised) or info (cleared)."""
    ep = tr.episode
    ev = _event(asset, tr.kind, ep, ts, score, threshold, ep.end)
    (log.warning if tr.kind == "raised" else log.info)(
        "alarm_" + tr.kind,
        asset=asset,
        score=round(score, 4),
        threshold=round(threshold, 4),
        peak=round(ep.peak, 4),
        top_sensors=list(ev.top_sensors),
        started=ep.start,
    )
    return ev


def reset_event(asset: str, ep: Episode, ts: float, score: float, threshold: float, reason: str) -> wire.AlarmEvent:
    """A clear for an alarm whose stream state is being thrown away; else it would stay raised, retained."""
    log.info("alarm_cleared", asset=asset, reason=reason)
    return _event(asset, "cleared", ep, ts, score, threshold, ts)


def _event(
    asset: str, state: str, ep: Episode, ts: float, score: float, threshold: float, ended: float | None
) -> wire.AlarmEvent:
    return wire.AlarmEvent(
        asset=asset,
        state=state,
        ts=ts,
        started=ep.start,
        score=score,
        threshold=threshold,
        peak=ep.peak,
        top_sensors=tuple(ep.top_sensors),
        ended=ended,
    )
