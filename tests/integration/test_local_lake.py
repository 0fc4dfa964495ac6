"""The local lake against a real file system and real processes: a SIGKILL in the middle of a
flush leaves nothing a ``*.parquet`` glob reads (and the next writer cleans it up), and a disk
that turns read-only or fills up is waited out (a tmpfs in a private mount namespace, remounted
read-only or filled; skipped where the test may not mount)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from sinks.lake import LakeSink, LocalLakeWriter
from stream.events import Batch, ReviewEvent, ScoredReview, SourcePosition

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
T = datetime(2026, 3, 4, 12, tzinfo=UTC)

# Shared by the child scripts: a review and a batch of them.
PRELUDE = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    from datetime import UTC, datetime
    from pathlib import Path
    from sinks.lake import BufferLimits, LakeSink, LocalLakeWriter
    from stream.retry import Backoff
    from stream.events import Batch, ReviewEvent, ScoredReview, SourcePosition

    T = datetime(2026, 3, 4, 12, tzinfo=UTC)

    def batch(seq, first, n, category):
        rows = []
        for i in range(first, first + n):
            ev = ReviewEvent(review_id=f"r-{i}", product_id="p", product_category=category,
                             review_text="ok", channel="web", event_time=T)
            pos = SourcePosition("kafka", "t", "0", i)
            rows.append(ScoredReview(ev, 1, 0.1, 0.2, 0.7, "m", "1", T, 2.0, pos))
        return Batch(scored=rows, dead=[], positions={rows[-1].position.key: rows[-1].position},
                     seq=seq)
    """
)


