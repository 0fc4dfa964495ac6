"""The lake encoder: Hive paths, one stable schema, file names from source positions."""

from __future__ import annotations

import errno
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from sinks.lake import (
    BufferLimits,
    LakeSink,
    LocalLakeWriter,
    encode_alerts,
    encode_dead_letters,
    encode_scored,
    to_parquet_bytes,
)
from stream.events import (
    ALERT_SCHEMA,
    DEAD_LETTER_SCHEMA,
    SCORED_SCHEMA,
    Alert,
    Batch,
    DeadLetter,
    Reason,
    ReviewEvent,
    ScoredReview,
    Severity,
    SourcePosition,
)

T = datetime(2026, 3, 4, 23, 59, tzinfo=UTC)


def scored(i: int, category: str, day: int = 4, partition: str = "0") -> ScoredReview:
    ev = ReviewEvent(
        review_id=f"r-{i}",
        product_id="p-1",
        product_category=category,
        review_text="fine",
        channel="web",
        event_time=datetime(2026, 3, day, 12, tzinfo=UTC),
        rating=3 if i % 2 else None,
    )
    return ScoredReview(
        event=ev,
        sentiment=0,
        p_negative=0.2,
        p_neutral=0.5,
        p_positive=0.3,
        model_name="m",
        model_version="1",
        scored_at=T,
        endpoint_latency_ms=3.0,
        position=SourcePosition("kafka", "reviews", partition, 1000 + i),
    )


def test_scored_reviews_split_by_day_category_and_source_partition() -> None:
    rows = [
        scored(0, "Dresses"),
        scored(1, "Fine gauge"),
        scored(2, "Dresses", day=5),
        scored(3, "Dresses"),
        scored(4, "Dresses", partition="1"),
    ]
    files = {f.path: f.table for f in encode_scored(rows)}
    assert sorted(files) == [
        "reviews/dt=2026-03-04/product_category=Dresses/part-kafka-reviews-0-00000000000000001000-00000000000000001003.parquet",
        "reviews/dt=2026-03-04/product_category=Dresses/part-kafka-reviews-1-00000000000000001004-00000000000000001004.parquet",
        "reviews/dt=2026-03-04/product_category=Fine%20gauge/part-kafka-reviews-0-00000000000000001001-00000000000000001001.parquet",
        "reviews/dt=2026-03-05/product_category=Dresses/part-kafka-reviews-0-00000000000000001002-00000000000000001002.parquet",
    ]
    first = files[
        "reviews/dt=2026-03-04/product_category=Dresses/part-kafka-reviews-0-00000000000000001000-00000000000000001003.parquet"
    ]
    assert first.schema == SCORED_SCHEMA
    assert first.column("review_id").to_pylist() == ["r-0", "r-3"]
    assert first.column("rating").to_pylist() == [None, 3]
    assert first.column("source_offset").to_pylist() == ["1000", "1003"]


def test_every_table_has_the_one_schema_even_when_optional_fields_are_all_missing() -> None:
    only_nulls = encode_scored([scored(0, "Knits")])
    assert only_nulls[0].table.schema == SCORED_SCHEMA
    data = to_parquet_bytes(only_nulls[0].table)
    assert pq.read_table(io.BytesIO(data)).schema == SCORED_SCHEMA


def _codecs(data: bytes) -> dict[str, str]:
    group = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0)
    return {
        group.column(i).path_in_schema: group.column(i).compression
        for i in range(group.num_columns)
    }


def test_only_the_columns_a_codec_shrinks_are_compressed() -> None:
    table = encode_scored([scored(i, "Knits") for i in range(4)])[0].table
    codecs = _codecs(to_parquet_bytes(table))
    assert {c for c, codec in codecs.items() if codec == "ZSTD"} == {
        "review_id",
        "review_text",
        "event_time",
        "source_offset",
    }
    assert codecs["p_negative"] == codecs["product_category"] == "UNCOMPRESSED"
    assert _codecs(to_parquet_bytes(table, "snappy"))["review_text"] == "SNAPPY"
    assert set(_codecs(to_parquet_bytes(table, "none")).values()) == {"UNCOMPRESSED"}
    assert pq.read_table(io.BytesIO(to_parquet_bytes(table))).equals(table)


def test_dead_letters_and_alerts_encode_with_their_schemas() -> None:
    dead = [
        DeadLetter(b"\xff", Reason.BAD_UTF8, "bad", SourcePosition("r", "s", "0", 7), T),
        DeadLetter(b"{", Reason.NOT_JSON, "bad", SourcePosition("r", "s", "0", 9), T),
    ]
    files = encode_dead_letters(dead)
    assert sorted(f.path for f in files) == [
        "dlq/dt=2026-03-04/reason=bad_utf8/part-r-s-0-00000000000000000007-00000000000000000007.parquet",
        "dlq/dt=2026-03-04/reason=not_json/part-r-s-0-00000000000000000009-00000000000000000009.parquet",
    ]
    assert all(f.table.schema == DEAD_LETTER_SCHEMA for f in files)
    assert files[0].table.column("raw").to_pylist() == [b"\xff"]
    alert = Alert("id-1", "SentimentShift", "firing", Severity.CRITICAL, "Dresses", "s", T, T, T,
                  {"count": 3})  # fmt: skip
    [af] = encode_alerts([alert], SourcePosition("r", "s", "0", 7))
    assert af.table.schema == ALERT_SCHEMA
    assert af.table.column("evidence_json").to_pylist() == ['{"count": 3}']
    assert (
        af.path
        == "alerts/dt=2026-03-04/part-r-s-0-00000000000000000007-00000000000000000007.parquet"
    )


