"""Logging configured once per process.

JSON lines when stderr is not a terminal (journald, CI, pipes), a readable
console renderer when a person is watching. Events are facts with bound
context (``asset=...``), never one line per message on the hot path.
"""

from __future__ import annotations

import logging
import sys

import structlog


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time, not the object it was at configure time.

    A caller that swaps stderr (pytest's capture, a tool embedding the CLI)
    and closes the old one would otherwise make every later log line raise.
    While a tqdm progress bar is drawn, lines go above it (``tqdm.write``).
    """

    def write(self, text: str) -> int:
        bars = sys.modules.get("tqdm")
        if bars is not None and getattr(bars.tqdm, "_instances", None):  # a progress bar is on screen:
            bars.tqdm.write(text.rstrip("\n"), file=sys.stderr)  # above it, not into the middle of it
            return len(text)
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(level: str = "info", json: bool | None = None) -> None:
    """Set up structlog for this process; safe to call more than once."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer: structlog.typing.Processor
    if json:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]  # write/flush suffice
        cache_logger_on_first_use=False,
    )


def get(name: str) -> structlog.typing.FilteringBoundLogger:
    """A logger bound to a component name."""
    return structlog.get_logger(component=name)
