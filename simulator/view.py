"""The demo's live terminal table: one line per asset, the way an operator scans a plant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from monitor.daemon import AssetSnapshot, Snapshot

OFF_DELAY = "ALARM (off-delay)"


def _bar(ratio: float, width: int = 20) -> str:
    filled = int(min(max(ratio, 0.0), 2.0) / 2.0 * width)
    return "#" * filled + "." * (width - filled)


@dataclass(frozen=True)
class FooterInfo:
    """What the view shows under the table: where things are, and what the simulator is doing now."""

    broker: str
    metrics: str
    injecting: tuple[str, ...] = ()  # "bias on asset02 (FI103)": the faults being injected at this moment


class Footer:
    """Where the demo's broker and metrics are, and a way to ask the simulator what it injects now."""

    def __init__(self, broker: str, metrics: str, injecting: Callable[[], list[str]]) -> None:
        self.broker, self.metrics, self._injecting = broker, metrics, injecting

    def now(self) -> FooterInfo:
        return FooterInfo(self.broker, self.metrics, tuple(self._injecting()))


def state(a: AssetSnapshot) -> str:
    """ok, warmup, ALARM, ALARM (off-delay): raised, the score back under the threshold, not yet cleared; OFFLINE.

    >>> from monitor.daemon import AssetSnapshot
    >>> state(AssetSnapshot("a", "m", "v", 9, 0.5, 1.0, True, 1, False, 0, 0.0, ()))
    'ALARM (off-delay)'
    """
    if not a.online:
        return "OFFLINE"  # a Sparkplug asset whose edge node or device died
    if a.alarm:
        return OFF_DELAY if a.score <= a.threshold else "ALARM"
    return "warmup" if a.warming_up else "ok"


def render(snap: Snapshot, footer: FooterInfo | None = None) -> str:
    """A plain-text table (no colours needed): score against threshold, alarm, top sensors."""
    lines = [
        f"plantwatch demo   broker {'connected' if snap.connected else 'DISCONNECTED'}   "
        f"ready {'yes' if snap.ready else 'no'}   queue {snap.queue_depth}   "
        f"rejected {sum(snap.rejected.values())}",
        "",
        f"{'asset':<14} {'msgs':>7} {'score':>7} {'thresh':>7}  {'score/threshold (1.0 = mid)':<22} "
        f"{'alarm':<17} {'alarms':>6}  top sensors",
    ]
    for a in snap.assets:
        ratio = a.score / a.threshold if a.threshold > 0 else 0.0
        top = ", ".join(f"{name} {c:.1f}" for name, c in a.top_sensors[:3])
        lines.append(
            f"{a.asset:<14} {a.messages:>7} {a.score:>7.3f} {a.threshold:>7.3f}  [{_bar(ratio)}] "
            f"{state(a):<17} {a.alarms:>6}  {top}"
        )
    if not snap.assets:
        lines.append("(waiting for telemetry)")
    lines.append("")
    if footer is not None:
        lines.append("injecting now: " + ("; ".join(footer.injecting) if footer.injecting else "nothing"))
    if any(a.alarm and a.score <= a.threshold for a in snap.assets):
        lines.append(
            f"{OFF_DELAY}: the score is back under the threshold; the alarm clears once it stays under the "
            "clear level for the off-delay"
        )
    if footer is not None:
        lines.append(f"broker {footer.broker}   metrics {footer.metrics}   alarms on plant/<asset>/alarm")
    lines.append("Ctrl-C to stop.")
    return "\n".join(lines)
