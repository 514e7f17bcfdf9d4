"""Freed heap pages go back to the OS (glibc; Debian is the platform we ship for); what lives as long as
the daemon is kept off the cycle collector."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from pathlib import Path

from monitor.daemon import heap


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_trim_hands_freed_heap_pages_back_while_the_heap_top_is_in_use() -> None:
    """The pattern of a long run: many small blocks freed below one that stays, which glibc keeps."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(2048) for _ in range(20_000)]  # ~40 MB below the top
    for p in blocks:
        ctypes.memset(p, 1, 2048)  # touched, so resident
    top = libc.malloc(2048)
    for p in blocks:
        libc.free(p)
    before = _rss_kb()
    assert heap.trim() is True
    after = _rss_kb()
    libc.free(top)
    assert after < before - 20_000  # at least 20 MB handed back


def test_settle_freezes_what_exists_and_collects_the_young_less_often() -> None:
    threshold = gc.get_threshold()
    before = gc.get_freeze_count()
    try:
        gc.set_threshold(700, 11, 12)  # CPython's default young threshold; the older two must stay
        kept = [[i] for i in range(1000)]  # containers alive at settle time
        heap.settle()
        assert gc.get_freeze_count() >= before + len(kept)
        assert gc.get_threshold() == (heap.GC_YOUNG_THRESHOLD, 11, 12)
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
