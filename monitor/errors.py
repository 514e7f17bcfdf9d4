"""The few exception types plantwatch raises on purpose.

Each one is a user-facing problem with a one-line message; the CLI maps them to
an exit code and prints the message without a traceback. Anything else that
escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class PlantwatchError(Exception):
    """Base class: a problem the user can fix; ``str(exc)`` is the whole story."""

    exit_code = 1


class InputError(PlantwatchError):
    """Bad data file or argument (raised by CSV reading, CLI checks).

    The message names the file, and where it can, the row and the column.
    """

    exit_code = 2


class ConfigError(PlantwatchError):
    """Invalid configuration; each problem names the dotted key and the rule.

    A config can hold several mistakes at once; all of them are reported
    (``problems``, one line each) so the user fixes the file in one go.
    """

    exit_code = 2

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems: tuple[str, ...] = problems or ("invalid configuration",)


class ArtefactError(PlantwatchError):
    """A model or GAN folder is missing, corrupted, tampered with or foreign."""

    exit_code = 2


class BrokerError(PlantwatchError):
    """The MQTT broker cannot be reached or refused us."""

    exit_code = 3


class OutputError(PlantwatchError):
    """An output could not be written while running (disk full, file too large); said in one line."""

    exit_code = 1
