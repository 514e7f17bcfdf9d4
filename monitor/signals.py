"""Signal handlers that only record, installed for a scope and restored after it.

A handler that does work (joins threads, writes files) can run in the middle
of anything the main thread was doing; these only set a flag or call a
``request_stop``, and the main loop acts (uvicorn's habit). Every command
that installs handlers gives the previous ones back when it returns, so a
caller that embeds plantwatch (a test, a notebook, the demo running the
monitor) keeps its own.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import FrameType

Handler = Callable[[int, FrameType | None], None]
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def handlers(mapping: Mapping[signal.Signals, Handler]) -> Iterator[None]:
    """Install ``mapping`` for the ``with`` block, then restore what was there before.

    >>> before = signal.getsignal(signal.SIGTERM)
    >>> with handlers({signal.SIGTERM: lambda s, f: None}):
    ...     signal.getsignal(signal.SIGTERM) is before
    False
    >>> signal.getsignal(signal.SIGTERM) is before
    True
    """
    previous = {sig: signal.signal(sig, fn) for sig, fn in mapping.items()}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def stop_on_signals(request_stop: Callable[[], object]) -> Iterator[None]:
    """First SIGINT/SIGTERM: ``request_stop()`` (a flag only). Second: KeyboardInterrupt, exit now."""
    asked = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal asked
        if asked:
            raise KeyboardInterrupt
        asked = True
        request_stop()

    with handlers(dict.fromkeys(STOP_SIGNALS, handler)):
        yield
