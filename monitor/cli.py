"""The ``plantwatch`` command: one registry of subcommands.

This is the one module that knows both packages. Argument definitions are
light; each handler is named as ``"module:function"`` and imported only when
its command runs, so ``plantwatch monitor`` never loads the simulator or GAN.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Callable, Sequence

from . import __version__, logs
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


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=34)


def command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: str,
    help: str,
    examples: str,
) -> argparse.ArgumentParser:
    """Add a subcommand whose handler ("module:function") is imported at run time."""
    p = sub.add_parser(name, help=help, description=help, epilog="examples:\n" + examples,
                       formatter_class=_formatter)
    p.set_defaults(handler=handler)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plantwatch",
        description="Streaming process monitoring: MQTT telemetry -> denoising-autoencoder "
        "anomaly scores, rolling thresholds and alarms -> Prometheus metrics.",
        epilog=EPILOG,
        formatter_class=_formatter,
    )
    parser.add_argument("--version", action="version", version=f"plantwatch {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="log verbosity (default: info)")
    parser.add_argument("--log-json", action="store_true", default=None,
                        help="JSON log lines even on a terminal (default: JSON only off a terminal)")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    from . import cli_commands
    from simulator import cli as simulator_cli

    simulator_cli.register(sub)
    cli_commands.register(sub)
    return parser


def _resolve(handler: str) -> Callable[[argparse.Namespace], int]:
    module, func = handler.split(":")
    return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    logs.configure(args.log_level, args.log_json)
    try:
        code = _resolve(args.handler)(args)
    except PlantwatchError as exc:
        print(f"plantwatch {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"plantwatch {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        return 1
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
