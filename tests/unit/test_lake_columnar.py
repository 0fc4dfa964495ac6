"""The encoder takes a ScoredBatch's Arrow table as it is: the same files as from rows, without
building a single ScoredReview."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from sinks.lake import LakeSink, LocalLakeWriter, encode_batch, encode_scored, scored_parts
from stream.events import SCORED_SCHEMA, Batch, ReviewEvent, ScoredBatch, SourcePosition

T = datetime(2026, 3, 4, 12, tzinfo=UTC)
CATEGORIES = ("Dresses", "Fine gauge", "x" * 300, "__HIVE_DEFAULT_PARTITION__")


def batch(n: int) -> ScoredBatch:
    events = [
        ReviewEvent(
            review_id=f"r-{i}",
            product_id="p",
            product_category=CATEGORIES[i * 7 % len(CATEGORIES)],
            review_text=f"text {i}",
            channel="web",
            event_time=T.replace(day=4 + i // 4 % 2),
            rating=i % 5 + 1 if i % 3 else None,
        )
        for i in range(n)
    ]
    positions = [SourcePosition("kafka", "t", str(i % 3), 100 + i) for i in range(n)]
    probabilities = np.tile(np.array([0.1, 0.2, 0.7], np.float32), (n, 1))
    return ScoredBatch.from_predictions(
        events,
        positions,
        np.ones(n, np.int8),
        probabilities,
        model=("m", "1"),
        scored_at=T,
        latency_ms=2.0,
    )


def test_columns_and_rows_give_the_same_files(monkeypatch: pytest.MonkeyPatch) -> None:
    scored = batch(60)
    rows = list(scored)
    scored = batch(60)
    _ = scored.table

    def no_rows(self: ScoredBatch, i: int) -> None:
        raise AssertionError("the encoder built a row")

    monkeypatch.setattr(ScoredBatch, "_row", no_rows)
    from_columns = encode_scored(scored)
    monkeypatch.undo()
    from_rows = encode_scored(rows)
    assert [f.path for f in from_columns] == [f.path for f in from_rows]
    assert len(from_columns) == 2 * len(CATEGORIES) * 3
    for a, b in zip(from_columns, from_rows, strict=True):
        assert a.table.schema == SCORED_SCHEMA
        assert a.table.equals(b.table)


def test_parts_keep_arrival_order_and_exact_ranges() -> None:
    parts = scored_parts(batch(60))
    # parts come in the order of their first row; rows within a part in arrival order
    firsts = [int(p.table.column("source_offset")[0].as_py()) for p in parts]
    assert firsts == sorted(firsts)
    for p in parts:
        offsets = [int(o) for o in p.table.column("source_offset").to_pylist()]
        assert offsets == sorted(offsets)
        assert (p.first, p.last) == (offsets[0], offsets[-1])
        assert {(o - 100) % 3 for o in offsets} == {int(p.key[2])}
        assert set(p.table.column("product_category").to_pylist()) == {
            CATEGORIES[(offsets[0] - 100) * 7 % len(CATEGORIES)]
        }
    assert sum(p.table.num_rows for p in parts) == 60
    assert parts[0].directory == "reviews/dt=2026-03-04/product_category=Dresses"


async def test_kinesis_sequence_numbers_beyond_64_bits_name_files_and_dedupe(
    tmp_path: Path,
) -> None:
    big = 49680742836640151080967348868823911969249551137435025410
    events = [
        ReviewEvent(f"r{i}", "p", "Dresses", "t", "web", datetime(2024, 1, 1, tzinfo=UTC))
        for i in range(5)
    ]
    positions = [SourcePosition("kinesis", "s", "shardId-0", big + i) for i in range(5)]
    scored = ScoredBatch.from_predictions(
        events,
        positions,
        np.zeros(5, np.int8),
        np.full((5, 3), 1 / 3, np.float32),
        model=("m", "1"),
        scored_at=datetime(2024, 1, 2, tzinfo=UTC),
        latency_ms=1.0,
    )
    batch = Batch(scored, [], {positions[0].key: positions[-1]}, seq=0)
    [part] = encode_batch(batch)
    assert (part.first, part.last) == (big, big + 4)
    sink = LakeSink(LocalLakeWriter(tmp_path))
    await sink.write(batch)
    await sink.write(batch)  # the same batch again adds nothing
    await sink.close()
    files = list(tmp_path.rglob("*.parquet"))
    assert [f.name.endswith(f"-{big}-{big + 4}.parquet") for f in files] == [True]
