"""Lake write throughput: rows/s through the lake sink into a local directory (and, with
``--s3``, into a real S3-compatible server, SeaweedFS, started here), against pyarrow's raw
``pq.write_table`` of the same rows as one table with the same compression (the ceiling: one
file, no partitions, no buffering), and against pyarrow's partitioned writer
(``pq.write_to_dataset``) into the same Hive partitions. The rows span 108 partitions (six days
by 18 categories), so the sink writes 108 files where the ceiling writes one: Parquet's fixed
cost per file (footer, one column chunk per column) is what separates the two. All figures come from one run on one machine, so the
ratios compare like with like.

The sink gets what the pipeline gives it: batches of :class:`~stream.events.ScoredBatch`
(the scorer's output, columns), whose Arrow table the pipeline builds once and shares with the
monitors. "lake sink -> local dir" starts from built tables; "... incl. building the table"
builds each batch's table inside the timing; "... with pending markers" also writes an empty
marker before each file (``markers="trust"``, one more file each); "... from ScoredReview
rows" is the old path (rows rebuilt into columns), kept for comparison.

    .venv/bin/python benchmarks/lake_write.py [--rows 100000] [--batch N] [--s3] [--profile]

``--batch`` defaults to the pipeline's micro-batch size (2,000).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a file (``make benchmarks``): use this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sinks.lake import LakeSink, LakeWriter, LocalLakeWriter, Markers
from stream.events import (
    Batch,
    ReviewEvent,
    ScoredBatch,
    SourcePosition,
)
from stream.settings import DEFAULT_CATEGORIES, BatchSettings

T0 = datetime(2026, 3, 1, tzinfo=UTC)
WORDS = [
    "soft",
    "fabric",
    "runs",
    "small",
    "lovely",
    "colour",
    "returned",
    "it",
    "perfect",
    "fit",
    "itchy",
    "seams",
    "great",
]


def make_events(n: int) -> list[ReviewEvent]:
    return [
        ReviewEvent(
            review_id=f"r-{i:08d}",
            product_id=f"p-{i % 997}",
            product_category=DEFAULT_CATEGORIES[i % len(DEFAULT_CATEGORIES)],
            review_text=" ".join(WORDS[(i + k) % len(WORDS)] for k in range(8 + i % 24)),
            channel="web",
            event_time=T0 + timedelta(seconds=i * 5),  # about 17,000 a day: a few days
            rating=i % 5 + 1,
        )
        for i in range(n)
    ]


def scored_batches(events: list[ReviewEvent], size: int) -> list[ScoredBatch]:
    """The scorer's output for each micro-batch (tables not built yet)."""
    out = []
    for start in range(0, len(events), size):
        chunk = events[start : start + size]
        positions = [SourcePosition("kafka", "r", "0", start + i) for i in range(len(chunk))]
        sentiment = np.ones(len(chunk), np.int8)
        probabilities = np.tile(np.array([0.1, 0.2, 0.7], np.float32), (len(chunk), 1))
        out.append(
            ScoredBatch.from_predictions(
                chunk,
                positions,
                sentiment,
                probabilities,
                model=("model", "1"),
                scored_at=T0,
                latency_ms=3.5,
            )
        )
    return out


def batches(scored: list[ScoredBatch], *, as_rows: bool = False) -> list[Batch]:
    out = []
    for seq, sb in enumerate(scored):
        last = sb.positions[-1]
        rows = list(sb) if as_rows else sb
        out.append(Batch(rows, [], {last.key: last}, seq=seq))
    return out


Timing = tuple[float, float, int]  # wall seconds, CPU seconds (all threads), files


def timed(run: Callable[[], int]) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    files = run()
    return time.perf_counter() - wall, time.process_time() - cpu, files


def ceiling(table: pa.Table, directory: Path, compression: str) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, directory / "all.parquet", compression=compression)
    return 1


def partitioned(table: pa.Table, directory: Path, compression: str) -> int:
    """pyarrow's own partitioned writer, into the same Hive partitions as the lake."""
    pq.write_to_dataset(
        table.combine_chunks(),
        directory,
        partition_cols=["dt", "product_category"],
        compression=compression,
    )
    return sum(1 for _ in directory.rglob("*.parquet"))


