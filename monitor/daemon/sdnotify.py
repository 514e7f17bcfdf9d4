"""The systemd notify protocol, without a dependency: one datagram to ``$NOTIFY_SOCKET``.

``READY=1`` once subscribed (``Type=notify`` units wait for it), ``WATCHDOG=1``
from the worker loop (so ``WatchdogSec=`` restarts a stuck worker, not just a
dead process), ``RELOADING=1``/``READY=1`` around SIGHUP, ``STOPPING=1`` on
stop. Outside systemd ``$NOTIFY_SOCKET`` is unset and every call is a no-op.

>>> notify("READY=1", environ={})
False
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``message``; True if it was sent. Abstract sockets are spelt with a leading '@'."""
    addr = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not addr or addr[0] not in "/@":
        return False
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(message.encode())
    except OSError:
        return False
    return True


def reloading() -> bool:
    """``RELOADING=1`` with the monotonic timestamp ``Type=notify-reload`` units require."""
    return notify(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


class Watchdog:
    """Pings ``WATCHDOG=1`` at half of ``$WATCHDOG_USEC``; call :meth:`tick` as often as you like.

    >>> Watchdog(environ={}).enabled
    False
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        ok = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        self.interval = int(usec) / 2e6 if ok else 0.0
        self.enabled = ok and bool(env.get("NOTIFY_SOCKET"))
        self._env = env
        self._next = 0.0

    def tick(self) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.interval
            notify("WATCHDOG=1", self._env)
