"""Judging a drill from its records, and writing report.json, report.md and a timeline per asset.

All times are payload timestamps (the wall clock at which each sample was
due), the clock of both the ground truth and the monitor's alarm events.

- An injection is **detected** when the monitor raises an alarm on its
  asset between its first sample and ``grace`` seconds after its last one;
  ``time_to_detect_s`` runs from the first faulty sample to the raise.
- A **false alarm** is an alarm raised on a drill asset outside every such
  window. ``false_alarms`` of an injection counts those raised on its asset
  in the clean stretch before it (since the previous window closed);
  ``false_alarms_per_hour`` divides all of them by the clean time.
- With Prometheus, an injection's **alert** is the first firing span of the
  alert rule on its asset that began after its first faulty sample, before
  the next injection on that asset and before the end of its detection
  window plus the longest the rule takes to fire; ``alert_latency_s`` (when
  it began firing) and ``alert_resolved_s`` (when it last fired) are counted,
  like ``time_to_detect_s``, from the first faulty sample, to Prometheus'
  query step (1 s).
- The drill **passes** when the detection rate, the slowest detection and
  the false-alarm rate meet the criteria, the monitor scored every drill
  asset and (with Prometheus) the alert fired for every detected injection
  and resolved before the drill ended.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monitor import logs, wire

from .alerts import AlertOutcome, outcome
from .run import DrillRecord

log = logs.get("drill")


@dataclass
class Episode:
    """One alarm of the monitor on one asset, assembled from its raise and clear events."""

    asset: str
    started: float
    raised: float
    ended: float | None = None
    peak: float = math.nan
    top_sensors: tuple[str, ...] = ()
    claimed: bool = field(default=False, compare=False)


def episodes(record: DrillRecord) -> list[Episode]:
    out: dict[tuple[str, float], Episode] = {}
    for r in sorted(record.alarms, key=lambda r: r.event.ts):
        e = r.event
        ep = out.setdefault((e.asset, e.started), Episode(e.asset, e.started, e.ts))
        if e.state == "raised":
            ep.raised = min(ep.raised, e.ts)
        else:
            ep.ended = e.ended if e.ended is not None else e.ts
        ep.peak = e.peak if math.isnan(ep.peak) else max(ep.peak, e.peak)
        ep.top_sensors = e.top_sensors or ep.top_sensors
    return sorted(out.values(), key=lambda ep: ep.raised)


def _truths(record: DrillRecord) -> list[wire.DrillTruth]:
    """One truth per injection that started: its final ("end") version when there is one."""
    best: dict[str, wire.DrillTruth] = {}
    for t in record.truths:
        if t.phase == "end" or t.injection_id not in best:
            best[t.injection_id] = t
    return sorted(best.values(), key=lambda t: t.start)


def evaluate(record: DrillRecord) -> dict[str, Any]:
    s = record.scenario
    grace = s.grace
    eps = episodes(record)
    truths = _truths(record)
    t0 = record.started
    rows = []
    window_of: dict[str, list[tuple[float, float]]] = {}
    for t in truths:
        window_of.setdefault(t.asset, []).append((t.start, t.end + grace))
    previous_close: dict[str, float] = {}
    for t in truths:
        lo, hi = t.start, t.end + grace
        mine = [e for e in eps if e.asset == t.asset]
        hit = next((e for e in mine if lo <= e.raised <= hi and not e.claimed), None)
        if hit is not None:
            hit.claimed = True
        before = previous_close.get(t.asset, -math.inf)
        false_before = [e for e in mine if before < e.raised < lo and not _inside(e.raised, window_of[t.asset])]
        previous_close[t.asset] = hi
        scores = [x.score for x in record.scrapes if x.asset == t.asset and lo <= x.t <= hi and math.isfinite(x.score)]
        peak = max([*scores, *([hit.peak] if hit is not None and math.isfinite(hit.peak) else [])], default=None)
        injected = list(t.params.get("top_sensors", t.sensors))[:5]
        ttd = None if hit is None else round(hit.raised - t.start, 3)
        row: dict[str, Any] = {
            "injection_id": t.injection_id,
            "asset": t.asset,
            "kind": t.kind,
            "start": round(t.start - t0, 3),
            "end": round(t.end - t0, 3),
            "start_ts": t.start,
            "magnitude": t.magnitude,
            "detected": hit is not None,
            "time_to_detect_s": ttd,
            **_alert_fields(record, t, hi, truths),
            "false_alarms": len(false_before),
            "peak_score": peak,
            "monitor_top_sensors": list(hit.top_sensors) if hit is not None else [],
            "injected_sensors": injected,
            "sensor_match": hit is not None and bool(set(hit.top_sensors) & set(injected)),
            "truncated": bool(t.params.get("truncated", False)),
        }
        row["pass"] = bool(row["detected"] and ttd is not None and ttd <= s.criteria.max_time_to_detect_s)
        rows.append(row)
    false_all = [e for e in eps if not _inside(e.raised, window_of.get(e.asset, []))]
    clean_s = _clean_seconds(record, window_of)
    fa_per_hour = len(false_all) / (clean_s / 3600.0) if clean_s > 0 else 0.0
    detected = [r for r in rows if r["detected"]]
    rate = len(detected) / len(rows) if rows else 0.0
    slowest = max((r["time_to_detect_s"] for r in detected), default=None)
    c = s.criteria
    scored = _scored(record)
    verdicts: dict[str, dict[str, Any]] = {
        "min_detection_rate": {
            "limit": c.min_detection_rate,
            "value": rate,
            "pass": bool(rows) and rate >= c.min_detection_rate,
        },
        "max_time_to_detect_s": {
            "limit": c.max_time_to_detect_s,
            "value": slowest,
            "pass": slowest is None or slowest <= c.max_time_to_detect_s,
        },
        "max_false_alarms_per_hour": {
            "limit": c.max_false_alarms_per_hour,
            "value": round(fa_per_hour, 3),
            "pass": fa_per_hour <= c.max_false_alarms_per_hour,
        },
        "monitor_scored_every_asset": {"value": scored, "pass": all(scored.values())},
    }
    if s.prometheus_url is not None:
        # Without an answer from Prometheus the check failed: a drill asked to check the alert never
        # passes without having checked it.
        answered = record.alerts is not None
        fired = [r for r in detected if r.get("alert_fired")]
        resolved = [r for r in fired if r.get("alert_resolved_s") is not None]
        verdicts["alert_fired"] = {
            "alert": s.alert,
            "value": f"{len(fired)}/{len(detected)}" if answered else None,
            "pass": answered and len(fired) == len(detected),
        }
        verdicts["alert_resolved"] = {
            "alert": s.alert,
            "value": f"{len(resolved)}/{len(fired)}" if answered else None,
            "pass": answered and len(resolved) == len(fired),
        }
    problems = list(record.problems)
    for asset, ok in scored.items():
        if not ok:
            problems.append(
                f"the monitor never scored {asset}: map it to the model of the asset it copies in the "
                f'monitor\'s [models.assets] (e.g. "{asset.removesuffix("-drill")}*" = MODEL)'
            )
    unheard = _alarms_unheard(record)
    if unheard:
        # mosquitto grants a subscription its ACL will never deliver to: say so instead of a bare miss.
        problems.append(
            f"the monitor's /metrics showed alarms on {', '.join(unheard)} but no alarm event reached "
            f"the drill: may its broker login read {s.prefix}/+/alarm (the broker's ACL)?"
        )
    if record.interrupted:
        problems.append("the drill was interrupted before its end")
    if len(truths) < len(record.injections):
        problems.append(f"{len(record.injections) - len(truths)} injection(s) never started")
    passed = (
        all(v["pass"] for v in verdicts.values()) and not record.interrupted and len(truths) == len(record.injections)
    )
    return {
        "scenario": s.name,
        "pass": passed,
        "detection_rate": rate,
        "false_alarms_per_hour": round(fa_per_hour, 3),
        "false_alarms": len(false_all),
        "clean_hours": round(clean_s / 3600.0, 4),
        "criteria": verdicts,
        "injections": rows,
        "alarms": [
            {
                "asset": e.asset,
                "raised": round(e.raised - t0, 3),
                "ended": None if e.ended is None else round(e.ended - t0, 3),
                "peak": e.peak,
                "top_sensors": list(e.top_sensors),
                "false": not _inside(e.raised, window_of.get(e.asset, [])),
            }
            for e in eps
        ],
        "started": t0,
        "duration_s": round(record.ended - t0, 3),
        "rate": s.rate,
        "assets": {a: {"sensors": len(sens)} for a, sens in record.sensors.items()},
        "messages": dict(record.summary.messages),
        "scrapes": len(record.scrapes),
        "scrape_failures": record.scrape_failures,
        "problems": problems,
        "prometheus": None
        if s.prometheus_url is None
        else {
            "url": s.prometheus_url,
            "alert": s.alert,
            "answered": record.alerts is not None,
            **(
                {}
                if (rule := record.alert_rule) is None
                else {"for_s": rule.for_s, "keep_firing_for_s": rule.keep_firing_for_s, "interval_s": rule.interval_s}
            ),
        },
    }


def _alert_fields(record: DrillRecord, t: wire.DrillTruth, hi: float, truths: list[wire.DrillTruth]) -> dict[str, Any]:
    """The alert's answer to injection ``t`` (empty without Prometheus): spans that began from its first
    faulty sample until the next injection on the asset starts or, if sooner, until its detection window
    ``hi`` plus the longest the rule can take to fire."""
    if record.scenario.prometheus_url is None:
        return {}
    if record.alerts is None or record.alert_rule is None:
        o = AlertOutcome(False, note="Prometheus did not answer")
    else:
        following = [u.start for u in truths if u.asset == t.asset and u.start > t.start]
        until = min([hi + record.alert_rule.fire_slack_s, *following])
        o = outcome(record.alerts.get(t.asset, []), t.start, until)
    return {
        "alert_latency_s": o.latency_s,
        "alert_resolved_s": o.resolved_s,
        "alert_fired": o.fired,
        **({"alert_note": o.note} if o.note else {}),
    }


def _inside(t: float, windows: list[tuple[float, float]]) -> bool:
    return any(lo <= t <= hi for lo, hi in windows)


def _clean_seconds(record: DrillRecord, windows: dict[str, list[tuple[float, float]]]) -> float:
    total = 0.0
    for asset, n in record.summary.messages.items():
        span = n / record.scenario.rate
        busy = sum(
            min(hi, record.started + span) - max(lo, record.started)
            for lo, hi in windows.get(asset, [])
            if hi > record.started and lo < record.started + span
        )
        total += max(0.0, span - busy)
    return total


def _alarms_unheard(record: DrillRecord) -> list[str]:
    """Drill assets in alarm on /metrics of which not one alarm event arrived on MQTT."""
    heard = {r.event.asset for r in record.alarms}
    return sorted({x.asset for x in record.scrapes if x.alarm == 1} - heard)


def _scored(record: DrillRecord) -> dict[str, bool]:
    seen = {x.asset for x in record.scrapes if math.isfinite(x.messages) and x.messages > 0}
    seen |= {r.event.asset for r in record.alarms}
    return {a: a in seen for a in record.sensors}


# ---------------------------------------------------------------- writing


def can_draw() -> bool:
    """Timelines need matplotlib, an optional extra (``pip install 'plantwatch[plots]'``)."""
    return importlib.util.find_spec("matplotlib") is not None


def write(report: dict[str, Any], record: DrillRecord, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    figures = []
    if can_draw():
        figures = [
            timeline(record, report, asset, folder / f"timeline-{asset.replace('/', '_')}.png")
            for asset in record.sensors
        ]
    else:
        log.warning("timelines_not_drawn", reason="matplotlib is not installed: pip install 'plantwatch[plots]'")
    report["figures"] = [p.name for p in figures]
    _atomic(folder / "report.json", json.dumps(report, indent=1, default=_plain) + "\n")
    _atomic(folder / "report.md", markdown(report))
    return [folder / "report.json", folder / "report.md", *figures]


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    raise TypeError(f"not JSON: {type(v).__name__}")


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _v(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.3g}"
    return str(x)


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# Drill report: {r['scenario']}",
        "",
        f"**{'PASS' if r['pass'] else 'FAIL'}**: detection rate {r['detection_rate']:.0%}, "
        f"{r['false_alarms']} false alarm(s) in {r['clean_hours'] * 60:.1f} clean minutes "
        f"({r['false_alarms_per_hour']:.3g}/h), {r['duration_s']:.0f}s at {r['rate']:g} samples/s.",
        "",
        "| criterion | limit | value | pass |",
        "|---|---|---|---|",
    ]
    for name, v in r["criteria"].items():
        lines.append(f"| {name} | {_v(v.get('limit', v.get('alert')))} | {_v(v['value'])} | {_v(v['pass'])} |")
    prom = r["prometheus"]
    if prom is not None:
        rule = (
            f" (for {prom['for_s']:g}s, keep_firing_for {prom['keep_firing_for_s']:g}s, evaluated every "
            f"{prom['interval_s']:g}s)"
            if "for_s" in prom
            else ""
        )
        lines += [
            "",
            f"Alert `{prom['alert']}`{rule} from Prometheus at {prom['url']}: its latency and resolution "
            "are from the injection's first faulty sample, like the monitor's time to detect.",
        ]
    alerts = prom is not None
    lines += [
        "",
        "| injection | asset | kind | start (s) | detected | time to detect (s) | "
        + ("alert latency (s) | alert resolved (s) | " if alerts else "")
        + "false alarms before | peak score | monitor's top sensors | injected sensors |",
        "|---" * (10 + 2 * alerts) + "|",
    ]
    for i in r["injections"]:
        alert = _alert_cells(i) if alerts else ""
        lines.append(
            f"| {i['injection_id']} | {i['asset']} | {i['kind']} | {i['start']:.1f} | {_v(i['detected'])} | "
            f"{_v(i['time_to_detect_s'])} | {alert}{i['false_alarms']} | {_v(i['peak_score'])} | "
            f"{', '.join(i['monitor_top_sensors']) or '-'} | {', '.join(i['injected_sensors'])} |"
        )
    if r["problems"]:
        lines += ["", "Problems:", *[f"- {p}" for p in r["problems"]]]
    lines += ["", *[f"![{f}]({f})" for f in r.get("figures", [])]]
    return "\n".join(lines) + "\n"


def _alert_cells(row: dict[str, Any]) -> str:
    """The alert latency and resolution cells of an injection's row."""
    held = row["alert_fired"] and row["alert_latency_s"] is None
    return f"{'already firing' if held else _v(row['alert_latency_s'])} | {_v(row['alert_resolved_s'])} | "