async def through_sink(
    writer: LakeWriter,
    work: list[Batch],
    compression: str,
    build: bool = False,
    markers: Markers = "off",
) -> int:
    sink = LakeSink(writer, compression=compression, markers=markers)
    for b in work:
        if build and isinstance(b.scored, ScoredBatch):
            b.scored.table  # noqa: B018 - what the pipeline does once per batch
        await sink.write(b)
    await sink.close()
    return sink.files_written


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--batch", type=int, default=BatchSettings().max_events, help="the pipeline's default"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compression", default="zstd")
    parser.add_argument("--s3", action="store_true", help="also write to SeaweedFS")
    parser.add_argument("--profile", action="store_true", help="profile the local sink run")
    args = parser.parse_args()

    events = make_events(args.rows)
    comp = args.compression

    def fresh(as_rows: bool = False) -> list[Batch]:
        return batches(scored_batches(events, args.batch), as_rows=as_rows)

    built = fresh()
    table = pa.concat_tables([b.scored.table for b in built if isinstance(b.scored, ScoredBatch)])
    n = table.num_rows
    scratch = Path(tempfile.mkdtemp(prefix="lake-bench-"))

    def local(work: list[Batch], build: bool = False, markers: Markers = "off") -> int:
        target = scratch / f"local-{time.monotonic_ns()}"
        return asyncio.run(through_sink(LocalLakeWriter(target), work, comp, build, markers))

    # Each path: (prepare its input untimed, then the timed run of that input).
    paths: dict[str, tuple[Callable[[], list[Batch]], Callable[[list[Batch]], int]]] = {
        "pq.write_table (ceiling)": (list, lambda _: ceiling(table, scratch / "raw", comp)),
        "pq.write_to_dataset (same partitions)": (
            list,
            lambda _: partitioned(table, scratch / f"ds-{time.monotonic_ns()}", comp),
        ),
        "lake sink -> local dir": (lambda: built, local),
        "  with pending markers": (lambda: built, lambda w: local(w, markers="trust")),
        "  incl. building the table": (fresh, lambda w: local(w, build=True)),
        "  from ScoredReview rows": (lambda: fresh(as_rows=True), local),
    }
    results: dict[str, list[Timing]] = {name: [] for name in paths}
    try:
        for _ in range(args.repeats):  # interleaved: every path sees the same machine load
            for name, (prepare, run) in paths.items():
                work = prepare()
                results[name].append(timed(lambda: run(work)))  # noqa: B023 - called at once
        if args.s3:
            results["lake sink -> S3 (SeaweedFS)"] = _s3(built, comp, args.repeats)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            local(built)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    best = {name: min(runs) for name, runs in results.items()}
    cpu = {name: min(r[1] for r in runs) for name, runs in results.items()}
    base, base_cpu = best["pq.write_table (ceiling)"][0], cpu["pq.write_table (ceiling)"]
    print(f"{n:,} scored reviews, batches of {args.batch}, {comp}, best of {args.repeats}")
    print(f"{'path':38} {'rows/s':>10} {'files':>6} {'ratio (wall)':>13} {'ratio (CPU)':>12}")
    for name, (wall, _cpu, files) in best.items():
        ratio_cpu = base_cpu / cpu[name] if cpu[name] > 0 else float("nan")
        print(f"{name:38} {n / wall:10,.0f} {files:6d} {base / wall:13.3f} {ratio_cpu:12.3f}")
    # A writer's wall time is at least its CPU time over the cores: what bounds its ratio here.
    cores = len(os.sched_getaffinity(0))
    for name in ("pq.write_to_dataset (same partitions)", "lake sink -> local dir"):
        print(
            f"{name.strip()}: at most {base * cores / cpu[name]:.3f} of the ceiling on "
            f"{cores} cores (its CPU time per row over the cores, each fully busy)"
        )


def _s3(work: list[Batch], compression: str, repeats: int) -> list[Timing]:
    from sinks.s3 import S3LakeWriter, s3_session
    from tests.servers.seaweedfs import SeaweedFS

    with SeaweedFS() as server:

        def once() -> int:
            bucket = server.create_bucket(f"bench-{time.monotonic_ns()}")
            session = s3_session(
                region=server.region,
                s3_endpoint_url=server.endpoint_url,
                access_key_id=server.access_key,
                secret_access_key=server.secret_key,
            )
            writer = S3LakeWriter(bucket, "lake", session=session)
            return asyncio.run(through_sink(writer, work, compression))

        return [timed(once) for _ in range(repeats)]


if __name__ == "__main__":
    main()
