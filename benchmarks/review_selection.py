"""The review queue's cost per event, from one run: the selection alone (pure), its audit
draw (a seeded hash of each review id, computed a byte position at a time over the batch), and
the whole sink
(:class:`stream.review.ReviewQueue`: selection, the picked rows' task payloads and their
insert into the SQLite outbox).

Batches of 500 synthetic scored reviews (18 categories, top probabilities uniform in
[0.34, 1], ratings on two reviews of three), a 1 % audit, a low-confidence threshold of 0.6
and a budget of 20 an hour per category: the budget fills in the first batches, as in a
running worker, so most batches pick nothing and the sink's cost is the selection's.
Timings are the best of ``--repeat`` passes over the same batches.

Usage: ``python benchmarks/review_selection.py [--events 50000] [--batch 500]``
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from monitors.review import NO_RATING, ReviewSelector, SelectionConfig, audit_draws
from monitors.simulate import DEFAULT_CATEGORIES
from stream.events import Batch, ReviewEvent, ScoredBatch, SourcePosition
from stream.review import ReviewQueue, ReviewStore

T = datetime(2026, 3, 4, 12, tzinfo=UTC)


def _batches(events: int, size: int, seed: int) -> list[ScoredBatch]:
    rng = np.random.default_rng(seed)
    out = []
    for first in range(0, events, size):
        n = min(size, events - first)
        top = rng.uniform(0.34, 1.0, n)
        rest = (1 - top) / 2
        probs = np.column_stack([rest, rest, top]).astype(np.float32)
        cats = rng.integers(0, len(DEFAULT_CATEGORIES), n)
        ratings = rng.integers(1, 6, n)
        evs = [
            ReviewEvent(
                review_id=f"review-{first + i:09d}",
                product_id="p",
                product_category=DEFAULT_CATEGORIES[cats[i]],
                review_text="a review text of ordinary length " * 4,
                channel="web",
                event_time=T,
                rating=int(ratings[i]) if i % 3 else None,
            )
            for i in range(n)
        ]
        pos = [SourcePosition("kafka", "reviews", "0", first + i) for i in range(n)]
        out.append(
            ScoredBatch.from_predictions(
                evs, pos, np.ones(n, np.int8), probs, model=("m", "1"), scored_at=T, latency_ms=1.0
            )
        )
    return out


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    batches = _batches(args.events, args.batch, seed=7)
    config = SelectionConfig(DEFAULT_CATEGORIES, threshold=0.6, audit_rate=0.01, budget_per_hour=20)
    columns = []
    for b in batches:
        t = b.table
        probs = np.column_stack(
            [t.column(c).to_numpy() for c in ("p_negative", "p_neutral", "p_positive")]
        )
        rating = t.column("rating").fill_null(0).to_numpy().astype(np.int64)
        true = np.where(rating >= 4, 1, np.where(rating == 3, 0, -1))
        true[rating == 0] = NO_RATING
        columns.append(
            (
                t.column("review_id").to_pylist(),
                t.column("product_category").to_pylist(),
                t.column("sentiment").to_numpy(),
                probs,
                true,
            )
        )
    now = T.timestamp()

    def draws() -> None:
        for ids, *_ in columns:
            audit_draws(ids, 13)

    def select() -> None:
        sel = ReviewSelector(config)
        for ids, cats, pred, probs, true in columns:
            sel.select(ids, cats, pred, probs, true, now)

    tmp = tempfile.TemporaryDirectory()
    runs = iter(range(args.repeat))

    def sink() -> None:
        # a fresh outbox per pass (opened outside the timing would need a second loop)
        store = ReviewStore(Path(tmp.name) / f"outbox-{next(runs)}.sqlite")
        queue = ReviewQueue(store, ReviewSelector(config), clock=lambda: now)

        async def go() -> None:
            for seq, b in enumerate(batches):
                await queue.write(Batch(scored=b, dead=[], positions={}, seq=seq))

        asyncio.run(go())
        store.close()

    n = args.events
    t_draw = _best(draws, args.repeat) / n
    t_select = _best(select, args.repeat) / n
    t_sink = _best(sink, args.repeat) / n
    tmp.cleanup()
    print(f"{n:,} events in batches of {args.batch}, best of {args.repeat}")
    print(f"audit draw        {t_draw * 1e6:7.2f} us/event")
    print(
        f"selection (pure)  {t_select * 1e6:7.2f} us/event  (draw: {t_draw / t_select:.0%} of it)"
    )
    print(
        f"review queue sink {t_sink * 1e6:7.2f} us/event  (selection: {t_select / t_sink:.0%} of it)"
    )


if __name__ == "__main__":
    main()
