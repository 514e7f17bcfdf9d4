"""deploy/grafana: provisionable dashboards whose every query runs, with data, against a live demo.

Grafana is not in Debian, so the dashboards are checked the way Grafana would use them: their JSON
(no import placeholders, the provisioned datasource uid) and every query, with the template variables
filled in, run through Debian's Prometheus scraping a running ``plantwatch demo`` with the shipped
scrape config and rules.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from . import DEPLOY, Process, Prometheus, free_port, http_get, promql_metric_names, unknown_metric_names, wait_until

GRAFANA = DEPLOY / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
RULES = DEPLOY / "prometheus" / "rules" / "plantwatch.rules.yml"
DS_UID = "plantwatch-prometheus"
JOB = "plantwatch"
#: What Grafana would put in for its built-in variables.
BUILTINS = {"$__rate_interval": "30s", "$__interval": "30s", "$__range": "5m"}
WARM_S = 45.0  # Prometheus runs this long on the demo before the data checks
#: The first start trains three models into the session's tmp: 15 s on an idle 2-core machine, more than
#: 5 minutes when other jobs load it (measured here at load 3-5).
DEMO_READY_S = 600.0
#: One torch thread per process: the cores are shared with other work.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
ALARM_ONLY = "plantwatch_top_sensor_contribution"  # exported only while an asset is in alarm
CHALLENGER_ONLY = 'model="challenger"'  # series of a model in shadow: the demo runs none (test_model_versions does)


def dashboard(name: str) -> dict[str, Any]:
    return json.loads((GRAFANA / "dashboards" / f"{name}.json").read_text())  # type: ignore[no-any-return]


def panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in d["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return [p for p in out if p["type"] != "row"]


def targets(d: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in panels(d) for t in p.get("targets", [])]


def annotation_exprs(d: dict[str, Any]) -> list[str]:
    return [a["expr"] for a in d["annotations"]["list"] if a.get("expr")]


def variable_query(v: dict[str, Any]) -> tuple[str, str]:
    """(series selector, label) of a ``label_values(selector, label)`` variable."""
    q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
    m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q.strip())
    assert m, f"variable {v['name']}: expected label_values(selector, label), got {q!r}"
    return m.group(1), m.group(2)


def rule_exprs() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(r.get("alert") or r["record"], r["expr"]) for g in groups for r in g["rules"]]


def records() -> set[str]:
    return {name for name, _ in rule_exprs() if ":" in name}


def fill(expr: str, variables: dict[str, str]) -> str:
    for name, value in {**BUILTINS, **{f"${k}": v for k, v in variables.items()}}.items():
        expr = expr.replace(name.replace("$", "${", 1) + "}", value).replace(name, value)
    assert "$" not in expr, f"unfilled variable in {expr}"
    return expr


# ---------------------------------------------------------------- the JSON, as provisioning loads it


def test_dashboards_are_provisionable() -> None:
    """No __inputs or ${DS_...} import placeholders; every datasource is the provisioned uid; fixed dashboard
    uids; unique panel ids."""
    assert {p.stem for p in DASHBOARDS} == {"plantwatch-fleet", "plantwatch-asset"}
    for path in DASHBOARDS:
        text = path.read_text()
        assert "__inputs" not in text and "${DS_" not in text, path
        d = json.loads(text)
        assert d["uid"] == path.stem and d.get("id") is None, path
        refs = re.findall(r'"datasource":\s*(\{[^{}]*\})', text)
        uids = {json.loads(r)["uid"] for r in refs}
        assert uids == {DS_UID, "-- Grafana --"}, (path, uids)
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), path
        for p in panels(d):
            assert p["gridPos"]["w"] > 0 and p["targets"], (path, p["title"])


def test_provisioning_files_match_the_dashboards() -> None:
    """The datasource file provides the uid the dashboards use; the provider loads the dashboards folder."""
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "plantwatch.yml").read_text())
    [source] = ds["datasources"]
    assert source["uid"] == DS_UID and source["type"] == "prometheus" and source["url"].startswith("http")
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "plantwatch.yml").read_text())
    [provider] = prov["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards/plantwatch"


def test_fleet_dashboard_has_the_overview_panels() -> None:
    """Assets in alarm, score/threshold per asset, message rates, rejections by reason, lag, monitor health."""
    exprs = " ".join(t["expr"] for _, t in targets(dashboard("plantwatch-fleet")))
    for needle in (
        "count(plantwatch_alarm",
        "or vector(0)",
        "plantwatch:anomaly_score_ratio",
        "rate(plantwatch_messages_total",
        "sum by (reason) (rate(plantwatch_messages_rejected_total",
        "plantwatch_scoring_lag_seconds_bucket",
        "up{",
        "plantwatch_broker_connected",
    ):
        assert needle in exprs, needle


def test_asset_dashboard_is_templated_by_asset() -> None:
    """An ``asset`` variable from label values; every panel and the alarm annotation filter on it; the
    drill annotations follow the asset's drill copy (``<asset>-drill``)."""
    d = dashboard("plantwatch-asset")
    [var] = d["templating"]["list"]
    assert var["name"] == "asset" and variable_query(var)[1] == "asset"
    for title, t in targets(d):
        assert 'asset="$asset"' in t["expr"], title
    titles = {p["title"] for p in panels(d)}
    assert {"Anomaly score and threshold", "Alarm", "Top contributing sensors"} <= titles
    assert any("plantwatch_alarm" in e for e in annotation_exprs(d))
    assert sum('asset="$asset-drill"' in e for e in annotation_exprs(d)) == 2, "drill running / drill detected"


