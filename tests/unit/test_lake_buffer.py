"""The lake sink's buffers: few files, durable_seq that never runs ahead, exact replays."""

from __future__ import annotations

import asyncio
import errno
import random
import sys
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from sinks.lake import (
    COMPACT_AFTER_BATCHES,
    MARKER_SUFFIX,
    BufferLimits,
    LakeSink,
    LocalLakeWriter,
    Markers,
    marked_path,
    marker_prefix,
    parse_file_range,
    scored_parts,
)
from stream.events import (
    Batch,
    DeadLetter,
    Reason,
    ScoredReview,
    SourcePosition,
    scored_table,
)
from tests.lake_rows import T, latest_positions, scored_review

CATEGORIES = ("Dresses", "Knits", "Fine gauge")


def review(offset: int, category: str, partition: str = "0") -> ScoredReview:
    return scored_review(offset, category, review_id=f"r-{partition}-{offset}", partition=partition)


def dead(offset: int, partition: str = "0") -> DeadLetter:
    pos = SourcePosition("kafka", "t", partition, offset)
    return DeadLetter(f"bad-{partition}-{offset}".encode(), Reason.NOT_JSON, "x", pos, T)


def batch(seq: int, rows: Sequence[ScoredReview | DeadLetter]) -> Batch:
    scored = [r for r in rows if isinstance(r, ScoredReview)]
    dead_ = [r for r in rows if isinstance(r, DeadLetter)]
    return Batch(scored=scored, dead=dead_, positions=latest_positions(rows), seq=seq)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))


def review_ids(root: Path) -> list[str]:
    if not (root / "reviews").exists():
        return []
    table = ds.dataset(root / "reviews", format="parquet", partitioning="hive").to_table()
    return sorted(table.column("review_id").to_pylist())


async def test_small_batches_collect_into_one_file_per_directory(tmp_path: Path) -> None:
    sink = LakeSink(LocalLakeWriter(tmp_path))
    for seq in range(10):
        await sink.write(batch(seq, [review(seq * 3 + i, CATEGORIES[i]) for i in range(3)]))
    assert files(tmp_path) == []
    assert sink.durable_seq() == -1
    assert sink.buffered_rows == 30
    await sink.flush()
    assert sink.durable_seq() == 9
    assert [p.rsplit("/", 1)[1] for p in files(tmp_path)] == [
        "part-kafka-t-0-00000000000000000000-00000000000000000027.parquet",
        "part-kafka-t-0-00000000000000000002-00000000000000000029.parquet",
        "part-kafka-t-0-00000000000000000001-00000000000000000028.parquet",
    ]
    assert review_ids(tmp_path) == sorted(f"r-0-{i}" for i in range(30))
    assert (sink.files_written, sink.rows_written) == (3, 30)


async def test_a_full_directory_is_written_alone_and_holds_durable_seq_back(
    tmp_path: Path,
) -> None:
    sink = LakeSink(LocalLakeWriter(tmp_path), limits=BufferLimits(max_rows=4))
    await sink.write(batch(0, [review(0, "Knits")]))  # stays buffered
    for seq in range(1, 5):
        await sink.write(batch(seq, [review(seq, "Dresses")]))
    # Dresses reached 4 rows and was written; Knits still holds batch 0.
    assert [p.split("/")[2] for p in files(tmp_path)] == ["product_category=Dresses"]
    assert sink.durable_seq() == -1
    await sink.write(batch(5, [review(5, "Dresses")]))
    assert sink.durable_seq() == -1
    await sink.flush()
    assert sink.durable_seq() == 5
    await sink.write(batch(6, []))  # an empty batch is durable at once
    assert sink.durable_seq() == 6


async def test_old_buffers_are_written_when_their_age_runs_out(tmp_path: Path) -> None:
    clock = Clock()
    sink = LakeSink(LocalLakeWriter(tmp_path), limits=BufferLimits(max_age_s=60), clock=clock)
    await sink.write(batch(0, [review(0, "Knits")]))
    clock.now = 30
    await sink.write(batch(1, [review(1, "Dresses")]))
    clock.now = 60
    await sink.write(batch(2, [review(2, "Dresses")]))
    assert [p.split("/")[2] for p in files(tmp_path)] == ["product_category=Knits"]
    assert sink.durable_seq() == 0
    clock.now = 95
    await sink.write(batch(3, []))
    assert len(files(tmp_path)) == 2
    assert sink.durable_seq() == 3


