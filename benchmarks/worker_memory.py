"""A Kafka worker's memory over a long backlog, against the lake's buffer cap.

One worker (the model in-process) reads the same events (1,000,000 by default: about a
minute of work here) from 4 partitions once for each cap of all the lake's buffers together
(``SENTIMENT_LAKE__BUFFER_MAX_TOTAL_BYTES``; 256 MiB is the default). Printed per cap: events/s
(timed as ``kafka_throughput.py`` times a worker), the peak RSS, and the RSS every 5 s from the
worker's start, to show whether it levels off.

The lake writes a directory's rows after 60 s, at its row or byte limit, or, once all the
buffers together pass the cap, the largest first. A backlog read at full speed fills the cap
within those 60 s, so the cap bounds a long run's memory and the run's length does not: the
worker's memory is the process itself (imports, the model, the batches in flight) plus about
the cap. ``kafka_throughput.py``'s 120,000 events end before the default cap is reached.

    .venv/bin/python benchmarks/worker_memory.py [--events 1000000] [--caps-mib 16,64,256]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.kafka_throughput import fill, run_workers, status_mib
from tests.servers.kafka import KafkaBroker, kafka_jars

MIB = 2**20


class Sampler:
    """The RSS of this process's ``stream worker`` children, every ``every_s`` seconds, from a
    thread, as (seconds since the first sample, MiB)."""

    def __init__(self, every_s: float = 0.5) -> None:
        self.samples: list[tuple[float, float]] = []
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        first: float | None = None
        while not self._stop.wait(self._every_s):
            for rss in _workers_rss():
                now = time.monotonic()
                first = now if first is None else first
                self.samples.append((now - first, rss))


def _workers_rss() -> list[float]:
    """The RSS (MiB) of each ``stream worker`` child of this process, from ``/proc``."""
    out = []
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # the fields after the command's name, which may hold spaces: state, ppid, ...
            if stat[stat.rindex(")") + 2 :].split()[1] != me:
                continue
            if b"worker" not in (entry / "cmdline").read_bytes().split(b"\0"):
                continue
            out.append(status_mib(entry.name, "VmRSS"))
        except (OSError, ValueError):  # it ended between the listing and the reading
            continue
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--caps-mib", default="16,64,256", help="lake buffer caps to run, MiB, comma-separated"
    )
    args = parser.parse_args()
    caps = [int(c) for c in args.caps_mib.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, KafkaBroker(kafka_jars()) as broker:
        topic = "bench.reviews"
        asyncio.run(fill(broker.bootstrap, topic, args.events))
        for cap in caps:
            env = {
                "SENTIMENT_ENDPOINT__MODE": "inprocess",
                "SENTIMENT_LAKE__BUFFER_MAX_TOTAL_BYTES": str(cap * MIB),
            }
            with Sampler() as sampler:
                rate, peaks = run_workers(
                    broker.bootstrap, topic, args.events, Path(tmp), env, group=f"cap{cap}"
                )
            rows.append((cap, rate, peaks[0], sampler.samples))
    print(f"1 worker, {args.events:,} events on 4 partitions, the model in-process")
    print(f"{'lake buffer cap':>16s} {'events/s':>9s} {'peak RSS MiB':>13s}  RSS MiB every 5 s")
    for cap, rate, peak, samples in rows:
        marks: list[str] = []
        for at, rss in samples:
            if at >= 5 * len(marks):
                marks.append(f"{rss:.0f}")
        print(f"{cap:12d} MiB {rate:9,.0f} {peak:13.0f}  {' '.join(marks)}")


if __name__ == "__main__":
    main()