def test_dashboards_name_only_real_metrics_and_the_shipped_job() -> None:
    """Every metric in a panel, variable or annotation is plantwatch's own (exposed or recorded) or standard,
    and every job matcher names the shipped scrape job."""
    for path in DASHBOARDS:
        d = json.loads(path.read_text())
        exprs = [t["expr"] for _, t in targets(d)] + annotation_exprs(d)
        exprs += [variable_query(v)[0] for v in d["templating"]["list"]]
        names = set().union(*(promql_metric_names(e) for e in exprs))
        assert unknown_metric_names(names, records()) == set(), path
        for e in exprs:
            assert set(re.findall(r'job\s*=~?\s*"([^"]*)"', e)) <= {JOB}, e


# ---------------------------------------------------------------- live: demo -> Prometheus -> every query


@dataclass
class Live:
    prom: Prometheus
    demo_port: int
    variables: dict[str, str]
    alarmed: bool
    since: float


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """``plantwatch demo`` (models trained into this session's tmp) scraped for WARM_S by Prometheus."""
    work = tmp_path_factory.mktemp("pw-live")
    port = free_port()
    demo = Process(
        [
            sys.executable,
            "-m",
            "monitor",
            "demo",
            "--duration",
            "120",
            "--metrics-port",
            str(port),
            "--no-view",
            "--cache",
            str(work / "demo-cache"),
        ],
        work / "demo.log",
        ONE_THREAD,
    )
    prom = None
    try:

        def demo_ready() -> bool:
            assert demo.alive(), f"demo exited:\n{demo.tail()}"
            return http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200

        wait_until(demo_ready, DEMO_READY_S, "the demo's /readyz", every=1.0)
        prom = p = Prometheus(work / "prometheus", f"127.0.0.1:{port}")
        p.wait_ready()
        wait_until(lambda: p.query(f'up{{job="{JOB}"}} == 1'), 20, "the demo scraped")
        time.sleep(max(0.0, p.started + WARM_S - time.time()))
        # Prefer an asset that has been in alarm (the demo injects a fault every 45 s, asset01 first):
        # the sensors-behind-alarms panels then have data too. Wait a little for one if none yet.
        deadline = time.monotonic() + 30
        while not p.query("plantwatch_alarms_total > 0") and time.monotonic() < deadline:
            time.sleep(2.0)
        time.sleep(6.0)  # a few scrapes of the alarm, if there is one
        alarmed = p.query("max by (asset) (plantwatch_alarms_total) > 0")
        asset = sorted(r["metric"]["asset"] for r in alarmed)[0] if alarmed else "asset01"
        yield Live(p, port, {"asset": asset, "instance": f"127.0.0.1:{port}"}, bool(alarmed), p.started)
    finally:
        if prom is not None:
            prom.close()
        demo.close()


