"""``plantwatch check-config FILE``: validate a config, its environment and every model it names, then exit."""

from __future__ import annotations

import argparse
import sys

from .. import config
from ..daemon import load_models


def check_config_command(args: argparse.Namespace) -> int:
    """Exit 0 when the monitor would start with this file; a ConfigError or ArtefactError exits 2 (via the CLI)."""
    cfg = config.load(args.file)
    models = load_models(cfg)
    print(
        f"{args.file}: ok: broker {cfg.broker.url}, prefix {cfg.prefix!r}, "
        f"{len(models.loaded)} model(s): {', '.join(m.name for m in models.loaded)}",
        file=sys.stdout,
    )
    return 0
