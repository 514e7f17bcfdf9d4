"""Alarm transitions as the wire's retained alarm events, and as log lines.

An episode's raise and clear go to ``<prefix>/<asset>/alarm`` (retained, so a
client that connects later sees the current state) and to the journal. So do
a Sparkplug asset's death ("offline", with why) and its next birth ("online").
"""

from __future__ import annotations

import math
import time

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
        episode=ev.episode,
    )
    return ev


def reset_event(asset: str, ep: Episode, ts: float, score: float, threshold: float, reason: str) -> wire.AlarmEvent:
    """A clear for an alarm whose stream state is being thrown away; else it would stay raised, retained."""
    log.info("alarm_cleared", asset=asset, reason=reason, episode=wire.episode_id(asset, ep.start))
    return _event(asset, "cleared", ep, ts, score, threshold, ts, reason)


def lifecycle_event(
    asset: str, online: bool, reason: str, ts: float, score: float, threshold: float
) -> wire.AlarmEvent:
    """The retained state of a Sparkplug asset that died ("offline": not watched) or was born again ("online")."""
    (log.info if online else log.warning)("asset_" + ("online" if online else "offline"), asset=asset, reason=reason)
    return status_event(asset, "online" if online else "offline", ts, score, threshold, reason)


def status_event(
    asset: str, state: str, ts: float, score: float, threshold: float, reason: str, until: float | None = None
) -> wire.AlarmEvent:
    """A retained state that is no episode's raise or clear (offline, online, suppressed, rearming ...).

    A score or threshold that is not finite yet (no row scored) is sent as 0: JSON has no NaN."""
    ts = ts if math.isfinite(ts) else time.time()
    score, threshold = (v if math.isfinite(v) else 0.0 for v in (score, threshold))
    return wire.AlarmEvent(
        asset=asset,
        state=state,
        ts=ts,
        started=ts,
        score=score,
        threshold=threshold,
        peak=score,
        reason=reason,
        until=until,
    )


def _event(
    asset: str,
    state: str,
    ep: Episode,
    ts: float,
    score: float,
    threshold: float,
    ended: float | None,
    reason: str = "",
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
        reason=reason,
        episode=wire.episode_id(asset, ep.start),
    )
