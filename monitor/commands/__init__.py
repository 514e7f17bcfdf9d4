"""The offline and service commands of the monitor side: train, score, monitor, check-config, record.

Each command is a :class:`Command` spec (in :mod:`.arguments`) whose handler
lives in a module of its own here and is imported only when it runs.
"""

from .arguments import COMMANDS, add_columns, add_missing
from .registry import Command, add, add_all, formatter, resolve

__all__ = ["COMMANDS", "Command", "add", "add_all", "add_columns", "add_missing", "formatter", "resolve"]
