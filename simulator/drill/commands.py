"""``plantwatch drill``: run a scenario against a live monitor, write the report, exit 0 (pass) or 1 (fail)."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from monitor import broker_login, logs, outputs
from monitor.errors import ConfigError
from monitor.signals import stop_on_signals

from . import report, scenario
from .run import run

log = logs.get("drill")


def drill_command(args: argparse.Namespace) -> int:
    outputs.check_folder(args.report, "--report")
    s = scenario.load(args.scenario).with_overrides(
        metrics_url=args.metrics_url, prometheus_url=args.prometheus_url, gan=args.gan
    )
    # The scenario's [broker] table < PLANTWATCH_BROKER_* < flags, checked as the monitor's own.
    settings = broker_login.settings(s.broker_table(), args, where=str(args.scenario))
    s = s.with_overrides(broker_url=settings.url)
    scenario.check(s)
    if s.metrics_url is None:
        raise ConfigError("monitor.metrics_url: no metrics URL; give --metrics-url http://HOST:PORT/metrics")
    patterns = None
    if any(inj.kind.startswith("gan:") for inj in s.injections):
        if s.gan is None:
            raise ConfigError("gan: the scenario has gan:<class> injections but names no GAN; set gan = PATH or --gan")
        from ..gan.inject import load_patterns

        patterns = load_patterns(s.gan)
    if not report.can_draw():  # said before the drill's minutes, not after them
        log.warning("timelines_not_drawn", reason="matplotlib is not installed: pip install 'plantwatch[plots]'")
    stop = threading.Event()
    with stop_on_signals(stop.set):
        record = run(s, settings, patterns, stop)
    result = report.evaluate(record)
    paths = report.write(result, record, Path(args.report))
    log.info(
        "drill_report",
        path=str(paths[0]),
        passed=result["pass"],
        detection_rate=result["detection_rate"],
        false_alarms_per_hour=result["false_alarms_per_hour"],
    )
    failed = [k for k, v in result["criteria"].items() if not v["pass"]]
    print(
        f"drill {'PASSED' if result['pass'] else 'FAILED'}: detection rate {result['detection_rate']:.0%}, "
        f"{result['false_alarms_per_hour']:.3g} false alarms/h"
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + (f"; {'; '.join(result['problems'])}" if result["problems"] else "")
        + f"; report in {paths[0].parent}/",
        file=sys.stderr,
    )
    return 0 if result["pass"] else 1