async def test_byte_limits_per_directory_and_in_total(tmp_path: Path) -> None:
    one = LakeSink(LocalLakeWriter(tmp_path / "one"), limits=BufferLimits(max_bytes=2_000))
    for seq in range(40):
        await one.write(batch(seq, [review(seq, "Dresses")]))
    assert one.files_written >= 2
    assert one.buffered_bytes < 2_000
    total = LakeSink(
        LocalLakeWriter(tmp_path / "total"),
        limits=BufferLimits(max_bytes=10**9, max_total_bytes=3_000),
    )
    for seq in range(40):
        await total.write(batch(seq, [review(seq, CATEGORIES[seq % 3])]))
        assert total.buffered_bytes <= 3_000
    assert total.files_written >= 1


async def test_a_sparse_directory_does_not_keep_every_batch_alive(tmp_path: Path) -> None:
    """A part is a slice of its batch's grouped rows; a directory that gets one row a batch
    (Knits) kept each whole batch in memory until it was written, past every limit (on the
    old code 200 batches, about 15 MB, for 200 buffered rows). Its slices are copied once
    they are COMPACT_AFTER_BATCHES batches old, so the batches go."""
    limits = BufferLimits(max_rows=2_000, max_total_bytes=2**20)
    sink = LakeSink(LocalLakeWriter(tmp_path), limits=limits)
    rows = [review(i, "Dresses") for i in range(499)] + [review(499, "Knits")]
    one_batch = scored_table(rows).nbytes
    held: list[int] = []
    base = pa.total_allocated_bytes()
    for seq in range(200):
        rows = [review(seq * 500 + i, "Dresses") for i in range(499)]
        rows.append(review(seq * 500 + 499, "Knits"))
        await sink.write(batch(seq, rows))
        held.append(pa.total_allocated_bytes() - base)
    assert 200 <= sink.buffered_rows < 200 + 2_000  # every Knits row, a few Dresses rows
    # the buffered rows (Knits, and Dresses until 2,000: about 5 batches' worth) plus the
    # batches of the last COMPACT_AFTER_BATCHES, never all 200
    assert COMPACT_AFTER_BATCHES + 5 < 20
    assert max(held) < 20 * one_batch
    await sink.close()
    assert sink.durable_seq() == 199
    [knits] = [p for p in files(tmp_path) if "Knits" in p]
    offsets = pq.read_table(tmp_path / knits).column("source_offset").to_pylist()
    assert [int(o) for o in offsets] == [seq * 500 + 499 for seq in range(200)]  # once, in order
    assert len(review_ids(tmp_path)) == 200 * 500


