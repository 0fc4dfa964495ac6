"""Lake write throughput: rows/s through the lake sink into a local directory and into a real
S3-compatible server (SeaweedFS, started here), against pyarrow's raw ``pq.write_table`` of the
same rows as one table (the ceiling: no Python objects to convert, one file, no partitions).
All figures come from one run on one machine, so the ratios compare like with like.

    .venv/bin/python -m benchmarks.lake_write [--rows 100000] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sinks.lake import LakeSink, LakeWriter, LocalLakeWriter, merge_parts, scored_parts
from sinks.s3 import S3LakeWriter, s3_session
from stream.events import Batch, ReviewEvent, ScoredReview, SourcePosition
from stream.settings import DEFAULT_CATEGORIES
from tests.servers.seaweedfs import SeaweedFS

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


def make_rows(n: int) -> list[ScoredReview]:
    rows = []
    for i in range(n):
        ev = ReviewEvent(
            review_id=f"r-{i:08d}",
            product_id=f"p-{i % 997}",
            product_category=DEFAULT_CATEGORIES[i % len(DEFAULT_CATEGORIES)],
            review_text=" ".join(WORDS[(i + k) % len(WORDS)] for k in range(8 + i % 24)),
            channel="web",
            event_time=T0 + timedelta(seconds=i * 5),  # about 17,000 a day: a few days
            rating=i % 5 + 1,
        )
        rows.append(
            ScoredReview(
                ev, 1, 0.1, 0.2, 0.7, "model", "1", T0, 3.5, SourcePosition("kafka", "r", "0", i)
            )
        )
    return rows


def batches(rows: list[ScoredReview], size: int) -> list[Batch]:
    out = []
    for seq, start in enumerate(range(0, len(rows), size)):
        chunk = rows[start : start + size]
        out.append(Batch(chunk, [], {chunk[-1].position.key: chunk[-1].position}, seq=seq))
    return out


def best_of(repeats: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeats))


def ceiling(table: pa.Table, directory: Path) -> float:
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    pq.write_table(table, directory / "all.parquet", compression="zstd")
    return time.perf_counter() - started


async def through_sink(writer: LakeWriter, work: list[Batch]) -> tuple[float, int]:
    sink = LakeSink(writer)
    started = time.perf_counter()
    for b in work:
        await sink.write(b)
    await sink.close()
    return time.perf_counter() - started, sink.files_written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    rows = make_rows(args.rows)
    work = batches(rows, args.batch)
    # The same rows as one table, through the project's one encoder.
    table = pa.concat_tables([merge_parts([p]).table for p in scored_parts(rows)])
    n = table.num_rows
    scratch = Path(tempfile.mkdtemp(prefix="lake-bench-"))
    results: dict[str, tuple[float, int]] = {}
    try:
        results["pq.write_table (ceiling)"] = (
            best_of(args.repeats, lambda: ceiling(table, scratch / "raw")),
            1,
        )

        def encode_only() -> float:
            started = time.perf_counter()
            for b in work:
                scored_parts(b.scored)
            return time.perf_counter() - started

        results["encode to Arrow only"] = (best_of(args.repeats, encode_only), 0)

        def local() -> tuple[float, int]:
            target = scratch / f"local-{time.monotonic_ns()}"
            return asyncio.run(through_sink(LocalLakeWriter(target), work))

        results["lake sink -> local dir"] = min(local() for _ in range(args.repeats))

        with SeaweedFS() as server:

            def s3() -> tuple[float, int]:
                bucket = server.create_bucket(f"bench-{time.monotonic_ns()}")
                session = s3_session(
                    region=server.region,
                    s3_endpoint_url=server.endpoint_url,
                    access_key_id=server.access_key,
                    secret_access_key=server.secret_key,
                )
                return asyncio.run(
                    through_sink(S3LakeWriter(bucket, "lake", session=session), work)
                )

            results["lake sink -> S3 (SeaweedFS)"] = min(s3() for _ in range(args.repeats))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    base = n / results["pq.write_table (ceiling)"][0]
    print(f"{n:,} scored reviews, batches of {args.batch}, zstd, best of {args.repeats}")
    print(f"{'path':32} {'rows/s':>12} {'files':>6} {'ratio to ceiling':>17}")
    for name, (seconds, files) in results.items():
        rate = n / seconds
        print(f"{name:32} {rate:12,.0f} {files:6d} {rate / base:17.3f}")


if __name__ == "__main__":
    main()
