"""The ``sentiment-monitor`` command (and ``python -m stream``): a process-wide choice that
must come before pyarrow loads, then the CLI (:mod:`stream.cli`).

Arrow's buffers come from the system allocator unless ``ARROW_DEFAULT_MEMORY_POOL`` names
another. pyarrow's default, mimalloc, kept about 100 MB more resident in a Kafka worker for
the same work (``benchmarks/kafka_throughput.py`` prints each worker's peak RSS; README,
Benchmarks), and the per-stage timings of ``benchmarks/stages.py`` did not differ. Arrow
reads the variable once, when it first allocates, so it is set here, before anything imports
pyarrow; the Python-side ``pa.set_memory_pool`` would leave Arrow's own C++ allocations
(Parquet, IPC, compute) on the default pool.
"""

from __future__ import annotations

import os

__all__ = ["ARROW_POOL", "configure_process", "main"]

#: Arrow's allocator in our processes (``ARROW_DEFAULT_MEMORY_POOL`` overrides it).
ARROW_POOL = "system"


def configure_process() -> None:
    """Process-wide settings for a ``sentiment-monitor`` process; call before pyarrow loads."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", ARROW_POOL)


def main() -> None:
    configure_process()
    from stream.cli import app

    app()