def child(script: str, *prefix: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [*prefix, sys.executable, "-c", PRELUDE + textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def glob_count(root: Path) -> int:
    con = duckdb.connect()
    try:
        glob = f"{root}/**/*.parquet"
        rows = con.execute("SELECT count(*) FROM read_parquet(?)", [glob]).fetchall()
    finally:
        con.close()
    return int(rows[0][0])


def review(i: int) -> ScoredReview:
    ev = ReviewEvent(
        review_id=f"r-{i}",
        product_id="p",
        product_category="Knits",
        review_text="ok",
        channel="web",
        event_time=T,
    )
    return ScoredReview(ev, 1, 0.1, 0.2, 0.7, "m", "1", T, 2.0, SourcePosition("k", "t", "0", i))


async def test_a_sigkill_mid_flush_leaves_nothing_a_glob_reads(tmp_path: Path) -> None:
    # The child writes one file, then is held inside the second file's fsync (temp file
    # written, not yet renamed) and killed there.
    proc = child(
        f"""
        real_fsync = os.fsync
        calls = []
        def held_fsync(fd):
            real_fsync(fd)
            calls.append(fd)
            if len(calls) == 2:
                print("flushing", flush=True)
                time.sleep(600)
        os.fsync = held_fsync
        async def main():
            sink = LakeSink(LocalLakeWriter(Path({str(tmp_path)!r})), limits=BufferLimits(max_rows=3))
            await sink.write(batch(0, 0, 3, "Dresses"))
            await sink.write(batch(1, 3, 3, "Knits"))
        asyncio.run(main())
        """
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "flushing", proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    leftovers = list(tmp_path.rglob(".tmp-*"))
    assert [p.name.startswith(f".tmp-{proc.pid}-") for p in leftovers] == [True]
    assert leftovers[0].stat().st_size > 0
    assert glob_count(tmp_path) == 3  # only the file that was renamed into place
    # The next writer removes it before it does anything else.
    writer = LocalLakeWriter(tmp_path)
    sink = LakeSink(writer)
    assert await sink.rewind(SourcePosition("kafka", "t", "0", 3)) == 0
    assert writer.stale_removed == 1
    assert not list(tmp_path.rglob(".tmp-*"))
    assert glob_count(tmp_path) == 3


@pytest.fixture
def live_process() -> Iterator[int]:
    with subprocess.Popen(["sleep", "60"]) as proc:
        try:
            yield proc.pid
        finally:
            proc.kill()


async def test_start_up_keeps_a_live_writers_temporary_files(
    tmp_path: Path, live_process: int
) -> None:
    directory = tmp_path / "reviews" / "dt=2026-03-04" / "product_category=Knits"
    directory.mkdir(parents=True)
    live = directory / f".tmp-{live_process}-abc.partial"
    older_format = directory / ".tmp-k2j4h1x9.parquet"  # before pids were in names
    for p in (live, older_format):
        p.write_bytes(b"PAR1 half")
    writer = LocalLakeWriter(tmp_path)
    await writer.put("reviews/dt=2026-03-04/product_category=Knits/x.parquet", b"x")
    assert writer.stale_removed == 1
    assert live.exists() and not older_format.exists()
    assert await writer.list_files("reviews") == [
        "reviews/dt=2026-03-04/product_category=Knits/x.parquet"
    ]


async def test_a_permanent_disk_error_fails_at_once(tmp_path: Path) -> None:
    (tmp_path / "reviews").write_text("a file where the lake wants a directory")
    writer = LocalLakeWriter(tmp_path)
    sink = LakeSink(writer)
    await sink.write(Batch(scored=[review(0)], dead=[], positions={}, seq=0))
    with pytest.raises(OSError) as caught:
        await sink.flush()
    assert caught.value.errno in (errno.ENOTDIR, errno.EEXIST)
    assert writer.retries == 0
    assert sink.buffered_rows == 1  # kept for a retry of the batch


def _can_mount() -> bool:
    if shutil.which("unshare") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "none", "/mnt"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount(), reason="needs root and mount namespaces (unshare -m)")
def test_a_read_only_and_a_full_disk_are_waited_out(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    lake.mkdir()
    script = f"""
    import errno, logging, subprocess
    root = Path({str(lake)!r})
    def mount(*opts):
        subprocess.run(["mount", *opts], check=True)
    seen = []
    class Seen(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())
    logging.getLogger("sinks.lake").addHandler(Seen())
    async def wait_for_retries(writer, n):
        while writer.retries < n:
            await asyncio.sleep(0.01)
    async def main():
        mount("-t", "tmpfs", "-o", "size=1m", "lake", str(root))
        writer = LocalLakeWriter(root, backoff=Backoff(initial_s=0.02, max_s=0.1))
        sink = LakeSink(writer)
        out = {{}}
        # 1. read-only: the flush waits, then lands once the disk is writable again
        mount("-o", "remount,ro", str(root))
        await sink.write(batch(0, 0, 5, "Dresses"))
        flush = asyncio.ensure_future(sink.flush())
        await wait_for_retries(writer, 3)
        out["waiting_while_read_only"] = not flush.done()
        mount("-o", "remount,rw", str(root))
        await flush
        out["after_read_only"] = (writer.retries, sink.rows_written)
        # 2. full: the same, freeing space ends the wait
        filler = root / "filler"
        with open(filler, "wb") as fh:
            try:
                while True:
                    fh.write(b"x" * 65536)
                    fh.flush()
            except OSError as err:
                out["filled"] = err.errno == errno.ENOSPC
        before = writer.retries
        await sink.write(batch(1, 5, 2000, "Knits"))
        flush = asyncio.ensure_future(sink.flush())
        await wait_for_retries(writer, before + 3)
        out["waiting_while_full"] = not flush.done()
        filler.unlink()
        await flush
        out["after_full"] = (writer.retries - before, sink.rows_written)
        out["leftover_temps"] = [p.name for p in root.rglob(".tmp-*")]
        # 3. stop() ends the waiting: the pending flush raises, the rows stay buffered
        mount("-o", "remount,ro", str(root))
        await sink.write(batch(2, 2005, 1, "Knits"))
        flush = asyncio.ensure_future(sink.flush())
        await wait_for_retries(writer, writer.retries + 1)
        writer.stop()
        try:
            await flush
        except OSError as err:
            out["stopped_with"] = errno.errorcode[err.errno]
        out["still_buffered"] = sink.buffered_rows
        mount("-o", "remount,rw", str(root))
        out["read_only_logged"] = any("Read-only file system" in m for m in seen)
        out["full_logged"] = any("No space left" in m for m in seen)
        import pyarrow.dataset as ds
        out["ids"] = sorted(ds.dataset(root / "reviews", format="parquet").to_table()
                            .column("review_id").to_pylist(), key=lambda s: int(s[2:]))
        print(json.dumps(out))
    asyncio.run(main())
    """
    proc = child(script, "unshare", "-m", "--propagation", "private")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    out = json.loads(stdout.strip().splitlines()[-1])
    assert out["waiting_while_read_only"] is True
    retries, rows = out["after_read_only"]
    assert retries >= 3 and rows == 5
    assert out["filled"] is True
    assert out["waiting_while_full"] is True
    retries, rows = out["after_full"]
    assert retries >= 3 and rows == 2005
    assert out["leftover_temps"] == []
    assert out["stopped_with"] == "EROFS"
    assert out["still_buffered"] == 1
    assert out["read_only_logged"] and out["full_logged"]
    assert out["ids"] == [f"r-{i}" for i in range(2005)]


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores directory permissions"
)
async def test_an_unwritable_directory_is_waited_out(tmp_path: Path) -> None:
    from stream.retry import Backoff

    tmp_path.chmod(0o500)
    writer = LocalLakeWriter(tmp_path, backoff=Backoff(initial_s=0.02, max_s=0.05))
    sink = LakeSink(writer)
    await sink.write(Batch(scored=[review(0)], dead=[], positions={}, seq=0))
    flush = asyncio.ensure_future(sink.flush())
    for _ in range(3000):
        if writer.retries >= 3:
            break
        await asyncio.sleep(0.01)
    assert writer.retries >= 3 and not flush.done()
    tmp_path.chmod(0o700)
    await flush
    assert sink.rows_written == 1 and sink.durable_seq() == 0


async def test_a_second_writer_of_the_process_keeps_the_first_ones_fresh_temporary_file(
    tmp_path: Path,
) -> None:
    # Between mkstemp and its registration a file is on disk but not yet in flight: a writer
    # created meanwhile (the alerts table's, at the first alert) swept it away mid-write.
    directory = tmp_path / "reviews" / "dt=2026-03-04" / "product_category=Knits"
    directory.mkdir(parents=True)
    fresh = directory / f".tmp-{os.getpid()}-fresh.partial"
    reused = directory / f".tmp-{os.getpid()}-reused.partial"  # a dead process with our pid
    for p in (fresh, reused):
        p.write_bytes(b"PAR1 half")
    long_ago = time.time() - 3600 * 24 * 365
    os.utime(reused, (long_ago, long_ago))
    writer = LocalLakeWriter(tmp_path)
    await writer.put("alerts/x.jsonl", b"x")
    assert fresh.exists() and not reused.exists()
    assert writer.stale_removed == 1
