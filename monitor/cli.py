"""The ``plantwatch`` command: one parser built from the command lists of both packages.

This is the one module that knows both packages. It reads the monitor's and
the simulator's lists of :class:`~monitor.commands.Command` specs; handlers
are imported only when their command runs, so ``plantwatch monitor`` never
loads the simulator or the GAN.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from simulator.cli import COMMANDS as SIMULATOR_COMMANDS

from . import __version__, logs, signals
from .commands import COMMANDS, add_all, formatter, resolve
from .errors import PlantwatchError

EPILOG = """\
examples:
  plantwatch demo                                  # whole chain on this machine
  plantwatch simulate --to-csv hist.csv --samples 5000
  plantwatch train --data hist.csv --out model/
  plantwatch score --model model/ --data new.csv --out scores.csv
  plantwatch monitor --broker mqtt://127.0.0.1:1883 --model model/ --metrics-port 9108

Run 'plantwatch <command> --help' for the options and examples of each command.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plantwatch",
        description="Streaming process monitoring: MQTT telemetry -> denoising-autoencoder "
        "anomaly scores, rolling thresholds and alarms -> Prometheus metrics.",
        epilog=EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"plantwatch {__version__}")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (default: info)",
    )
    parser.add_argument(
        "--log-json",
        action="store_true",
        default=None,
        help="JSON log lines even on a terminal (default: JSON only off a terminal)",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    add_all(sub, SIMULATOR_COMMANDS)
    add_all(sub, COMMANDS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "monitor":  # only the monitor reloads; SIGHUP ends the others, as it always did
        signals.release_hangups()
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    logs.configure(args.log_level, args.log_json)
    try:
        code = resolve(args.handler)(args)
    except PlantwatchError as exc:
        for problem in getattr(exc, "problems", None) or (str(exc),):
            print(f"plantwatch {args.command}: error: {problem}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"plantwatch {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        return 1
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
