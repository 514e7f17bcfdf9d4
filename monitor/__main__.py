"""The process entry (``python -m monitor`` and the ``plantwatch`` script): SIGHUP is held from here on.

Only cheap imports above :func:`main`'s first line: the CLI (numpy, and torch
for the monitor) loads after the handler is in place, so a SIGHUP during
start-up is a queued reload, never the end of the process.
"""

import sys

from .signals import hold_hangups


def main() -> int:
    hold_hangups()
    from .cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
