"""Scoped signal handlers: installed for a block, the caller's restored after it, even on an error."""

from __future__ import annotations

import os
import signal

import pytest

from monitor.signals import handlers, stop_on_signals


def test_the_previous_handlers_come_back_after_an_exception() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(RuntimeError), handlers({signal.SIGUSR1: lambda s, f: None}):
        raise RuntimeError("boom")
    assert signal.getsignal(signal.SIGUSR1) is before


def test_first_stop_signal_asks_the_second_interrupts() -> None:
    asked: list[bool] = []
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(lambda: asked.append(True)):
        os.kill(os.getpid(), signal.SIGTERM)
        assert asked == [True]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


def test_hangups_held_at_the_entry_are_counted_once_taken_and_released_only_by_the_entry() -> None:
    from monitor import signals

    before = signal.getsignal(signal.SIGHUP)
    try:
        signals.release_hangups()  # not held: a caller's handler stays
        assert signal.getsignal(signal.SIGHUP) is before
        signals.hold_hangups()
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGHUP)
        assert signals.take_held_hangups() == 2
        assert signals.take_held_hangups() == 0
        signals.release_hangups()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, before)
