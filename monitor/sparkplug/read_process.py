"""A helper process that reads a backlog's DATA payloads (:mod:`.data_read`) while the worker scores.

The worker is bound by the interpreter lock: one core, however many the host has. Reading a Sparkplug
batch's columns (two protobuf parses, the list of columns, two slices a message) is about a third of its
work and needs no state, so while a backlog drains the worker hands batch k+1's payloads to this process
and scores batch k meanwhile; held values, ``seq`` checks and everything else stay in the worker. On the
benchmark's backlog (2-core host) the worker loop went from 62.8 to 47.1 us a message. Small batches
(paced load) are read in the worker: there the hand-over would only add latency.

The process is ``python -m monitor.sparkplug.read_server`` (protobuf and numpy, no torch), started at
the first backlog batch. It talks over its stdin and stdout in length-prefixed frames, no pickling: a
request is n, the payload lengths and the payloads; a reply is the bytes of :func:`.data_read.read_many`.
A reader thread drains its stdin, so a request written while the reply before it waits to be read
never deadlocks the pipes. It ends when its stdin closes, so it never outlives the monitor, and ignores
SIGINT and SIGTERM: a Ctrl-C, or systemd stopping the whole unit, is the monitor's to handle (it drains
with the process's help, then closes it). If it dies, hangs past :data:`TIMEOUT_S` (:data:`START_S` to start) or answers nonsense,
the monitor logs why, counts it (``plantwatch_sparkplug_read_process_failures_total``), reads in the
worker and starts a new process :data:`RETRY_S` later.
"""

from __future__ import annotations

import os
import select
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence

import numpy as np

from .. import logs
from .data_read import HEAD_SIZE as REPLY_HEAD
from .data_read import ReadBatch

log = logs.get("sparkplug")

#: a reply later than this means the process is stuck (1,000 payloads of 26 doubles: a 23.5 ms round trip
#: on the 2-core test host). A worker turn waits at most twice this (sending the next batch, then the reply
#: to this one), well inside the systemd unit's WatchdogSec=30s
TIMEOUT_S = 5.0
RETRY_S = 60.0
#: its imports take ~0.5 s, several on a loaded host; the worker reads meanwhile (it never waits for them)
START_S = 30.0
REQUEST = struct.Struct("<IQ")  # payloads, their bytes
REPLY = struct.Struct("<Q")
READY = b"R"  # the process's first byte: imports done, reading requests
SERVER = "monitor.sparkplug.read_server"  # the process's module (not imported here: ``-m`` runs it fresh)

#: a request's place: the process it went to (a count of starts) and its number there
Ticket = tuple[int, int]


