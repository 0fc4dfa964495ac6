"""The monitors' cost per event on the feed path: rows against columns, from one run.

The suite runs as the worker runs it: with the model's vocabulary (so every review's
out-of-vocabulary rate is computed), a baseline learned from the first 2,000 events, batches of
500, every monitor on. The same 24,000 synthetic reviews (one of 18 categories turns from 20 %
to 60 % negative halfway, so alerts and their evidence are built too) are fed twice:

* **rows**: each batch as a list of :class:`stream.events.ScoredReview` (the path before
  batches travelled as columns);
* **columns**: each batch as a :class:`stream.events.ScoredBatch` read from its Arrow table, as
  the Kafka monitor feed delivers it (the table is decoded before timing starts).

Timing starts once both suites have their baseline. Also printed: feature extraction alone on
each path, and the share of the column path that extraction takes.

Usage: ``python benchmarks/monitor_cost.py [--events 24000] [--batch 500]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from endpoint.inference import default_model_dir
from endpoint.model import SentimentModel
from monitors import MonitorConfig, MonitorSuite
from monitors.features import extract
from monitors.simulate import DEFAULT_CATEGORIES, StreamSpec, batches, synthetic_stream
from stream.events import ScoredBatch, ScoredReview, scored_table

WARMUP_EVENTS = 4000


def _timed(fn: Callable[[], object], repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _suite_cost(
    inputs: Sequence[Sequence[ScoredReview]], vocabulary: frozenset[str], now: datetime
) -> tuple[float, int, int]:
    """Seconds per timed event, timed events, alerts raised."""
    suite = MonitorSuite(MonitorConfig(categories=DEFAULT_CATEGORIES), vocabulary=vocabulary)
    warm = WARMUP_EVENTS // len(inputs[0])
    for b in inputs[:warm]:
        suite.observe(b, now)
    assert suite.baseline is not None, "the warm-up must learn the baseline"
    alerts = 0
    t0 = time.perf_counter()
    for b in inputs[warm:]:
        alerts += len(suite.observe(b, now))
    elapsed = time.perf_counter() - t0
    n = sum(len(b) for b in inputs[warm:])
    return elapsed / n, n, alerts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=24_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    vocabulary = SentimentModel.load(default_model_dir()).vocabulary
    spec = StreamSpec(
        events=args.events,
        seed=11,
        change_at=args.events // 2,
        category_priors_after={"Dresses": (0.6, 0.15, 0.25)},
    )
    reviews = synthetic_stream(spec)
    now = reviews[-1].event.event_time + timedelta(minutes=1)
    columns = [ScoredBatch.from_table(scored_table(b)) for b in batches(reviews, args.batch)]
    rows = [list(b) for b in columns]  # the same values as rows

    row_cost, n, row_alerts = _suite_cost(rows, vocabulary, now)
    col_cost, _, col_alerts = _suite_cost(columns, vocabulary, now)
    sample = columns[len(columns) // 2]
    sample_rows = rows[len(rows) // 2]
    ex_rows = _timed(lambda: extract(sample_rows, vocabulary, all_tokens=False), 5)
    ex_cols = _timed(lambda: extract(sample, vocabulary, all_tokens=False), 5)

    print(f"MonitorSuite per event, {n:,} events after the baseline, batches of {args.batch}")
    print(f"  {'path':<10} {'us/event':>9} {'extract us/event':>17} {'alerts':>7}")
    print(
        f"  {'rows':<10} {row_cost * 1e6:9.1f} {ex_rows / len(sample) * 1e6:17.1f} {row_alerts:7d}"
    )
    print(
        f"  {'columns':<10} {col_cost * 1e6:9.1f} {ex_cols / len(sample) * 1e6:17.1f} {col_alerts:7d}"
    )
    print(f"  columns / rows: {col_cost / row_cost:.2f} x the time")
    print(f"  (measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC)")


if __name__ == "__main__":
    main()
