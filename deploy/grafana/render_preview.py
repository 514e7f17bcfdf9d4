"""Render the main Grafana panels from live Prometheus data into a PNG (the README's preview).

The panels and their queries are read from the dashboards in ./dashboards, so the picture shows what
Grafana would: the fleet's score/threshold, message, rejection and lag panels and one asset's score
against its threshold with its alarm spans and the sensors behind them.

    plantwatch demo --metrics-port 9108 &                  # or your real monitors
    prometheus --config.file=deploy/prometheus/prometheus.yml ...   # scraping it (targets/plantwatch.yml)
    python deploy/grafana/render_preview.py --prometheus http://127.0.0.1:9090 --minutes 5

Needs matplotlib (pip install 'plantwatch[plots]').
"""

from __future__ import annotations

import argparse
import json
import re
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FLEET_PANELS = (
    "Score / threshold per asset",
    "Messages scored per second by asset",
    "Rejected messages by reason",
    "Scoring lag",
)
ASSET_PANELS = ("Anomaly score and threshold", "Sensor contributions during alarms")


def api(base: str, path: str, **params: Any) -> Any:
    url = f"{base.rstrip('/')}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as r:
        doc = json.load(r)
    if doc.get("status") != "success":
        raise SystemExit(f"{url}: {doc.get('error')}")
    return doc["data"]


def panel(dashboard: str, title: str) -> dict[str, Any]:
    d = json.loads((HERE / "dashboards" / f"{dashboard}.json").read_text())
    return next(p for p in d["panels"] if p.get("title") == title)


def fill(expr: str, variables: dict[str, str]) -> str:
    for name, value in variables.items():
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    return expr


def legend(fmt: str, labels: dict[str, str]) -> str:
    if fmt in ("", "__auto"):
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def series(
    base: str, p: dict[str, Any], variables: dict[str, str], start: float, end: float, step: float
) -> list[tuple[str, list[datetime], list[float]]]:
    out = []
    for t in p["targets"]:
        for r in api(base, "query_range", query=fill(t["expr"], variables), start=start, end=end, step=step)["result"]:
            xs: list[datetime] = []
            ys: list[float] = []
            last = None
            for ts, v in r["values"]:
                if last is not None and float(ts) - last > 1.5 * step:  # a gap: break the line there
                    xs.append(datetime.fromtimestamp(last + step))
                    ys.append(float("nan"))
                xs.append(datetime.fromtimestamp(float(ts)))
                ys.append(float(v))
                last = float(ts)
            out.append((legend(t.get("legendFormat", ""), r["metric"]), xs, ys))
    return out


def draw(
    ax: Any,
    p: dict[str, Any],
    title: str,
    lines: list[tuple[str, list[datetime], list[float]]],
    xlim: tuple[datetime, datetime],
) -> None:
    """One Grafana time-series panel: its scale, its threshold line, series that are all zero folded."""
    custom = p["fieldConfig"]["defaults"].get("custom", {})
    flat = [ln for ln in lines if not any(y == y and y != 0 for y in ln[2])]
    if len(flat) > 3:  # e.g. every rejection reason at 0: one line, one label
        lines = [ln for ln in lines if ln not in flat] + [(f"{len(flat)} series at 0", flat[0][1], flat[0][2])]
    for name, xs, ys in lines:
        style = {"color": "red", "linestyle": "--"} if name == "threshold" else {}
        ax.plot(xs, ys, label=name, linewidth=1.2, **style)
    if custom.get("thresholdsStyle", {}).get("mode") == "line":
        for step in p["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]:
            ax.axhline(step["value"], color=step["color"], linestyle=":", linewidth=1)
    if custom.get("scaleDistribution", {}).get("type") == "log":
        ax.set_yscale("log")
    ax.set_xlim(*xlim)
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
    if lines:
        ax.legend(fontsize=7, loc="best", ncol=3, framealpha=0.8)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    ap.add_argument("--minutes", type=float, default=10, help="time range ending now (default 10)")
    ap.add_argument("--end", type=float, default=None, help="end of the range, unix time (default now)")
    ap.add_argument("--asset", default=None, help="asset of the lower panels (default: the one with most alarms)")
    ap.add_argument("--out", default=str(HERE / "preview.png"), help="PNG to write")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    end = args.end or time.time()
    start = end - args.minutes * 60
    step = max(2.0, args.minutes * 60 / 400)
    asset = args.asset
    if asset is None:
        ranked = api(args.prometheus, "query", query="sort_desc(max by (asset) (plantwatch_alarms_total))", time=end)
        asset = ranked["result"][0]["metric"]["asset"] if ranked["result"] else "asset01"
    variables = {
        "instance": ".*",
        "asset": asset,
        "__rate_interval": "30s",
        "__interval": f"{int(step)}s",
        "__range": f"{int(args.minutes * 60)}s",
    }

    xlim = (datetime.fromtimestamp(start), datetime.fromtimestamp(end))
    fig, axes = plt.subplots(3, 2, figsize=(14, 10), constrained_layout=True)
    for ax, title in zip(axes[:2].flat, FLEET_PANELS):
        p = panel("plantwatch-fleet", title)
        draw(ax, p, title, series(args.prometheus, p, variables, start, end, step), xlim)
    alarm = series(args.prometheus, panel("plantwatch-asset", "Alarm"), variables, start, end, step)
    for ax, title in zip(axes[2], ASSET_PANELS):
        p = panel("plantwatch-asset", title)
        draw(ax, p, f"{asset}: {title}", series(args.prometheus, p, variables, start, end, step), xlim)
        for _, xs, ys in alarm:
            for x0, x1, on in zip(xs, xs[1:], ys):
                if on >= 1:
                    ax.axvspan(x0, x1, color="red", alpha=0.12, linewidth=0)
    for ax in axes.flat:
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S" if args.minutes <= 30 else "%H:%M"))
    fig.suptitle(
        "plantwatch: fleet overview and asset dashboards (live data from plantwatch demo; red: alarms)", fontsize=12
    )
    fig.savefig(args.out, dpi=90)
    print(
        f"wrote {args.out} ({datetime.fromtimestamp(start):%H:%M:%S}-{datetime.fromtimestamp(end):%H:%M:%S}, "
        f"asset {asset})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
