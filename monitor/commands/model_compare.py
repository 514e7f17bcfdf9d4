"""``plantwatch models compare STORE``: champion and challenger over the same recent live rows.

The data is what the running monitor recorded while it scored the challenger
in shadow (``<state_dir>/shadow-<instance>.jsonl``, see
:mod:`monitor.daemon.shadow`): both models saw exactly the same rows, in the
same order, with their own rolling thresholds, so the comparison is of what
each would have done in production. (Replaying recorded CSV through both
models offline would compare them on another stream: no reorderings, no
gaps, no maintenance windows, and only where history was recorded.)

Reported per model: alarm episodes per day and alarm time on the real assets
(``*-drill`` copies left out: alarms there are expected), the rows each alone
flagged, and, given drill reports (``plantwatch drill --report``), the drill
injections in the window that each detected.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..detector import model_store
from ..errors import InputError
from ..maintenance import parse_duration

DRILL_SUFFIX = "-drill"
#: after an injection ends, how long an alarm that starts still counts as its detection
DRILL_GRACE_S = 60.0


@dataclass
class Side:
    """One model's figures over the window."""

    version: str
    episodes: int = 0
    episodes_per_day: float = 0.0
    alarm_seconds: float = 0.0
    alone_rows: int = 0
    drills_detected: int = 0


@dataclass
class Comparison:
    model: str
    start: float
    end: float
    rows: int
    assets: list[str]
    drills: int
    champion: Side
    challenger: Side
    files: list[str] = field(default_factory=list)

    @property
    def days(self) -> float:
        return max(self.end - self.start, 1.0) / 86400.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "days": self.days}


