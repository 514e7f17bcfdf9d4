"""Give freed heap memory back to the OS, so a months-long run stays at its working-set size.

glibc keeps memory freed by a thread's arena for reuse and returns it only
when the top of the heap is free. The worker's numpy temporaries and paho's
packet buffers, freed in two threads, leave RSS creeping up by megabytes an
hour although nothing is live. ``malloc_trim(0)`` every minute releases those
pages (a few hundred microseconds); on other C libraries this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

TRIM_EVERY_S = 60.0


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


_TRIM = _malloc_trim()


def trim() -> bool:
    """Release free heap pages; False where the C library has no ``malloc_trim``."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