def timeline(record: DrillRecord, report: dict[str, Any], asset: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig = figure(record, report, asset)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def figure(record: DrillRecord, report: dict[str, Any], asset: str) -> Any:
    """One drill copy's timeline: scraped score and threshold, injections, alarms, alert spans."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = record.started
    xs = [x for x in record.scrapes if x.asset == asset]
    fig, ax = plt.subplots(figsize=(10, 3.2))
    for i in (i for i in report["injections"] if i["asset"] == asset):
        ax.axvspan(i["start"], i["end"], color="tab:blue", alpha=0.15)
        ax.text(i["start"], 1.0, i["kind"], transform=ax.get_xaxis_transform(), fontsize=7, va="top")
    for a in (a for a in report["alarms"] if a["asset"] == asset):
        end = a["ended"] if a["ended"] is not None else report["duration_s"]
        ax.axvspan(a["raised"], end, ymin=0, ymax=0.06, color="tab:red" if a["false"] else "tab:green")
    if record.alerts:
        for lo, hi in record.alerts.get(asset, []):
            end = report["duration_s"] if hi is None else hi - t0
            ax.axvspan(lo - t0, end, ymin=0.07, ymax=0.12, color="tab:orange")
    if xs:
        ax.plot([x.t - t0 for x in xs], [x.score for x in xs], lw=1, color="k", label="score (/metrics)")
        ax.plot([x.t - t0 for x in xs], [x.threshold for x in xs], lw=1, ls="--", color="tab:red", label="threshold")
        ax.set_yscale("log")
        ax.legend(fontsize=7, loc="upper right")
    else:
        ax.text(
            0.5,
            0.5,
            f"no data: /metrics never showed a score for {asset}\n(did the monitor score it? see report.md)",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=9,
            color="tab:red",
        )
    alert_ends = [hi - t0 for lo, hi in (record.alerts or {}).get(asset, []) if hi is not None]
    ax.set_xlim(0, max(report["duration_s"], *alert_ends, 1))
    ax.set_xlabel(
        "seconds since the drill started (blue: injections; bottom bars: alarms, green = detection, "
        "red = false; orange: alert firing)",
        fontsize=7,
    )
    ax.set_title(f"{asset}", fontsize=9)
    fig.tight_layout()
    return fig
