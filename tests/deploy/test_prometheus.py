"""deploy/prometheus: Debian's promtool accepts the config and rules, and every alert's unit tests pass."""

from __future__ import annotations

import re
import subprocess
import tomllib
from typing import Any

import pytest
import yaml

from . import DEPLOY, exe, promql_metric_names, unknown_metric_names

PROM = DEPLOY / "prometheus"
RULES = PROM / "rules" / "plantwatch.rules.yml"
TESTS = sorted((PROM / "tests").glob("*.yml"))
JOB = "plantwatch"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = exe("promtool")
    if tool is None:
        pytest.fail("promtool is not installed: run the tests through 'bash tests/run' (Debian package prometheus)")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120, cwd=PROM)


def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [r for r in rules() if "alert" in r]


def records() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}


def test_promtool_check_config() -> None:
    """``promtool check config`` accepts prometheus.yml and the rule files it names."""
    r = promtool("check", "config", "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 1 rule files found" in r.stdout, r.stdout


def test_promtool_check_rules() -> None:
    """``promtool check rules`` accepts the rules file."""
    r = promtool("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(rules())} rules found" in r.stdout, r.stdout


def test_promtool_unit_tests_pass() -> None:
    """``promtool test rules`` passes every unit test file."""
    assert TESTS, "no promtool unit tests in deploy/prometheus/tests"
    r = promtool("test", "rules", *map(str, TESTS))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SUCCESS") == len(TESTS), r.stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    """Each alert is evaluated at least once where it must fire and once where it must not."""
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - fires == set(), f"alerts never tested firing: {sorted(names - fires)}"
    assert names - quiet == set(), f"alerts never tested quiet: {sorted(names - quiet)}"
    assert (fires | quiet) - names == set(), "tests name alerts that do not exist"


def test_alerts_follow_the_conventions() -> None:
    """CamelCase names, for: and keep_firing_for:, a severity, summary/description/runbook_url."""
    assert alerts()
    for a in alerts():
        name = a["alert"]
        assert re.fullmatch(r"Plantwatch(?:[A-Z][a-z0-9]+)+", name), name
        assert "for" in a and "keep_firing_for" in a, name
        assert a["labels"]["severity"] in ("critical", "warning"), name
        assert {"summary", "description", "runbook_url"} <= set(a["annotations"]), name
        assert a["annotations"]["runbook_url"].endswith("#" + name.lower()), name
    for name in records():
        assert re.fullmatch(r"plantwatch:[a-z0-9_]+(?::[a-z0-9_]+)?", name), name


def test_runbook_has_a_section_per_alert() -> None:
    """deploy/runbook.md, which runbook_url points at, has a heading for every alert."""
    headings = {
        line.lstrip("#").strip().lower()
        for line in (DEPLOY / "runbook.md").read_text().splitlines()
        if line.startswith("## ")
    }
    missing = {a["alert"].lower() for a in alerts()} - headings
    assert not missing, missing


def test_rules_name_only_real_metrics_and_the_shipped_job() -> None:
    """Every metric in the rules is exposed by plantwatch, recorded here, or standard (up, process_*,
    python_*); every job matcher names the job of the shipped scrape config."""
    jobs = [j["job_name"] for j in yaml.safe_load((PROM / "prometheus.yml").read_text())["scrape_configs"]]
    assert jobs == [JOB]
    names: set[str] = set()
    for r in rules():
        names |= promql_metric_names(r["expr"])
        for job in re.findall(r'job\s*=~?\s*"([^"]*)"', r["expr"]):
            assert job == JOB, r
    assert "up" in names and unknown_metric_names(names, records()) == set()


def test_scrape_targets_match_the_shipped_monitor_configs() -> None:
    """The file_sd targets file exists, parses, and scrapes the metrics port of deploy/plantwatch.toml."""
    job = yaml.safe_load((PROM / "prometheus.yml").read_text())["scrape_configs"][0]
    files = [f for sd in job["file_sd_configs"] for f in sd["files"]]
    assert files == ["targets/plantwatch.yml"]
    groups = yaml.safe_load((PROM / files[0]).read_text())
    targets = [t for g in groups for t in g["targets"]]
    port = tomllib.loads((DEPLOY / "plantwatch.toml").read_text())["metrics"]["port"]
    assert targets == [f"127.0.0.1:{port}"]
    shard_ports = {tomllib.loads(p.read_text())["metrics"]["port"] for p in (DEPLOY / "shards").glob("*.toml")}
    commented = set(map(int, re.findall(r"127\.0\.0\.1:(\d+)", (PROM / files[0]).read_text()))) - {port}
    assert shard_ports == commented, "the commented shard targets should list deploy/shards/*.toml's ports"


def test_alerts_read_recording_rules_of_the_same_evaluation() -> None:
    """An alert that uses a recording rule sits after it in the same group (groups are evaluated
    independently, so across groups an alert may see the previous evaluation's value)."""
    for g in yaml.safe_load(RULES.read_text())["groups"]:
        seen: set[str] = set()
        for r in g["rules"]:
            if "record" in r:
                seen.add(r["record"])
                continue
            used = {n for n in promql_metric_names(r["expr"]) if n in records()}
            assert used <= seen, (r["alert"], used - seen)


def test_drill_conventions_match_the_drill_command() -> None:
    """The rules single out drill copies by the suffix ``plantwatch drill`` gives them, and the alert the
    drill checks exists."""
    scenario = pytest.importorskip("simulator.drill.scenario")
    assert scenario.DRILL_SUFFIX == "-drill"
    assert any(r["expr"].count('".+-drill"') for r in alerts())
    assert scenario.DEFAULT_ALERT in {a["alert"] for a in alerts()}