class ReadProcess:
    """The worker's side: :meth:`submit` a batch's payloads, later :meth:`result` its reads (in order)."""

    def __init__(self, retry_s: float = RETRY_S, timeout_s: float = TIMEOUT_S, start_s: float = START_S) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = 0  # processes started: a ticket of an earlier one is void
        self._sent = self._answered = 0  # requests written to the current process, replies read from it
        self._ready = False  # the current process said it is ready
        self._ready_by = 0.0  # ... or has failed to, by this time (monotonic)
        self._bounds: deque[int] = deque()  # the largest reply each unanswered request can have
        self._retry_at = 0.0
        self.retry_s, self.timeout_s, self.start_s = retry_s, timeout_s, start_s
        self.failures = 0

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def submit(self, payloads: Sequence[bytes]) -> Ticket | None:
        """Send ``payloads`` to be read; None (read them yourself) when there is no working process, or it
        is still starting (it says when it is ready: the worker never waits for its imports)."""
        if self._proc is None:
            if time.monotonic() < self._retry_at:
                return None
            try:
                self._start()
            except OSError as exc:  # no such interpreter, no memory, no more processes allowed ...
                self._fail(f"cannot start: {exc}")
                return None
        if not self._ready and not self._check_ready():
            return None
        assert self._proc is not None and self._proc.stdin is not None
        n = len(payloads)
        lengths = np.fromiter(map(len, payloads), np.uint32, n)
        blob = b"".join(payloads)
        frame = b"".join((REQUEST.pack(n, len(blob)), lengths.tobytes(), blob))
        try:
            _write_all(self._proc.stdin.fileno(), frame, time.monotonic() + self.timeout_s)
        except Exception as exc:  # a broken pipe, a timeout; anything else must not reach the worker either
            self._fail(f"cannot send it a batch: {exc!r}")
            return None
        self._bounds.append(reply_bound(n, len(blob)))
        self._sent += 1
        return self._started, self._sent - 1

    def result(self, ticket: Ticket) -> ReadBatch | None:
        """The reads of the batch ``ticket`` was given for, which must be the oldest unanswered one;
        None (read it yourself) if the process failed since, or fails on it."""
        if self._proc is None or ticket[0] != self._started:
            return None
        if ticket[1] != self._answered:
            self._fail(f"out of step: asked for reply {ticket[1]}, the next is {self._answered}")
            return None
        assert self._proc.stdout is not None
        fd, deadline = self._proc.stdout.fileno(), time.monotonic() + self.timeout_s
        try:
            (size,) = REPLY.unpack(_read_exact(fd, REPLY.size, deadline))
            if size > self._bounds[0]:
                raise ValueError(f"a reply of {size} bytes to a request that allows {self._bounds[0]}")
            reads = ReadBatch.decode(_read_exact(fd, size, deadline))
        except Exception as exc:  # it died, hung or said nonsense: the worker reads, never crashes
            code = self._proc.poll()
            self._fail(f"exited with status {code}" if code is not None else repr(exc))
            return None
        self._bounds.popleft()
        self._answered += 1
        return reads

    def _check_ready(self) -> bool:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        try:
            said = os.read(fd, 1) if _wait(fd, select.POLLIN, 0.0) else None
        except BlockingIOError:
            said = None
        except OSError as exc:
            self._fail(f"cannot read it: {exc!r}")
            return False
        if said is None:
            if time.monotonic() > self._ready_by:
                self._fail(f"not ready within {self.start_s:g} s of its start")
            return False
        if said != READY:
            code = self._proc.poll()
            self._fail(f"exited with status {code} while starting" if code is not None else f"said {said!r} at start")
            return False
        self._ready = True
        return True

    def close(self) -> None:
        """End the process: its stdin closes, it exits; killed if it has not within a second."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        try:
            proc.wait(1.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()

    def _start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        os.set_blocking(self._proc.stdin.fileno(), False)
        os.set_blocking(self._proc.stdout.fileno(), False)
        self._started += 1
        self._sent = self._answered = 0
        self._ready, self._ready_by = False, time.monotonic() + self.start_s
        self._bounds.clear()
        log.info("read_process_started", pid=self._proc.pid)

    def _fail(self, why: str) -> None:
        self.failures += 1
        self._retry_at = time.monotonic() + self.retry_s
        pid = self.pid
        if self._proc is not None:
            self._proc.kill()
        self.close()
        log.error(
            "read_process_failed",
            pid=pid,
            why=why,
            note=f"reading in the worker, a new process in {self.retry_s:.0f} s",
        )


def reply_bound(n: int, size: int) -> int:
    """The largest reply to a request of ``n`` payloads of ``size`` bytes in all: a metric takes 2 bytes at least."""
    return REPLY_HEAD + 8 * (4 * n + 1) + 16 * (size // 2)


def _wait(fd: int, event: int, timeout: float) -> bool:
    """``fd`` is ready for ``event`` within ``timeout`` seconds (poll: any descriptor number, unlike select)."""
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(max(timeout, 0.0) * 1000))


def _write_all(fd: int, data: bytes, deadline: float) -> None:
    view = memoryview(data)
    while view:
        left = deadline - time.monotonic()
        if left <= 0 or not _wait(fd, select.POLLOUT, left):
            raise TimeoutError("it stopped reading its input")
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            continue


def _read_exact(fd: int, n: int, deadline: float) -> bytes:
    parts, got = [], 0
    while got < n:
        left = deadline - time.monotonic()
        if left <= 0 or not _wait(fd, select.POLLIN, left):
            raise TimeoutError("no answer in time")
        try:
            chunk = os.read(fd, n - got)
        except BlockingIOError:
            continue
        if not chunk:
            raise EOFError("it closed its output")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)
