"""Lake write throughput: rows/s through the lake sink into a local directory (and, with
``--s3``, into a real S3-compatible server, SeaweedFS, started here), against pyarrow's raw
``pq.write_table`` of the same rows as one table with the same compression (the ceiling: one
file, no partitions, no buffering). All figures come from one run on one machine, so the
ratios compare like with like.

The sink gets what the pipeline gives it: batches of :class:`~stream.events.ScoredBatch`
(the scorer's output, columns), whose Arrow table the pipeline builds once and shares with the
monitors. "lake sink -> local dir" starts from built tables; "... incl. building the table"
builds each batch's table inside the timing; "... from ScoredReview rows" is the old path
(rows rebuilt into columns), kept for comparison.

    .venv/bin/python benchmarks/lake_write.py [--rows 100000] [--batch 500] [--s3] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
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

from sinks.lake import LakeSink, LakeWriter, LocalLakeWriter
from stream.events import (
    Batch,
    ReviewEvent,
    ScoredBatch,
    SourcePosition,
)
from stream.settings import DEFAULT_CATEGORIES

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


def best_of(repeats: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeats))


def ceiling(table: pa.Table, directory: Path, compression: str) -> float:
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    pq.write_table(table, directory / "all.parquet", compression=compression)
    return time.perf_counter() - started


async def through_sink(
    writer: LakeWriter, work: list[Batch], compression: str, build: bool = False
) -> tuple[float, int]:
    sink = LakeSink(writer, compression=compression)
    started = time.perf_counter()
    for b in work:
        if build and isinstance(b.scored, ScoredBatch):
            b.scored.table  # noqa: B018 - what the pipeline does once per batch
        await sink.write(b)
    await sink.close()
    return time.perf_counter() - started, sink.files_written


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
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
    results: dict[str, tuple[float, int]] = {}

    def local(work: list[Batch], build: bool = False) -> tuple[float, int]:
        target = scratch / f"local-{time.monotonic_ns()}"
        return asyncio.run(through_sink(LocalLakeWriter(target), work, comp, build))

    try:
        results["pq.write_table (ceiling)"] = (
            best_of(args.repeats, lambda: ceiling(table, scratch / "raw", comp)),
            1,
        )
        results["lake sink -> local dir"] = min(local(built) for _ in range(args.repeats))
        results["  incl. building the table"] = min(
            local(fresh(), build=True) for _ in range(args.repeats)
        )
        results["  from ScoredReview rows"] = min(
            local(fresh(as_rows=True)) for _ in range(args.repeats)
        )
        if args.s3:
            results["lake sink -> S3 (SeaweedFS)"] = _s3(built, comp, args.repeats)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            local(built)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    base = n / results["pq.write_table (ceiling)"][0]
    print(f"{n:,} scored reviews, batches of {args.batch}, {comp}, best of {args.repeats}")
    print(f"{'path':32} {'rows/s':>12} {'files':>6} {'ratio to ceiling':>17}")
    for name, (seconds, files) in results.items():
        rate = n / seconds
        print(f"{name:32} {rate:12,.0f} {files:6d} {rate / base:17.3f}")


def _s3(work: list[Batch], compression: str, repeats: int) -> tuple[float, int]:
    from sinks.s3 import S3LakeWriter, s3_session
    from tests.servers.seaweedfs import SeaweedFS

    with SeaweedFS() as server:

        def once() -> tuple[float, int]:
            bucket = server.create_bucket(f"bench-{time.monotonic_ns()}")
            session = s3_session(
                region=server.region,
                s3_endpoint_url=server.endpoint_url,
                access_key_id=server.access_key,
                secret_access_key=server.secret_key,
            )
            writer = S3LakeWriter(bucket, "lake", session=session)
            return asyncio.run(through_sink(writer, work, compression))

        return min(once() for _ in range(repeats))


if __name__ == "__main__":
    main()
