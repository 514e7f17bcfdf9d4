"""The read process itself (:mod:`.read_process` starts it): requests on stdin, replies on stdout.

Run as ``python -m monitor.sparkplug.read_server``; a module of its own, which the package does not
import, so ``-m`` runs it fresh.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
from typing import BinaryIO

import numpy as np

from .data_read import read_many
from .read_process import READY, REPLY, REQUEST


def _requests(inp: BinaryIO, out: queue.SimpleQueue[list[bytes] | None]) -> None:
    """Reader thread: whole requests from ``inp`` onto ``out``; None at the end of input."""
    try:
        while head := inp.read(REQUEST.size):
            if len(head) < REQUEST.size:
                break
            n, size = REQUEST.unpack(head)
            lengths = np.frombuffer(inp.read(4 * n), np.uint32).tolist()
            blob = inp.read(size)
            if len(lengths) != n or len(blob) != size or sum(lengths) != size:
                break
            payloads, at = [], 0
            for k in lengths:
                payloads.append(blob[at : at + k])
                at += k
            out.put(payloads)
    finally:
        out.put(None)


def serve(inp: BinaryIO, out: BinaryIO) -> int:
    """Answer requests from ``inp`` on ``out`` until ``inp`` ends (the monitor closed it, or exited)."""
    requests: queue.SimpleQueue[list[bytes] | None] = queue.SimpleQueue()
    threading.Thread(target=_requests, args=(inp, requests), daemon=True, name="requests").start()
    out.write(READY)
    out.flush()
    while (payloads := requests.get()) is not None:
        reply = read_many(payloads)
        out.write(REPLY.pack(len(reply)))
        out.write(reply)
        out.flush()
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the monitor's to handle: it closes our input when done
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(serve(sys.stdin.buffer, sys.stdout.buffer))
