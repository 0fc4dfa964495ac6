"""Rewind time against the size of the lake: a listing of the lake (``markers`` off or
``write``) against the rewound partitions' pending markers (``trust``), side by side in one run.

A Kafka generation rewinds every partition it is given before it reads a record, so this is
time a rebalance waits. The lake holds ``--files`` committed files over 108 directories (six
days by 18 categories) and 8 source partitions, plus 2 uncommitted files per partition with
their markers, which each rewind deletes (they are put back, untimed, before every timing).
The files are empty and named as the sink names them: a rewind reads names, never contents.
(A local writer's first call also walks the tables once, for temporary files a dead process
left; that is done before the timing.)
Both ways must delete the same 16 files; the two take turns, so a busy machine slows both.
With ``--s3`` the same runs against a real S3-compatible server (SeaweedFS, started here),
where a listing pages through the S3 API.

    .venv/bin/python benchmarks/rewind.py [--files 1000 10000 50000] [--repeats 3] [--s3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file (``make benchmarks``): use this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sinks.lake import (
    MARKER_SUFFIX,
    MARKERS,
    LakeSink,
    LakeWriter,
    LocalLakeWriter,
    Markers,
    file_name,
    marker_path,
)
from stream.events import SourcePosition
from stream.settings import DEFAULT_CATEGORIES

PARTITIONS = 8
DIRECTORIES = [
    f"reviews/dt=2026-03-{day:02d}/product_category={category}"
    for day in range(1, 7)
    for category in DEFAULT_CATEGORIES
]
ROWS_PER_FILE = 10


def key(partition: int) -> tuple[str, str, str]:
    return ("kafka", "reviews", str(partition))


def committed_files(n: int) -> list[str]:
    """``n`` files, round-robin over partitions and directories, offsets rising per partition."""
    out = []
    for i in range(n):
        first = (i // PARTITIONS) * ROWS_PER_FILE
        name = file_name(key(i % PARTITIONS), first, first + ROWS_PER_FILE - 1)
        out.append(f"{DIRECTORIES[i % len(DIRECTORIES)]}/{name}")
    return out


def restarts(n: int) -> list[SourcePosition]:
    """Each partition's committed position: just past its last committed file."""
    per_partition = -(-n // PARTITIONS)
    return [SourcePosition(*key(p), per_partition * ROWS_PER_FILE) for p in range(PARTITIONS)]


def uncommitted(n: int) -> list[str]:
    """2 files per partition past its committed position, and their markers."""
    out = []
    for position in restarts(n):
        for j in range(2):
            first = position.offset + j * ROWS_PER_FILE
            name = file_name(position.key, first, first + ROWS_PER_FILE - 1)
            path = f"{DIRECTORIES[j]}/{name}"
            out += [path, marker_path(position.key, path)]
    return out


async def rewind(writer: LakeWriter, markers: Markers, n: int) -> tuple[float, int]:
    # A local writer's first call sweeps stale temporary files (a walk of the tables, once
    # per writer): done here, untimed, so that the timing is the rewind's alone.
    await writer.list_files(f"{MARKERS}/none/", MARKER_SUFFIX)
    sink = LakeSink(writer, markers=markers)
    started = time.perf_counter()
    deleted = await sink.rewind_many(restarts(n))
    return time.perf_counter() - started, deleted


def measure(
    make_writer: Callable[[], LakeWriter], put: Callable[[list[str]], None], n: int, repeats: int
) -> dict[str, float]:
    """Best seconds of each way, taking turns; both must delete the same 16 files."""
    best = {"listing (off, write)": float("inf"), "markers (trust)": float("inf")}
    ways: tuple[Markers, Markers] = ("write", "trust")
    for _ in range(repeats):
        for name, markers in zip(best, ways, strict=True):
            put(uncommitted(n))
            seconds, deleted = asyncio.run(rewind(make_writer(), markers, n))
            assert deleted == 2 * PARTITIONS, (name, deleted)
            best[name] = min(best[name], seconds)
    return best


def report(where: str, rows: list[tuple[int, dict[str, float]]]) -> None:
    print(f"rewind of {PARTITIONS} partitions, {where}, best of the runs (seconds)")
    print(f"{'files in the lake':>18} {'listing':>10} {'markers':>10} {'listing / markers':>18}")
    for n, best in rows:
        listing, marked = best["listing (off, write)"], best["markers (trust)"]
        print(f"{n:18,} {listing:10.4f} {marked:10.4f} {listing / marked:18.1f}")


def local(sizes: list[int], repeats: int) -> None:
    rows = []
    for n in sizes:
        root = Path(tempfile.mkdtemp(prefix="rewind-bench-"))
        try:

            def put(paths: list[str], root: Path = root) -> None:
                for path in paths:
                    target = root / path
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.touch()

            def writer(root: Path = root) -> LakeWriter:
                return LocalLakeWriter(root)

            put(committed_files(n))
            rows.append((n, measure(writer, put, n, repeats)))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    report("local directory", rows)


def s3(sizes: list[int], repeats: int) -> None:
    from sinks.s3 import S3LakeWriter, s3_session
    from tests.servers.seaweedfs import SeaweedFS

    rows = []
    with SeaweedFS() as server:
        session = s3_session(
            region=server.region,
            s3_endpoint_url=server.endpoint_url,
            access_key_id=server.access_key,
            secret_access_key=server.secret_key,
        )
        client: Any = session.client("s3")
        for n in sizes:
            bucket = server.create_bucket(f"rewind-{time.monotonic_ns()}")

            def put(paths: list[str], bucket: str = bucket) -> None:
                with ThreadPoolExecutor(16) as pool:
                    list(
                        pool.map(lambda p: client.put_object(Bucket=bucket, Key=f"lake/{p}"), paths)
                    )

            def writer(bucket: str = bucket) -> LakeWriter:
                return S3LakeWriter(bucket, "lake", session=session)

            put(committed_files(n))
            rows.append((n, measure(writer, put, n, repeats)))
    report("S3 (SeaweedFS on loopback)", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[1_000, 10_000, 50_000])
    parser.add_argument("--s3-files", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--s3", action="store_true", help="also against SeaweedFS")
    args = parser.parse_args()
    local(args.files, args.repeats)
    if args.s3:
        s3(args.s3_files, args.repeats)


if __name__ == "__main__":
    main()
