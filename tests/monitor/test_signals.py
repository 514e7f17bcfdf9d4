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
