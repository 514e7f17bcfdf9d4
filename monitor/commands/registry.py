"""What a subcommand is: a name, its help and examples, its arguments, and a handler named as text.

The CLI (:mod:`monitor.cli`) reads lists of :class:`Command` from both
packages and builds the parser; command modules never import the CLI back.
Handlers are ``"module:function"`` strings imported only when their command
runs, so ``plantwatch monitor`` never loads the simulator or the GAN, and
argument definitions stay light.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Arguments = Callable[[argparse.ArgumentParser], None]
Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    """One ``plantwatch <name>``; ``subcommands`` make it a group (``plantwatch gan train``)."""

    name: str
    handler: str
    help: str
    examples: str
    arguments: Arguments | None = None
    subcommands: tuple[Command, ...] = ()


def formatter(prog: str) -> argparse.HelpFormatter:
    """Help text kept as written (examples are laid out by hand)."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=34)


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser], cmd: Command) -> argparse.ArgumentParser:
    """Add ``cmd`` (and its subcommands) to a subparsers action."""
    p = sub.add_parser(
        cmd.name, help=cmd.help, description=cmd.help, epilog="examples:\n" + cmd.examples, formatter_class=formatter
    )
    p.set_defaults(handler=cmd.handler)
    if cmd.arguments is not None:
        cmd.arguments(p)
    if cmd.subcommands:
        inner = p.add_subparsers(dest=f"{cmd.name}_command", metavar=f"<{cmd.name} command>")
        for child in cmd.subcommands:
            add(inner, child)
    return p


def add_all(sub: argparse._SubParsersAction[argparse.ArgumentParser], commands: Sequence[Command]) -> None:
    for cmd in commands:
        add(sub, cmd)


def resolve(handler: str) -> Handler:
    """The function a ``"module:function"`` handler names, imported now."""
    module, func = handler.split(":")
    fn: Handler = getattr(importlib.import_module(module), func)
    return fn
