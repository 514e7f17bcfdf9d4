"""``plantwatch check-config FILE``: validate a config, its environment and every model it names, then exit."""

from __future__ import annotations

import argparse
import sys

from .. import config
from ..daemon import load_web_config, model_problems
from ..errors import ConfigError


def check_config_command(args: argparse.Namespace) -> int:
    """Exit 0 when the monitor would start with this file; otherwise every problem, one line each, and exit 2.

    A file with several mistakes is reported in one go (each naming its dotted key), models included:
    a reader fixes them all before the next try rather than one per run.
    """
    cfg, problems = config.Sources(args.file).check()
    models, bad_models = model_problems(cfg)
    problems += [f"{args.file}: {p}" for p in bad_models]
    if cfg.metrics.web_config_file:
        try:
            load_web_config(cfg.metrics.web_config_file)
        except ConfigError as exc:
            problems += [f"{args.file}: {p}" for p in exc.problems]
    if problems:
        raise ConfigError(*problems)
    print(
        f"{args.file}: ok: broker {cfg.broker.url}, prefix {cfg.prefix!r}, "
        f"{len(models)} model(s): {', '.join(m.name for m in models)}",
        file=sys.stdout,
    )
    return 0
