"""Running the same replay twice into one local lake: the second run replaces the first, even
though age-based flushes cut the two runs' files differently."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.dataset as ds

from sinks.lake import BufferLimits, LakeSink, LocalLakeWriter
from stream.pipeline import Pipeline, PipelineOptions
from stream.sources.replay import ReplaySource
from tests.fakes import NeutralScorer, NoMonitor

T0 = datetime(2026, 3, 4, 22, tzinfo=UTC)
EVENTS = 3_000
BAD_EVERY = 97  # every 97th record is not JSON: a dead letter


def records() -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(EVENTS):
        if i % BAD_EVERY == 0:
            out.append((b"k", b"{not json"))
            continue
        doc = {
            "review_id": f"r-{i}",
            "product_id": f"p-{i % 5}",
            "product_category": ("Dresses", "Knits", "Fine gauge")[i % 3],
            "review_text": "fine",
            "channel": "web",
            "event_time": (T0 + timedelta(seconds=30 * i)).isoformat(),  # crosses midnight
        }
        out.append((b"k", json.dumps(doc).encode()))
    return out


class Written:
    def __init__(self) -> None:
        self.paths: set[str] = set()

    async def file_written(self, path: str) -> None:
        self.paths.add(path)


async def run_once(lake: Path, *, rate: float | None, batch: int) -> tuple[LakeSink, set[str]]:
    """One run of the replay; returns its sink and the files it wrote."""
    written = Written()
    limits = BufferLimits(max_age_s=0.02)
    sink = LakeSink(LocalLakeWriter(lake), limits=limits, listeners=[written])
    source = ReplaySource(records(), name="steady", rate=rate, on_rewind=sink.rewind)
    pipeline = Pipeline(
        source,
        NeutralScorer(),
        [sink],
        NoMonitor(),
        options=PipelineOptions(max_batch_events=batch, max_batch_wait_s=0.01, queue_batches=2),
    )
    await pipeline.run()
    return sink, written.paths


def stored(lake: Path, table: str, column: str) -> Counter[str]:
    data = ds.dataset(lake / table, format="parquet").to_table(columns=[column])
    return Counter(data.column(column).to_pylist())


async def test_a_rerun_of_the_same_replay_replaces_the_first(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    first, first_files = await run_once(lake, rate=20_000, batch=64)
    second, second_files = await run_once(lake, rate=None, batch=100)
    # Both runs flushed on age, and cut their files differently: nothing was overwritten.
    assert first.files_written > 6 and second.files_written > 6
    assert first_files - second_files
    valid = [f"r-{i}" for i in range(EVENTS) if i % BAD_EVERY]
    reviews = stored(lake, "reviews", "review_id")
    assert sorted(reviews) == sorted(valid)
    assert set(reviews.values()) == {1}  # no duplicates
    dead = stored(lake, "dlq", "source_offset")
    assert sorted(dead, key=int) == [str(i) for i in range(0, EVENTS, BAD_EVERY)]
    assert set(dead.values()) == {1}
    on_disk = {p.relative_to(lake).as_posix() for p in lake.rglob("*.parquet")}
    assert on_disk == second_files


async def test_a_different_stream_into_the_same_lake_is_kept(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    await run_once(lake, rate=None, batch=100)
    sink = LakeSink(LocalLakeWriter(lake))
    other = ReplaySource(records()[1:3], name="other", on_rewind=sink.rewind)
    await Pipeline(other, NeutralScorer(), [sink], NoMonitor()).run()
    reviews = stored(lake, "reviews", "review_id")
    assert sum(reviews.values()) == EVENTS - len(range(0, EVENTS, BAD_EVERY)) + 2
    assert reviews["r-1"] == 2 and reviews["r-2"] == 2 and reviews["r-4"] == 1
