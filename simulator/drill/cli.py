"""Arguments of ``plantwatch drill``; the handler is imported only when it runs."""

from __future__ import annotations

import argparse

from monitor import broker_login
from monitor.commands import Command


def _drill(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", required=True, metavar="FILE", help="scenario TOML (see deploy/drills/example.toml)")
    p.add_argument(
        "--broker", default=None, metavar="URL", help="mqtt://HOST:PORT (default: the scenario's [broker] url)"
    )
    broker_login.add_arguments(p)
    p.add_argument(
        "--metrics-url",
        default=None,
        metavar="URL",
        help="the monitor's /metrics, e.g. http://127.0.0.1:9108/metrics (default: the scenario's)",
    )
    p.add_argument(
        "--prometheus-url",
        default=None,
        metavar="URL",
        help="Prometheus scraping that monitor: also check that the alert rule fired (optional)",
    )
    p.add_argument(
        "--gan", default=None, metavar="GAN", help="GAN folder for gan:<class> injections (overrides gan = ...)"
    )
    p.add_argument("--report", required=True, metavar="DIR", help="folder for report.json, report.md and the timelines")


COMMANDS = (
    Command(
        "drill",
        "simulator.drill.commands:drill_command",
        "Run a fault drill against a live monitor: publish drill copies of assets with known faults, "
        "follow alarms and /metrics, judge against the scenario's criteria (exit 0 pass, 1 fail).",
        "  plantwatch drill --scenario deploy/drills/example.toml --broker mqtt://127.0.0.1:1883 \\\n"
        "      --metrics-url http://127.0.0.1:9108/metrics --report drill-report/\n"
        "  plantwatch drill --scenario plant.toml --report /var/lib/plantwatch/drills/$(date +%F) \\\n"
        "      --prometheus-url http://prometheus:9090     # also check the alert rule fired and resolved\n"
        "  plantwatch drill --scenario plant.toml --report drill/ --username plantwatch-drill \\\n"
        "      --password-file /etc/plantwatch/drill-password   # or [broker] username/password_file\n"
        "\nthe drill publishes a copy of each scenario asset as <asset>-drill (same sensors, a simulated\n"
        "run or a replayed CSV); the monitor must score it with the asset's model, e.g. a pattern\n"
        '"boiler*" in its [models.assets]. Ground truth goes to <prefix>/<asset>-drill/drill.\n'
        "writes REPORT/report.json, report.md and timeline-<asset>-drill.png (with matplotlib:\n"
        "pip install 'plantwatch[plots]'); exit 0 pass, 1 fail, 2 bad scenario or argument, 3 broker unreachable\n",
        arguments=_drill,
    ),
)