async def test_a_copy_that_fails_leaves_the_buffer_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compaction copies a buffer's old slices; when a copy fails (memory), the batch's write
    fails (the run ends, nothing is committed past it) and the buffer still holds every row:
    on the old code the buffer had been emptied first, so these rows were gone from it."""
    sink = LakeSink(LocalLakeWriter(tmp_path))

    def rows(seq: int) -> list[ScoredReview | DeadLetter]:
        return [review(seq * 3 + i, CATEGORIES[i]) for i in range(3)]

    for seq in range(COMPACT_AFTER_BATCHES):
        await sink.write(batch(seq, rows(seq)))

    def no_memory(batches: object) -> pa.RecordBatch:
        raise MemoryError

    with monkeypatch.context() as patch:
        patch.setattr(pa, "concat_batches", no_memory)  # the module sinks.lake copies with
        with pytest.raises(MemoryError):
            await sink.write(batch(COMPACT_AFTER_BATCHES, rows(COMPACT_AFTER_BATCHES)))
    assert sink.buffered_rows == 3 * (COMPACT_AFTER_BATCHES + 1)
    assert sink.durable_seq() == -1
    await sink.flush()
    expected = sorted(f"r-0-{i}" for i in range(3 * (COMPACT_AFTER_BATCHES + 1)))
    assert review_ids(tmp_path) == expected


async def test_a_directory_is_forgotten_once_its_rows_are_committed(tmp_path: Path) -> None:
    """The sink keeps a high-water mark per directory and source partition to skip rows a
    replay brings again; once a commit covers a directory's rows the source never brings them
    again, so the mark goes. It used to stay: a producer sending a new category a review grew
    it by one entry a review (50 here; on the old code len(_high) == 50)."""
    key = ("kafka", "t", "0")
    sink = LakeSink(LocalLakeWriter(tmp_path), limits=BufferLimits(max_rows=1))
    for seq in range(50):
        await sink.write(batch(seq, [review(seq, f"category {seq}")]))  # written at once
        await sink.committed({key: SourcePosition(*key, seq)})
    assert (len(sink._high), len(sink._mine)) == (0, 0)
    # rows past the commit keep their mark: an in-process rewind replays them exactly once
    await sink.write(batch(50, [review(50, "category 0"), review(51, "category 50")]))
    await sink.committed({key: SourcePosition(*key, 50)})
    assert [d.rpartition("/")[2] for d, _ in sink._high] == ["product_category=category%2050"]
    await sink.rewind(SourcePosition(*key, 51))
    await sink.write(batch(51, [review(51, "category 50"), review(52, "category 50")]))
    await sink.close()
    assert review_ids(tmp_path) == sorted(f"r-0-{i}" for i in range(53))


def test_compacting_keeps_each_source_partitions_rows_in_order() -> None:
    """Runs of slices are copied in place: a part that owns its rows (a batch of one
    directory, or what a replay filtered) stays between them, and so does the order."""
    from sinks.lake import _Buffer

    buffer = _Buffer(opened=0.0)
    for seq, offsets in enumerate([[0, 1, 2], [3, 4], [5], [6, 7, 8, 9]]):
        mixed = [review(100 + seq, "Dresses"), *[review(o, "Knits", str(o % 2)) for o in offsets]]
        whole = seq == 2  # batch 2 has no other directory: its part is the whole batch
        for part in scored_parts(mixed[1:] if whole else mixed):
            if "Knits" in part.directory:
                buffer.add(seq, part)
    before = [(p.key, p.first, p.last, p.is_slice) for _, p in buffer.entries]
    assert [s for *_, s in before] == [True, True, True, True, False, True, True]
    rows, first_seq = buffer.rows, buffer.first_seq
    buffer.compact()
    after = [(seq, p.key[2], p.first, p.last, p.is_slice) for seq, p in buffer.entries]
    assert after == [
        (0, "0", 0, 8, False),  # partition 0: batches 0, 1 and 3, one run, one copy
        (0, "1", 1, 3, False),
        (2, "1", 5, 5, False),  # the whole batch 2: kept as it was, between the copies
        (3, "1", 7, 9, False),
    ]
    assert (buffer.rows, buffer.first_seq, buffer.slice_seq) == (rows, first_seq, sys.maxsize)
    by_partition = {
        key: [int(o) for _, p in buffer.entries if p.key[2] == key for o in _offsets(p.table)]
        for key in ("0", "1")
    }
    assert by_partition == {"0": [0, 2, 4, 6, 8], "1": [1, 3, 5, 7, 9]}


def _offsets(rows: pa.RecordBatch) -> list[str]:
    return [str(o) for o in rows.column("source_offset").to_pylist()]


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_rows"):
        BufferLimits(max_rows=0)
    with pytest.raises(ValueError, match="max_age_s"):
        BufferLimits(max_age_s=-1)


class FlakyWriter(LocalLakeWriter):
    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures

    async def put(self, path: str, data: bytes) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("store unavailable")
        await super().put(path, data)


async def test_a_failed_write_keeps_the_rows_buffered(tmp_path: Path) -> None:
    sink = LakeSink(FlakyWriter(tmp_path, failures=1))
    await sink.write(batch(0, [review(0, "Dresses"), review(1, "Knits")]))
    with pytest.raises(ConnectionError):
        await sink.flush()
    assert sink.durable_seq() == -1
    await sink.write(batch(1, [review(2, "Dresses")]))
    await sink.flush()
    assert sink.durable_seq() == 1
    assert review_ids(tmp_path) == ["r-0-0", "r-0-1", "r-0-2"]


async def test_an_in_process_rewind_keeps_its_own_rows_and_skips_them_on_replay(
    tmp_path: Path,
) -> None:
    sink = LakeSink(LocalLakeWriter(tmp_path), limits=BufferLimits(max_rows=3))
    rows = [review(i, CATEGORIES[i % 2]) for i in range(8)]
    for seq, i in enumerate(range(0, 8, 2)):
        await sink.write(batch(seq, rows[i : i + 2]))
    # A rebalance hands partition 0 back at offset 2: rows from 2 on come again.
    assert await sink.rewind(SourcePosition("kafka", "t", "0", 2)) == 0
    for seq, i in enumerate(range(2, 8, 3), start=10):
        await sink.write(batch(seq, rows[i : i + 3]))
    await sink.flush()
    assert review_ids(tmp_path) == sorted(f"r-0-{i}" for i in range(8))


def _simulate(seed: int, root: Path, markers: Markers = "off") -> None:
    """Write a random stream through a sink, commit what it reports durable, crash at a random
    point (buffers lost), restart, rewind to the commit and replay with other cuts. With
    markers, the first sink hears of most commits (a crash may come before it deletes a
    committed file's marker), and once the replay is committed no marker is left."""
    import asyncio

    rng = random.Random(seed)
    partitions = ("0", "1")
    records: dict[str, list[ScoredReview | DeadLetter]] = {
        p: [
            dead(i, p) if rng.random() < 0.1 else review(i, rng.choice(CATEGORIES), p)
            for i in range(rng.randint(20, 60))
        ]
        for p in partitions
    }

    def cut(start: dict[str, int]) -> list[list[ScoredReview | DeadLetter]]:
        out: list[list[ScoredReview | DeadLetter]] = []
        pos = dict(start)
        while any(pos[p] < len(records[p]) for p in partitions):
            rows: list[ScoredReview | DeadLetter] = []
            for p in partitions:
                n = rng.randint(0, 6)
                rows += records[p][pos[p] : pos[p] + n]
                pos[p] += n
            out.append(rows)
        return out

    limits = BufferLimits(max_rows=rng.randint(2, 12), max_concurrent_puts=rng.randint(1, 3))

    listed: list[str] = []

    class Listing(LocalLakeWriter):
        async def list_files(self, prefix: str, suffix: str = ".parquet") -> list[str]:
            listed.append(prefix)
            return await super().list_files(prefix, suffix)

    async def run() -> None:
        committed = {p: -1 for p in partitions}
        first = LakeSink(LocalLakeWriter(root), limits=limits, markers=markers)
        batches = [batch(seq, rows) for seq, rows in enumerate(cut({p: 0 for p in partitions}))]
        crash_after = rng.randrange(len(batches))
        pending: list[Batch] = []
        for b in batches[: crash_after + 1]:
            await first.write(b)
            pending.append(b)
            while pending and pending[0].seq <= first.durable_seq():
                done = pending.pop(0)
                for key, pos in done.positions.items():
                    committed[key[2]] = max(committed[key[2]], pos.offset)
                if rng.random() < 0.7:
                    await first.committed(done.positions)
        # crash: first's buffers are lost; a new process resumes at the commits
        second = LakeSink(Listing(root), limits=limits, markers=markers)
        restarts = [SourcePosition("kafka", "t", p, committed[p] + 1) for p in partitions]
        if seed % 2:  # as a Kafka generation: every partition at once
            await second.rewind_many(restarts)
        else:  # as Kinesis shards: one after the other
            for position in restarts:
                await second.rewind(position)
        start = {p: committed[p] + 1 for p in partitions}
        for seq, rows in enumerate(cut(start)):
            await second.write(batch(seq, rows))
        await second.close()
        if markers == "trust":  # the markers of the two partitions, nothing else
            assert sorted(listed) == sorted(marker_prefix(("kafka", "t", p)) for p in partitions)
        ends = [SourcePosition("kafka", "t", p, len(records[p]) - 1) for p in partitions]
        await second.committed({e.key: e for e in ends})

    asyncio.run(run())
    assert not list(root.rglob(f"*{MARKER_SUFFIX}")), f"seed {seed}: markers left"
    expected = sorted(
        r.event.review_id for p in partitions for r in records[p] if isinstance(r, ScoredReview)
    )
    assert review_ids(root) == expected, f"seed {seed}"
    dlq = ds.dataset(root / "dlq", format="parquet", partitioning="hive").to_table()
    raw = sorted(dlq.column("raw").to_pylist())
    assert raw == sorted(r.raw for p in partitions for r in records[p] if isinstance(r, DeadLetter))
    for path in files(root):
        parsed = parse_file_range(path.rsplit("/", 1)[1])
        assert parsed is not None and parsed[2] is not None and parsed[1] <= parsed[2]


@pytest.mark.parametrize("markers", ["off", "write", "trust"])
@pytest.mark.parametrize("seed", range(40))
def test_a_crash_and_replay_leaves_every_record_exactly_once(
    seed: int, markers: Markers, tmp_path: Path
) -> None:
    _simulate(seed, tmp_path, markers)


def test_a_buffer_keeps_its_lowest_batch_seq_as_parts_come_and_go() -> None:
    import pyarrow as pa

    from sinks.lake import LakePart, _Buffer

    def part(key: str, first: int) -> LakePart:
        rows = pa.record_batch({"source_offset": [str(first), str(first + 1)]})
        return LakePart("dt=x", ("kafka", "reviews", key), first, first + 1, rows, 10)

    buffer = _Buffer(opened=0.0)
    buffer.add(5, part("0", 100))
    buffer.add(3, part("1", 40))  # a part put back after a failed write comes first
    buffer.add(7, part("0", 102))
    assert (buffer.first_seq, buffer.rows, buffer.nbytes) == (3, 6, 30)
    buffer.drop_keys([("kafka", "reviews", "1")])
    assert (buffer.first_seq, buffer.rows, [s for s, _ in buffer.entries]) == (5, 4, [5, 7])
    buffer.drop_below(("kafka", "reviews", "0"), 102)  # a rewind to offset 102
    assert (buffer.first_seq, [s for s, _ in buffer.entries]) == (7, [7])


async def test_a_file_whose_process_died_after_its_marker_is_a_leftover(tmp_path: Path) -> None:
    """The marker goes before its file: a process that dies in between leaves a marker without
    a file, and a rewind from the markers treats it as a leftover. The replay then stores every
    review once, and once it is committed no marker is left."""

    class DiesAtTheThirdFile(LocalLakeWriter):
        files = 0

        async def put(self, path: str, data: bytes) -> None:
            if not path.endswith(MARKER_SUFFIX):
                self.files += 1
                if self.files == 3:
                    raise RuntimeError("killed")
            await super().put(path, data)

    rows = [review(i, CATEGORIES[i % 3]) for i in range(30)]
    key = ("kafka", "t", "0")
    first = LakeSink(
        DiesAtTheThirdFile(tmp_path),
        limits=BufferLimits(max_rows=4, max_concurrent_puts=1),
        markers="trust",
    )
    with pytest.raises(RuntimeError, match="killed"):
        for seq, start in enumerate(range(0, 30, 5)):
            await first.write(batch(seq, rows[start : start + 5]))
    stored = set(files(tmp_path))
    marked = {
        marked_path(key, p.relative_to(tmp_path).as_posix())
        for p in tmp_path.rglob(f"*{MARKER_SUFFIX}")
    }
    assert len(stored) == 2 and stored < marked and len(marked - stored) == 1

    second = LakeSink(LocalLakeWriter(tmp_path), markers="trust")
    assert await second.rewind(SourcePosition(*key, 0)) == 3  # nothing was committed
    assert files(tmp_path) == [] and not list(tmp_path.rglob(f"*{MARKER_SUFFIX}"))
    for seq, start in enumerate(range(0, 30, 5)):
        await second.write(batch(seq, rows[start : start + 5]))
    await second.close()
    await second.committed({key: SourcePosition(*key, 29)})
    assert review_ids(tmp_path) == sorted(r.event.review_id for r in rows)
    assert not list(tmp_path.rglob(f"*{MARKER_SUFFIX}"))


async def test_a_commit_deletes_the_markers_of_wholly_committed_files_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    class RefusesDeletes(LocalLakeWriter):
        refuse = False
        hang = False

        async def delete_files(self, paths: Sequence[str]) -> None:
            if self.hang:  # a store retrying an outage
                await asyncio.Event().wait()
            if self.refuse:
                raise OSError(errno.EROFS, "read-only file system")
            await super().delete_files(paths)

    key = ("kafka", "t", "0")
    writer = RefusesDeletes(tmp_path)
    sink = LakeSink(writer, limits=BufferLimits(max_rows=3), markers="write")
    for seq in range(4):  # one category: files of offsets 0-2, 3-5, 6-8, then 9-11 at close
        await sink.write(batch(seq, [review(i, "Knits") for i in range(seq * 3, seq * 3 + 3)]))
    await sink.close()

    def marked_ranges() -> list[tuple[int, int | None]]:
        out = []
        for p in sorted(tmp_path.rglob(f"*{MARKER_SUFFIX}")):
            parsed = parse_file_range(p.name.removesuffix(MARKER_SUFFIX))
            assert parsed is not None
            out.append(parsed[1:])
        return out

    assert marked_ranges() == [(0, 2), (3, 5), (6, 8), (9, 11)]
    await sink.committed({key: SourcePosition(*key, 7)})  # 6-8 is not all committed yet
    assert marked_ranges() == [(6, 8), (9, 11)]

    writer.hang = True
    monkeypatch.setattr("sinks.lake.MARKER_DELETE_TIMEOUT_S", 0.05)
    await sink.committed({key: SourcePosition(*key, 8)})  # given up on, not waited for
    assert "markers failed" in caplog.text
    writer.hang, writer.refuse = False, True
    caplog.clear()
    await sink.committed({key: SourcePosition(*key, 11)})  # logged, not raised
    assert "markers failed" in caplog.text
    assert marked_ranges() == [(6, 8), (9, 11)]
    # the next rewind deletes the markers of committed files it finds
    assert (
        await LakeSink(LocalLakeWriter(tmp_path), markers="trust").rewind(SourcePosition(*key, 12))
        == 0
    )
    assert marked_ranges() == []
    assert len(files(tmp_path)) == 4
