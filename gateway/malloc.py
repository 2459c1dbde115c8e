"""The C allocator's thresholds for a long-running gateway (glibc; elsewhere nothing changes).

glibc serves a block of ``M_MMAP_THRESHOLD`` (128 KiB) or more with a mapping of its own,
returned to the system when freed, but it raises the threshold to the size of every such block
freed, up to 32 MiB. The web's large answers (a list of 512 meters is about a megabyte of JSON,
its bytes and its gzip) then come from the main heap, whose top cannot shrink below the
smallest block still in use after them: resident memory grows by the largest answers served and
stays there. Fixing the thresholds keeps those buffers in mappings of their own (gone when the
answer is sent) and lets the heap give back its free top at 128 KiB instead of at 64 MiB.

glibc also gives each thread that allocates an arena of its own, up to eight per core; the bus
threads, the store's writer and the MQTT client's thread then each keep the free space of their
busiest moment (the writer's: the pages of the largest transaction). Two arenas, shared by all
threads, keep far less; the threads hold the Python lock for nearly all they do, so they seldom
wait for an arena. Set before the threads start: an arena once made stays.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
ARENAS = 2
THRESHOLD = 128 * 1024  # glibc's own initial value; setting it turns the raising off


def fix_thresholds() -> bool:
    """Fix glibc's trim and mmap thresholds at ``THRESHOLD`` and its arenas at ``ARENAS``;
    False where the C library is not glibc (musl, macOS: their allocators do otherwise)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt answers 1 when it took the value
    wanted = ((M_MMAP_THRESHOLD, THRESHOLD), (M_TRIM_THRESHOLD, THRESHOLD), (M_ARENA_MAX, ARENAS))
    return all(mallopt(option, value) == 1 for option, value in wanted)
