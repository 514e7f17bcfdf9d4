"""The demo's live terminal table: one line per asset, the way an operator scans a plant."""

from __future__ import annotations

from monitor.daemon import Snapshot


def _bar(ratio: float, width: int = 20) -> str:
    filled = int(min(max(ratio, 0.0), 2.0) / 2.0 * width)
    return "#" * filled + "." * (width - filled)


def render(snap: Snapshot) -> str:
    """A plain-text table (no colours needed): score against threshold, alarm, top sensors."""
    lines = [
        f"plantwatch demo   broker {'connected' if snap.connected else 'DISCONNECTED'}   "
        f"ready {'yes' if snap.ready else 'no'}   queue {snap.queue_depth}   "
        f"rejected {sum(snap.rejected.values())}",
        "",
        f"{'asset':<10} {'msgs':>7} {'score':>7} {'thresh':>7}  {'score/threshold (1.0 = mid)':<22} {'alarm':<6} "
        f"{'alarms':>6}  top sensors",
    ]
    for a in snap.assets:
        ratio = a.score / a.threshold if a.threshold > 0 else 0.0
        top = ", ".join(f"{name} {c:.1f}" for name, c in a.top_sensors[:3])
        state = "ALARM" if a.alarm else ("warmup" if a.warming_up else "ok")
        lines.append(
            f"{a.asset:<10} {a.messages:>7} {a.score:>7.3f} {a.threshold:>7.3f}  [{_bar(ratio)}] "
            f"{state:<6} {a.alarms:>6}  {top}"
        )
    if not snap.assets:
        lines.append("(waiting for telemetry)")
    lines += ["", "Ctrl-C to stop. Prometheus metrics on /metrics; alarms on plant/<asset>/alarm."]
    return "\n".join(lines)
