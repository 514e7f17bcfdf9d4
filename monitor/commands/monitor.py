"""``plantwatch monitor``: the daemon from its config sources (file < environment < flags)."""

from __future__ import annotations

import argparse
import os
import sys

from .. import config
from ..daemon import Monitor


def monitor_command(args: argparse.Namespace) -> int:
    """Config errors and bad model folders exit 2 with one line (via the CLI); SIGTERM exits 0.

    A forced stop (a second SIGINT) does not wait for the scoring thread. Finalising the interpreter around a
    thread still inside torch can abort the process (a CI run ended in SIGABRT, "terminate called without an
    active exception", instead of 130), so with the worker alive the process leaves at once, its logs flushed:
    whatever the worker held is unacknowledged and redelivered, as ``drain_incomplete`` says.
    """
    sources = config.Sources(args.config, {k: getattr(args, k, None) for k in config.FLAG_KEYS})
    mon = Monitor(sources.load(), sources=sources)
    code = mon.run_forever()
    if mon.worker is not None and mon.worker.is_alive():
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)
    return code
