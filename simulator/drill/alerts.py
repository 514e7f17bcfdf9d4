"""What Prometheus did with the drill's alarms: the alert rule as loaded, its firing spans, and which span
answers which injection.

The drill checks the chain operators are paged through, not only the monitor:
the monitor's alarm shows as ``plantwatch_alarm == 1`` on /metrics, Prometheus
scrapes it, the alert rule fires once the alarm has lasted its ``for:`` and
resolves ``keep_firing_for:`` after the alarm cleared. Prometheus keeps this in
its ``ALERTS`` series, which is read back here; nothing in this module judges
pass or fail (:mod:`.report` does).
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.parse
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from .observe import fetch

#: A firing span: (first, last) time a range query saw the alert firing; last is None while still firing.
Span = tuple[float, float | None]

#: Prometheus refuses range queries of more than 11,000 points per series; longer drills are asked in chunks.
MAX_POINTS = 10_000
#: Added to the rule's keep_firing_for when waiting for the alerts to resolve: the scrape that sees the alarm
#: cleared (the scrape interval is not in the rules API) and the evaluations after it.
SCRAPE_SLACK_S = 30.0


@dataclass(frozen=True)
class AlertRule:
    """The alerting rule as Prometheus has it loaded (``/api/v1/rules``), in seconds."""

    name: str
    for_s: float
    keep_firing_for_s: float
    interval_s: float  # evaluation interval of its group

    @property
    def resolve_wait_s(self) -> float:
        """Longest a firing alert may take to resolve once its alarm has cleared."""
        return self.keep_firing_for_s + 3 * self.interval_s + SCRAPE_SLACK_S

    @property
    def fire_slack_s(self) -> float:
        """Longest after an alarm was raised that its alert can start firing (for:, scrape, evaluation)."""
        return self.for_s + 3 * self.interval_s + SCRAPE_SLACK_S


@dataclass(frozen=True)
class AlertOutcome:
    """The alert's answer to one injection; times are seconds since its first faulty sample."""

    fired: bool
    latency_s: float | None = None  # first firing evaluation seen
    resolved_s: float | None = None  # last firing evaluation seen; None if never fired or still firing
    note: str | None = None


def api(prometheus_url: str, path: str, params: dict[str, str]) -> dict:
    """GET ``/api/v1/<path>``; the ``data`` of a success, ValueError with Prometheus' error otherwise."""
    url = f"{prometheus_url.rstrip('/')}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    doc = json.loads(fetch(url))
    if doc.get("status") != "success":
        raise ValueError(f"Prometheus answered {doc.get('status')}: {doc.get('error', '')}")
    return doc["data"]


def alert_rule(prometheus_url: str, alert: str) -> AlertRule:
    """The loaded rule named ``alert``; ValueError when Prometheus has no such alerting rule (so a drill
    fails at its start instead of reporting, after minutes, that an alert it cannot have never fired)."""
    for group in api(prometheus_url, "rules", {"type": "alert"})["groups"]:
        for r in group["rules"]:
            if r.get("type") == "alerting" and r.get("name") == alert:
                return AlertRule(
                    alert,
                    float(r.get("duration", 0.0)),
                    float(r.get("keepFiringFor", 0.0)),
                    float(group.get("interval", 60.0)),
                )
    raise ValueError(f"no alerting rule {alert!r} is loaded (see the rule_files of its config)")


def _selector(alert: str) -> str:
    # Assets are filtered here, not with asset=~"...": asset names may hold regex characters.
    return f'ALERTS{{alertname={json.dumps(alert)},alertstate="firing"}}'


def firing_now(prometheus_url: str, alert: str, assets: Sequence[str]) -> set[str]:
    """The assets whose alert is firing at this moment."""
    result = api(prometheus_url, "query", {"query": _selector(alert)})["result"]
    return {str(r["metric"].get("asset")) for r in result} & set(assets)


def wait_resolved(prometheus_url: str, rule: AlertRule, assets: Sequence[str], stop: threading.Event) -> set[str]:
    """Wait, at most ``rule.resolve_wait_s``, until the alert fires for none of ``assets``; the assets
    still firing then (empty when all resolved)."""
    deadline = time.monotonic() + rule.resolve_wait_s
    while True:
        firing = firing_now(prometheus_url, rule.name, assets)
        if not firing or time.monotonic() >= deadline or stop.wait(max(1.0, rule.interval_s)):
            return firing


def firing_spans(
    prometheus_url: str,
    alert: str,
    assets: Sequence[str],
    start: float,
    end: float,
    still_firing: Collection[str] = (),
    step: float = 1.0,
) -> dict[str, list[Span]]:
    """Firing spans of ``alert`` per asset between start and end, from ``ALERTS`` (range queries of at most
    :data:`MAX_POINTS` steps). The last span of an asset in ``still_firing`` (firing when last asked, see
    :func:`wait_resolved`) that reaches the last step is open (end None); the others had resolved before
    ``end``: a range query cannot tell, as its last step sees the last firing sample until the evaluation
    that resolves the alert."""
    seen: dict[str, set[float]] = {a: set() for a in assets}
    last_step = start + math.floor((end - start) / step) * step
    lo = start
    while lo <= end:
        hi = min(end, lo + (MAX_POINTS - 1) * step)
        result = api(
            prometheus_url,
            "query_range",
            {"query": _selector(alert), "start": f"{lo:.3f}", "end": f"{hi:.3f}", "step": f"{step:g}"},
        )["result"]
        for series in result:
            asset = series["metric"].get("asset")
            if asset in seen:
                seen[asset].update(float(t) for t, _ in series["values"])
        lo = hi + step
    return {a: _spans(sorted(times), step, last_step if a in still_firing else math.inf) for a, times in seen.items()}


def _spans(times: list[float], step: float, last_step: float) -> list[Span]:
    """Runs of consecutive steps; the last one is open if it reaches ``last_step``."""
    spans: list[Span] = []
    if not times:
        return spans
    first = prev = times[0]
    for t in times[1:]:
        if t - prev > 1.5 * step:
            spans.append((first, prev))
            first = t
        prev = t
    spans.append((first, None if prev >= last_step - step / 2 else prev))
    return spans


def outcome(spans: Sequence[Span], start: float, until: float) -> AlertOutcome:
    """The alert's answer to an injection whose first faulty sample is at ``start``: the first span that
    began in [start, until). Without one, a span already firing at ``start`` (an earlier alarm of the
    asset, held by keep_firing_for) counts as fired, without a latency."""
    began = next(((a, b) for a, b in spans if start <= a < until), None)
    if began is not None:
        a, b = began
        return AlertOutcome(True, round(a - start, 3), None if b is None else round(b - start, 3))
    held = next(((a, b) for a, b in spans if a < start and (b is None or b >= start)), None)
    if held is not None:
        b = held[1]
        return AlertOutcome(
            True,
            None,
            None if b is None else round(b - start, 3),
            note="already firing when the injection started (an earlier alarm, kept by keep_firing_for)",
        )
    return AlertOutcome(False)
