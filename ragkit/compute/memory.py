"""Give freed heap memory back to the operating system between commits.

An ingest's encoder batches, tokenizer buffers and index writes allocate hundreds of megabytes
in many small blocks; when a commit has written them, glibc keeps the freed pages in its heaps
for the next allocation instead of returning them, so a process's resident size stays at its
high-water mark long after the work is done (about 0.9 GB of the 1.75 GB an 8,000-file
debian-packages ingest holds after its last commit; BENCHMARKS.md, "Ingest throughput").
``malloc_trim(0)`` returns those pages. It is glibc's: elsewhere (musl, macOS, Windows)
:func:`release_free_memory` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable

__all__ = ["ENABLED", "release_free_memory"]

#: a switch for measuring what trimming changes (``bench/`` and tests turn it off)
ENABLED = True


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the C heap's free pages to the OS; True when that was possible here."""
    trim = _malloc_trim()
    if trim is None or not ENABLED:
        return False
    trim(0)
    return True
