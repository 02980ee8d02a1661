"""The heap: give memory that an ingest stage freed back to the system.

Freed memory is not returned at once: Arrow's allocator (mimalloc) keeps freed pages for a
while, and glibc's ``malloc`` keeps what other threads freed in their arenas (Arrow's CSV
reader allocates a converter per column, the Parquet writer metadata per column chunk, on
the ingest's threads). A file of 10,000 columns frees hundreds of MiB that way between its
stages (the sample's readers, each written row group), which stayed resident and were not
all reused by the next stage: the server's peak stood ~40-60 MiB higher (measured with the
wide CSV of ``benchmarks``). ``release()`` asks both to give back what they hold free
(``MemoryPool.release_unused``, glibc's ``malloc_trim``); a few milliseconds, so an ingest
calls it between stages, not per batch. Where ``malloc_trim`` is missing (not glibc) only
Arrow's pool is asked.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable

import pyarrow as pa


def release() -> None:
    """Return the free memory of Arrow's default pool and of ``malloc`` to the system."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function
