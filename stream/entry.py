"""The ``sentiment-monitor`` command (and ``python -m stream``): process-wide memory choices that
must come before pyarrow loads and before any thread starts, then the CLI (:mod:`stream.cli`).

Arrow's buffers come from the system allocator unless ``ARROW_DEFAULT_MEMORY_POOL`` names
another. pyarrow's default, mimalloc, kept about 100 MB more resident in a Kafka worker for the
same work (``benchmarks/kafka_throughput.py`` prints each worker's peak RSS;
docs/benchmark-history.md), and the per-stage timings of ``benchmarks/stages.py`` did not
differ. Arrow reads the variable once, when it first allocates, so it is set here, before
anything imports pyarrow; the Python-side ``pa.set_memory_pool`` would leave Arrow's own C++
allocations (Parquet, IPC, compute) on the default pool.

glibc's malloc gives each new thread an arena of its own, up to eight per core, and freed
memory stays in the arena that held it; with Arrow on malloc and a worker's threads (scoring,
lake encoding, Arrow's own), that kept about 20 MB more resident in a Kafka worker than two
arenas did, at the same speed (docs/benchmark-history.md). So a process limits itself to two
arenas (``mallopt(M_ARENA_MAX)``), unless ``MALLOC_ARENA_MAX`` says otherwise.

Python's cyclic garbage collector runs a young collection every 700 container allocations
beyond deallocations, and a worker allocates several objects per review (records, events, their
dicts), with hundreds of thousands alive: a Kafka worker spent about a tenth of its time in
collections, most of it in eleven full ones of about 75 ms each, all with the interpreter held
(one-off, 120,000 events: 1.1 s of 12 s). Young collections every 10,000 allocations
(:data:`GC_THRESHOLDS`) took that to about 0.2 s and no full collection, at the same peak RSS;
the worker's events/s gained about 6% (one-off, four runs each way alternating;
docs/benchmark-history.md).
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys

__all__ = [
    "ARROW_POOL",
    "GC_THRESHOLDS",
    "MALLOC_ARENAS",
    "configure_process",
    "limit_malloc_arenas",
    "main",
]

#: Arrow's allocator in our processes (``ARROW_DEFAULT_MEMORY_POOL`` overrides it).
ARROW_POOL = "system"
#: glibc malloc arenas in our processes (``MALLOC_ARENA_MAX`` overrides it).
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h
#: ``gc.set_threshold`` of our processes: young collections every 10,000 allocations (not 700)
GC_THRESHOLDS = (10_000, 10, 10)


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas (takes effect for threads started afterwards); False where
    ``MALLOC_ARENA_MAX`` is set (glibc read it at start) or the C library has no such
    option (not Linux, or not glibc)."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))


def configure_process() -> None:
    """Process-wide settings for a ``sentiment-monitor`` process; call before pyarrow loads
    and before any thread starts."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", ARROW_POOL)
    limit_malloc_arenas()
    gc.set_threshold(*GC_THRESHOLDS)


def main() -> None:
    configure_process()
    from stream.cli import app

    app()
