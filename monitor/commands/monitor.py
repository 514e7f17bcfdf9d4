"""``plantwatch monitor``: the daemon from its config sources (file < environment < flags)."""

from __future__ import annotations

import argparse

from .. import config
from ..daemon import Monitor


def monitor_command(args: argparse.Namespace) -> int:
    """Config errors and bad model folders exit 2 with one line (via the CLI); SIGTERM exits 0."""
    sources = config.Sources(args.config, {k: getattr(args, k, None) for k in config.FLAG_KEYS})
    return Monitor(sources.load(), sources=sources).run_forever()
