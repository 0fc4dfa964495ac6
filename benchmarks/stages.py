"""Per-event cost of each stage of the pipeline, timed one stage at a time in one run.

The same seeded events go through decode, scoring, the columnar batch and its Arrow table, the
enriched JSON, the monitor feed (Arrow IPC), the lake (a local directory), the monitors (also
without the model's explanations of the negative reviews, to show what the alert evidence
costs) and the metrics. A path's throughput on one core is bounded by the sum of the stages it
runs, and on N cores by N times that: the last line sets the bound beside a worker at 0.8 of
the scorer alone.

    .venv/bin/python benchmarks/stages.py [--events 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitors import MonitorSuite
from sinks.lake import LakeSink, LocalLakeWriter
from sinks.topics import enriched_values
from stream.app import monitor_config
from stream.entry import GC_THRESHOLDS
from stream.events import Batch, ScoredBatch, SourcePosition
from stream.kafka_app import feed_messages
from stream.metrics import PipelineMetrics
from stream.scoring import InProcessScorer
from stream.settings import BatchSettings, Settings
from stream.synthetic import generate
from stream.validation import DecodeLimits, decode_batch


def stages(
    values: list[bytes], positions: list[SourcePosition], batch: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Microseconds per event of each stage over ``values``, and the explainer's share."""
    n = len(values)
    now = datetime.now(UTC)
    cost: dict[str, float] = {}

    def timed(name: str, work: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        out = work()
        cost[name] = (time.perf_counter() - started) / n * 1e6
        return out

    chunks = range(0, n, batch)
    decoded = timed(
        "decode",
        lambda: [
            decode_batch(values[i : i + batch], positions[i : i + batch], now, DecodeLimits())
            for i in chunks
        ],
    )
    scorer = InProcessScorer()

    async def score_all() -> list[Any]:
        return [await scorer.score(d.events) for d in decoded]

    results = timed("score (in-process model)", lambda: asyncio.run(score_all()))
    batches: list[ScoredBatch] = timed(
        "columnar batch",
        lambda: [
            ScoredBatch.from_predictions(
                d.events,
                d.event_positions,
                *r.arrays(),
                model=(r.model_name, r.model_version),
                scored_at=now,
                latency_ms=r.latency_ms,
            )
            for d, r in zip(decoded, results, strict=True)
        ],
    )
    timed("Arrow table", lambda: [b.table for b in batches])
    timed("enriched JSON", lambda: [enriched_values(b) for b in batches])
    timed("monitor feed (IPC)", lambda: [feed_messages(b.table) for b in batches])

    async def lake(root: Path) -> None:
        sink = LakeSink(LocalLakeWriter(root))
        for seq, b in enumerate(batches):
            await sink.write(Batch(b, [], {}, seq=seq))
        await sink.close()

    with tempfile.TemporaryDirectory() as tmp:
        timed("lake (local)", lambda: asyncio.run(lake(Path(tmp))))
    settings = Settings()
    config, vocabulary, explainer = monitor_config(settings)
    plain = MonitorSuite(config, vocabulary=vocabulary)
    timed("monitors, no explainer", lambda: [plain.observe(b, now) for b in batches])
    # the monitors as the app builds them, timing the model's explanations of the negative
    # reviews the SentimentShift evidence keeps
    inside: dict[str, float] = {"seconds": 0.0, "texts": 0}

    def timed_explainer(texts: Sequence[str]) -> Any:
        started = time.perf_counter()
        out = explainer(texts)
        inside["seconds"] += time.perf_counter() - started
        inside["texts"] += len(texts)
        return out

    monitor = MonitorSuite(config, vocabulary=vocabulary, explainer=timed_explainer)
    timed("monitors", lambda: [monitor.observe(b, now) for b in batches])
    metrics = PipelineMetrics(settings.categories)

    def count_all() -> None:
        for b in batches:
            metrics.observe_batch(Batch(b, [], {}), "bench")

    timed("metrics", count_all)
    return cost, inside


def bound(score_us: float, total_us: float, cores: int, share: float = 0.8) -> str:
    """What a worker at ``share`` of the scorer alone (``score_us`` an event) would need,
    against the most that ``cores`` cores can give a path whose stages cost ``total_us`` an
    event together, each core fully busy and no stage waiting on another (no process does
    better: its CPU time per event is at least the sum of its stages')."""
    scorer = 1e6 / score_us
    budget = score_us / share
    best = cores * 1e6 / total_us
    return (
        f"the scorer alone: {scorer:,.0f} events/s; {share:g}x of it is {share * scorer:,.0f} "
        f"events/s, {budget:.1f} us/event of wall time for every stage. These stages on "
        f"{cores} core{'s' * (cores != 1)}: at most {best:,.0f} events/s, {best / scorer:.2f}x "
        f"the scorer alone"
    )


def main() -> None:
    gc.set_threshold(*GC_THRESHOLDS)  # as the command's processes collect (stream.entry)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument(
        "--batch",
        type=int,
        default=BatchSettings().max_events,
        help="events a micro-batch (default: the pipeline's, SENTIMENT_BATCH__MAX_EVENTS)",
    )
    parser.add_argument(
        "--span-hours",
        type=float,
        default=48.0,
        help="event times spread over this many hours: 48 (the default) is a two-day backlog "
        "whose one-hour windows close every ~420 events; a small span is a dense live stream, "
        "whose windows are evaluated every max_window_events (5,000)",
    )
    args = parser.parse_args()
    n = args.events
    span = timedelta(hours=args.span_hours)
    values = [r.value for r in generate("steady", events=n, seed=5, span=span)]
    positions = [SourcePosition("kafka", "reviews", str(i % 4), i) for i in range(n)]
    # a first pass over two batches pays each stage's one-time costs (pyarrow's and
    # Parquet's first calls, caches), which are not a per-event cost
    stages(values[: 2 * args.batch], positions[: 2 * args.batch], args.batch)
    cost, inside = stages(values, positions, args.batch)

    print(f"{n:,} events over {args.span_hours:g} hours of event time, batches of {args.batch:,}")
    for name, us in cost.items():
        print(f"{name:26s} {us:8.1f} us/event")
    total = sum(v for k, v in cost.items() if k != "monitors, no explainer")
    print(f"{'sum':26s} {total:8.1f} us/event  ({1e6 / total:,.0f} events/s on one core)")
    print(
        f"of the monitors: explanations for alert evidence {inside['seconds'] / n * 1e6:.1f} "
        f"us/event ({inside['texts'] / n:.1%} of the events explained); monitors with minus "
        f"without explainer {cost['monitors'] - cost['monitors, no explainer']:+.1f} us/event"
    )
    print(bound(cost["score (in-process model)"], total, len(os.sched_getaffinity(0))))


if __name__ == "__main__":
    main()
