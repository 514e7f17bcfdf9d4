"""Signal handlers that only record, installed for a scope and restored after it.

A handler that does work (joins threads, writes files) can run in the middle
of anything the main thread was doing; these only set a flag or call a
``request_stop``, and the main loop acts (uvicorn's habit). Every command
that installs handlers gives the previous ones back when it returns, so a
caller that embeds plantwatch (a test, a notebook, the demo running the
monitor) keeps its own.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import FrameType

Handler = Callable[[int, FrameType | None], None]
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_held: list[int] = []  # SIGHUPs that came before a command took over


def _hold(signum: int, frame: FrameType | None) -> None:
    _held.append(signum)


def hold_hangups() -> None:
    """Record SIGHUP from the first line of the process instead of dying of it.

    SIGHUP's default action ends a process, and systemd's ``Restart=on-failure``
    does not restart one a signal ended; ``systemctl reload`` or a log rotation
    can send it during the seconds the monitor spends importing torch and
    loading models. The entry point calls this before any slow import; the
    monitor takes what was held (:func:`take_held_hangups`) and every other
    command gives SIGHUP its default back (:func:`release_hangups`).
    """
    signal.signal(signal.SIGHUP, _hold)


def take_held_hangups() -> int:
    """How many SIGHUPs were held since :func:`hold_hangups` (and forget them)."""
    n = len(_held)
    del _held[:n]
    return n


def release_hangups() -> None:
    """SIGHUP's default action again, for commands that do not reload; one held meanwhile ends us now."""
    if signal.getsignal(signal.SIGHUP) is not _hold:
        return  # not the process entry (a test or an embedding caller): its handler stays
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    if take_held_hangups():
        os.kill(os.getpid(), signal.SIGHUP)


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