@pytest.mark.slow
def test_variables_resolve_to_the_demo(live: Live) -> None:
    """Each dashboard variable's label_values query lists the value the checks below use."""
    for path in DASHBOARDS:
        for v in json.loads(path.read_text())["templating"]["list"]:
            selector, label = variable_query(v)
            values = live.prom.api(f"label/{label}/values", **{"match[]": selector})
            assert live.variables[v["name"]] in values, (path.stem, v["name"], values)


@pytest.mark.slow
def test_every_rule_query_is_valid_and_evaluates(live: Live) -> None:
    """Every alerting and recording expression runs through /api/v1/query; Prometheus evaluated every rule
    without error; every recording rule has produced series."""
    for _name, expr in rule_exprs():
        live.prom.query(expr)
    groups = live.prom.api("rules")["groups"]
    evaluated = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(evaluated) == {n for n, _ in rule_exprs()}
    for name, r in evaluated.items():
        assert r["health"] == "ok", (name, r.get("lastError"))
    for name in records():
        assert live.prom.query(name), f"recording rule {name} has no data"


@pytest.mark.slow
def test_no_critical_alert_on_a_healthy_demo(live: Live) -> None:
    """A running, connected demo trips no critical alert (pending or firing)."""
    alerts = live.prom.api("alerts")["alerts"]
    critical = [a["labels"]["alertname"] for a in alerts if a["labels"].get("severity") == "critical"]
    assert critical == [], alerts


@pytest.mark.slow
def test_every_panel_query_returns_data(live: Live) -> None:
    """Every panel target, variables filled in, is valid (/api/v1/query) and returns data: instant targets
    now, range targets over the demo's run. Panels of the sensors behind alarms need an alarm first, the
    challenger's a model in shadow."""
    now = time.time() + 2.0  # the last range step at or after the last scrape
    empty = []
    for path in DASHBOARDS:
        for title, t in targets(json.loads(path.read_text())):
            expr = fill(t["expr"], live.variables)
            result = live.prom.query(expr)
            if not t.get("instant"):
                result = live.prom.query_range(expr, live.since, now)
            if ALARM_ONLY in expr and not live.alarmed:
                continue
            if CHALLENGER_ONLY in expr and not live.prom.query("plantwatch_challenger_info"):
                continue  # valid (queried above); data only while a challenger is shadowed
            if not result:
                empty.append(f"{path.stem}: {title}: {expr}")
    assert empty == [], "\n".join(empty)


@pytest.mark.slow
def test_assets_in_alarm_says_a_number(live: Live) -> None:
    """The fleet's "Assets in alarm" stat is one sample equal to the assets in alarm, and 0 (not "no data")
    for a selection with none."""
    [(_, t)] = [(title, t) for title, t in targets(dashboard("plantwatch-fleet")) if title == "Assets in alarm"]
    at = time.time()
    [sample] = live.prom.query(fill(t["expr"], live.variables), at)
    assert float(sample["value"][1]) == len(live.prom.query("plantwatch_alarm == 1", at))
    [none] = live.prom.query(fill(t["expr"], {**live.variables, "instance": "no-such-monitor"}), at)
    assert float(none["value"][1]) == 0.0


@pytest.mark.slow
def test_annotation_queries_are_valid(live: Live) -> None:
    """Every annotation query runs (they mark alarms, reloads and restarts, so they are often empty)."""
    for path in DASHBOARDS:
        for expr in annotation_exprs(json.loads(path.read_text())):
            live.prom.query_range(fill(expr, live.variables), live.since, time.time(), 30)
