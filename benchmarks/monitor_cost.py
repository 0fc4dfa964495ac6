"""The monitors' cost per event on the feed path: rows against columns, from one run.

The suite runs as the worker runs it: with the model's vocabulary (so every review's
out-of-vocabulary rate is computed), a baseline learned from the first 2,000 events, batches of
the pipeline's default size, every monitor on. The same 24,000 synthetic reviews (one of 18
categories turns from 20 % to 60 % negative halfway, so alerts and their evidence are built
too) are fed twice:

* **rows**: each batch as a list of :class:`stream.events.ScoredReview` (the path before
  batches travelled as columns);
* **columns**: each batch as a :class:`stream.events.ScoredBatch` read from its Arrow table, as
  the Kafka monitor feed delivers it (the table is decoded before timing starts).

Timing starts once both suites have their baseline; the two suites take turns batch by batch,
so a busy machine slows both alike. Also printed: feature extraction alone on
each path, and the text features of one batch measured on its Arrow column's bytes (as the
suite does) against one text at a time (as it did before), in turns.

Usage: ``python benchmarks/monitor_cost.py [--events 24000] [--batch N]`` (N defaults to the
pipeline's batch size)
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from endpoint.inference import default_model_dir
from endpoint.model import SentimentModel
from monitors import MonitorConfig, MonitorSuite
from monitors.features import ModelVocabulary, _python_features, extract, text_features
from monitors.simulate import DEFAULT_CATEGORIES, StreamSpec, batches, synthetic_stream
from stream.events import ScoredBatch, ScoredReview, scored_table
from stream.settings import BatchSettings

WARMUP_EVENTS = 4000


def _timed(fn: Callable[[], object], repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _suite_costs(
    paths: dict[str, Sequence[Sequence[ScoredReview]]], vocabulary: frozenset[str], now: datetime
) -> tuple[dict[str, float], int, dict[str, int]]:
    """Seconds per timed event of each path, timed events, alerts raised per path. The suites
    take turns batch by batch, so a busy machine slows every path alike."""
    config = MonitorConfig(categories=DEFAULT_CATEGORIES)
    suites = {name: MonitorSuite(config, vocabulary=vocabulary) for name in paths}
    first = next(iter(paths.values()))
    warm = WARMUP_EVENTS // len(first[0])
    for name, inputs in paths.items():
        for b in inputs[:warm]:
            suites[name].observe(b, now)
        assert suites[name].baseline is not None, "the warm-up must learn the baseline"
    spent = dict.fromkeys(paths, 0.0)
    alerts = dict.fromkeys(paths, 0)
    for i in range(warm, len(first)):
        for name, inputs in paths.items():
            t0 = time.perf_counter()
            raised = suites[name].observe(inputs[i], now)
            spent[name] += time.perf_counter() - t0
            alerts[name] += len(raised)
    n = sum(len(b) for b in first[warm:])
    return {name: t / n for name, t in spent.items()}, n, alerts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=24_000)
    parser.add_argument("--batch", type=int, default=BatchSettings().max_events)
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
    costs, n, alerts = _suite_costs({"rows": rows, "columns": columns}, vocabulary, now)
    mid = len(columns) // 2
    vocab = ModelVocabulary(vocabulary)  # as the suite holds it
    extract_s = {
        "rows": _timed(lambda: extract(rows[mid], vocab, all_tokens=False), 5),
        "columns": _timed(lambda: extract(columns[mid], vocab, all_tokens=False), 5),
    }
    print(f"MonitorSuite per event, {n:,} events after the baseline, batches of {args.batch}")
    print(f"  {'path':<10} {'us/event':>9} {'extract us/event':>17} {'alerts':>7}")
    for name, cost in costs.items():
        per_event = extract_s[name] / len(columns[mid]) * 1e6
        print(f"  {name:<10} {cost * 1e6:9.1f} {per_event:17.1f} {alerts[name]:7d}")
    print(f"  columns / rows: {costs['columns'] / costs['rows']:.2f} x the time")
    column = columns[mid].table.column("review_text")
    texts = column.to_pylist()
    ways: dict[str, Callable[[], object]] = {
        "on the column's bytes": lambda: text_features(texts, vocab, column),
        "one text at a time": lambda: _python_features(texts, vocab),
    }
    per_text = dict.fromkeys(ways, float("inf"))
    for _ in range(7):  # in turns
        for name, way in ways.items():
            per_text[name] = min(per_text[name], _timed(way))
    print("  text features (words, characters, OOV rate) of one batch, us/event:")
    for name, seconds in per_text.items():
        print(f"    {name:<24} {seconds / len(texts) * 1e6:8.2f}")
    bytes_s, python_s = per_text.values()
    print(f"    one at a time / bytes: {python_s / bytes_s:.1f} x")
    _window_test_costs()
    print(f"  (measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs)")


def _window_test_costs() -> None:
    """The window tests' p-values per call: ours (``scipy.special``) against the scipy.stats
    calls they replace, on the same counts, in turns."""
    import math

    import numpy as np
    from scipy import stats

    from monitors._stats import chi2_homogeneity, ks_binned

    ref, cur = np.array([200, 300, 500, 40, 60]), np.array([30, 20, 50, 4, 9])
    d, en = 0.05, 500 * 113 / 613
    calls: dict[str, Callable[[], object]] = {
        "chi2_homogeneity": lambda: chi2_homogeneity(ref, cur),
        "stats.chi2_contingency": lambda: stats.chi2_contingency(
            np.vstack([ref, cur]), correction=False
        ),
        "ks_binned": lambda: ks_binned(ref, cur),
        "stats.kstwobign.sf": lambda: stats.kstwobign.sf(math.sqrt(en) * d),
    }

    def repeat(call: Callable[[], object]) -> Callable[[], object]:
        return lambda: [call() for _ in range(200)]

    best = dict.fromkeys(calls, float("inf"))
    for _ in range(5):
        for name, call in calls.items():
            best[name] = min(best[name], _timed(repeat(call)) / 200)
    print("  window tests, us per call (best of 5 x 200):")
    for name, t in best.items():
        print(f"    {name:<24} {t * 1e6:8.1f}")
    chi = best["stats.chi2_contingency"] / best["chi2_homogeneity"]
    ks = best["stats.kstwobign.sf"] / best["ks_binned"]
    print(f"    scipy.stats / ours: chi-square {chi:.1f} x, KS {ks:.1f} x")


if __name__ == "__main__":
    main()