def read_records(state_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every shadow line of every monitor instance that wrote into ``state_dir``."""
    files = sorted(state_dir.glob("shadow-*.jsonl"))
    out = []
    for path in files:
        for line in path.read_text().splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash: the rest still counts
            if isinstance(doc, dict) and {"asset", "model", "champion", "challenger", "spans"} <= doc.keys():
                out.append(doc)
    return out, [str(p) for p in files]


def drill_injections(reports: list[str]) -> list[tuple[str, float, float]]:
    """(asset, start ts, end ts) of each injection in ``plantwatch drill`` reports (report.json or its folder)."""
    out = []
    for r in reports:
        path = Path(r) / "report.json" if Path(r).is_dir() else Path(r)
        try:
            doc = json.loads(path.read_text())
            for i in doc["injections"]:
                start = float(i["start_ts"])
                out.append((str(i["asset"]), start, start + float(i["end"]) - float(i["start"])))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"--drill-report {r}: not a drill report ({exc})") from None
    return out


def _merged(spans: list[list[float]]) -> list[tuple[float, float]]:
    """Spans cut at line boundaries joined again: one per alarm episode."""
    out: list[tuple[float, float]] = []
    for s, e in sorted((float(a), float(b)) for a, b in spans):
        if out and s <= out[-1][1] + 1e-6:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def compare(
    records: list[dict[str, Any]],
    model: str,
    since_s: float,
    challenger: str | None = None,
    injections: list[tuple[str, float, float]] | None = None,
) -> Comparison | None:
    """Both models over the last ``since_s`` seconds of shadow rows of ``model`` (None: nothing recorded).

    ``challenger``: the version to compare (default: the newest one recorded); only rows scored by the same
    champion/challenger pair as the newest line count.
    """
    mine = [r for r in records if r["model"] == model and (challenger is None or r["challenger"] == challenger)]
    if not mine:
        return None
    newest = max(mine, key=lambda r: float(r["to"]))
    pair = (newest["champion"], newest["challenger"])
    end = float(newest["to"])
    lines = [r for r in mine if (r["champion"], r["challenger"]) == pair and float(r["to"]) >= end - since_s]
    start = min(float(r["from"]) for r in lines)
    sides = [Side(pair[0]), Side(pair[1])]
    spans: dict[tuple[str, int], list[list[float]]] = {}
    for r in lines:
        for k, role in enumerate(("champion", "challenger")):
            spans.setdefault((r["asset"], k), []).extend(r["spans"].get(role, []))
            if not r["asset"].endswith(DRILL_SUFFIX):
                sides[k].alone_rows += int(r["alone"][k])
    for (asset, k), raw in spans.items():
        if asset.endswith(DRILL_SUFFIX):
            continue
        episodes = _merged(raw)
        sides[k].episodes += len(episodes)
        sides[k].alarm_seconds += sum(e - s for s, e in episodes)
    assets = sorted({r["asset"] for r in lines})
    drills = [i for i in injections or [] if i[0] in assets and start <= i[1] <= end]
    for asset, lo, hi in drills:
        for k in (0, 1):
            if any(s <= hi + DRILL_GRACE_S and e >= lo for s, e in _merged(spans.get((asset, k), []))):
                sides[k].drills_detected += 1
    rows = sum(int(r["rows"]) for r in lines)
    out = Comparison(model, start, end, rows, assets, len(drills), sides[0], sides[1])
    for s in sides:
        s.episodes_per_day = s.episodes / out.days
    return out


def describe(c: Comparison) -> list[str]:
    """The comparison as a small table."""
    ch, cc = c.champion, c.challenger
    real = [a for a in c.assets if not a.endswith(DRILL_SUFFIX)]
    lines = [
        f"{c.model}: champion {ch.version} vs challenger {cc.version} on the same {c.rows} rows of "
        f"{len(c.assets)} asset(s), {_hours(c.end - c.start)} of shadow",
        f"  {'':<34}{'champion':>12}{'challenger':>12}",
        f"  {'alarm episodes per day':<34}{ch.episodes_per_day:>12.2f}{cc.episodes_per_day:>12.2f}",
        f"  {'alarm episodes':<34}{ch.episodes:>12d}{cc.episodes:>12d}",
        f"  {'alarm time':<34}{_hours(ch.alarm_seconds):>12}{_hours(cc.alarm_seconds):>12}",
        f"  {'rows only this model flagged':<34}{ch.alone_rows:>12d}{cc.alone_rows:>12d}",
    ]
    if c.drills:
        lines.append(
            f"  {'drill injections detected':<34}{ch.drills_detected:>9d}/{c.drills:<2d}{cc.drills_detected:>9d}/{c.drills:<2d}"
        )
    else:
        lines.append("  no drill injections in the window (give --drill-report to count detections)")
    lines.append(f"  (episodes, alarm time and rows on {len(real)} real asset(s); *{DRILL_SUFFIX} copies left out)")
    return lines


def _hours(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def compare_command(args: argparse.Namespace) -> int:
    store = Path(args.store)
    name = store.resolve().name if model_store.is_store(store) else store.name
    state = Path(args.state_dir)
    if not state.is_dir():
        raise InputError(f"--state-dir {state}: no such folder (the monitor's state_dir)")
    try:
        since = parse_duration(args.since)
    except ValueError as exc:
        raise InputError(f"--since: {exc}") from None
    records, files = read_records(state)
    challenger = args.challenger or (
        model_store.pointer(store, model_store.CHALLENGER) if model_store.is_store(store) else None
    )
    c = compare(records, name, since, challenger, drill_injections(args.drill_report or []))
    if c is None:
        raise InputError(
            f"no shadow results of model {name!r}{' challenger ' + challenger if challenger else ''} in "
            f"{state}/shadow-*.jsonl: set a challenger ('plantwatch models shadow {store} VERSION') and let the "
            "monitor score it for a while (it writes a line per asset each minute)"
        )
    c.files = files
    if args.json:
        print(json.dumps(c.to_dict(), indent=1, sort_keys=True))
    else:
        print("\n".join(describe(c)))
    return 0