async def test_a_replayed_batch_overwrites_its_own_files(tmp_path: Path) -> None:
    sink = LakeSink(LocalLakeWriter(tmp_path))
    rows = [scored(i, "Dresses") for i in range(5)]
    batch = Batch(scored=rows, dead=[], positions={})
    await sink.write(batch)
    await sink.write(batch)  # a crash before the commit replays the same batch
    await sink.flush()
    table = ds.dataset(tmp_path / "reviews", format="parquet", partitioning="hive").to_table()
    assert sorted(table.column("review_id").to_pylist()) == [f"r-{i}" for i in range(5)]
    assert table.column("product_category").to_pylist() == ["Dresses"] * 5
    assert not list(tmp_path.rglob(".tmp-*"))


async def test_rewinding_a_partition_deletes_only_its_uncommitted_files(tmp_path: Path) -> None:
    before_crash = LakeSink(LocalLakeWriter(tmp_path), limits=BufferLimits(max_rows=1))
    first = Batch(scored=[scored(i, "Dresses") for i in range(3)], dead=[], positions={})
    later = Batch(scored=[scored(i, "Knits") for i in range(3, 6)], dead=[], positions={})
    other = Batch(scored=[scored(9, "Knits", partition="1")], dead=[], positions={})
    dead = DeadLetter(b"{", Reason.NOT_JSON, "x", SourcePosition("kafka", "reviews", "0", 1004), T)
    for b in (first, later, other, Batch(scored=[], dead=[dead], positions={})):
        await before_crash.write(b)
    # After a restart partition 0 resumes at offset 1003: files starting at 1003 and 1004 are
    # leftovers.
    sink = LakeSink(LocalLakeWriter(tmp_path))
    removed = await sink.rewind(SourcePosition("kafka", "reviews", "0", 1003))
    assert removed == 2
    names = sorted(p.name for p in tmp_path.rglob("*.parquet"))
    assert names == [
        "part-kafka-reviews-0-00000000000000001000-00000000000000001002.parquet",
        "part-kafka-reviews-1-00000000000000001009-00000000000000001009.parquet",
    ]


async def _crashed(root: Path) -> None:
    """Four partitions, a file for each of their offsets 1000-1005, nothing committed."""
    sink = LakeSink(LocalLakeWriter(root), limits=BufferLimits(max_rows=1))
    for p in range(4):
        for i in range(6):
            row = scored(i, ("Dresses", "Knits")[i % 2], partition=str(p))
            await sink.write(Batch(scored=[row], dead=[], positions={}))
    await sink.close()


#: partition p restarts at 1002 + p: its files from there on are leftovers (10 of 24)
RESTARTS = [SourcePosition("kafka", "reviews", str(p), 1002 + p) for p in range(4)]


async def test_partitions_rewound_together_list_the_lake_once(tmp_path: Path) -> None:
    """A Kafka generation rewinds all its partitions in one call: the rewound tables are
    listed once, not once per partition, and the same files go as with one rewind each."""

    listed: list[str] = []

    class CountingWriter(LocalLakeWriter):
        async def list_files(self, prefix: str, suffix: str = ".parquet") -> list[str]:
            listed.append(prefix)
            return await super().list_files(prefix, suffix)

    together, apart = tmp_path / "together", tmp_path / "apart"
    await _crashed(together)
    await _crashed(apart)
    one_call = LakeSink(CountingWriter(together))
    removed = await one_call.rewind_many(RESTARTS)
    assert listed == ["reviews", "dlq"]
    listed.clear()
    each = LakeSink(CountingWriter(apart))
    removed_each = [await each.rewind(position) for position in RESTARTS]
    assert len(listed) == 8
    assert removed == sum(removed_each) == 4 + 3 + 2 + 1
    names = {p.relative_to(together).as_posix() for p in together.rglob("*.parquet")}
    assert names == {p.relative_to(apart).as_posix() for p in apart.rglob("*.parquet")}
    assert len(names) == 24 - removed


async def test_a_rewind_that_fails_while_deleting_is_done_again_by_the_next_generation(
    tmp_path: Path,
) -> None:
    """The store refuses the deletion after the first file went: the rewind raises before it
    records any high-water mark, the generation fails before it reads a record (so commits
    nothing), and the next generation's rewind leaves the lake as one undisturbed rewind."""

    class FailsAfterOne(LocalLakeWriter):
        async def delete_files(self, paths: Sequence[str]) -> None:
            await super().delete_files(paths[:1])
            raise OSError(errno.EROFS, "read-only file system")

    failed, undisturbed = tmp_path / "failed", tmp_path / "undisturbed"
    await _crashed(failed)
    await _crashed(undisturbed)
    with pytest.raises(OSError, match="read-only"):
        await LakeSink(FailsAfterOne(failed)).rewind_many(RESTARTS)
    assert len(list(failed.rglob("*.parquet"))) == 23
    again = await LakeSink(LocalLakeWriter(failed)).rewind_many(RESTARTS)
    assert again == 9
    assert await LakeSink(LocalLakeWriter(undisturbed)).rewind_many(RESTARTS) == 10
    names = {p.relative_to(failed).as_posix() for p in failed.rglob("*.parquet")}
    assert names == {p.relative_to(undisturbed).as_posix() for p in undisturbed.rglob("*.parquet")}


def test_file_names_round_trip_through_the_parser() -> None:
    from sinks.lake import parse_file_name

    [f] = encode_scored([scored(0, "Dresses", partition="shardId-000000000001")])
    name = f.path.rsplit("/", 1)[-1]
    assert parse_file_name(name) == (("kafka", "reviews", "shardId-000000000001"), 1000)
    assert parse_file_name("part-x.parquet") is None
