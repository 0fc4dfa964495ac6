"""Scoring throughput: reviews/s scored in-process, through the local SageMaker-compatible
endpoint with batching, and one request per review (the way a naive client calls it), on real
review texts from ``../shared/data/reviews.csv``. All figures come from one run on one machine,
so the ratios compare like with like.

* in-process: :class:`~stream.scoring.InProcessScorer`, batches of 500 (the pipeline's);
* endpoint, batched: :class:`~stream.endpoint_client.EndpointScorer` with 100 reviews per
  request and 4 requests in flight, against ``python -m endpoint.server --workers 2``;
* endpoint, one per review: the same scorer with ``records_per_request=1, max_in_flight=1``,
  and boto3's synchronous ``invoke_endpoint`` called once per review.

    .venv/bin/python -m benchmarks.scoring [--reviews 6000] [--single 1500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiobotocore.session import get_session

from stream.endpoint_client import EndpointScorer
from stream.events import ReviewEvent
from stream.replay_csv import read_csv
from stream.scoring import InProcessScorer
from stream.settings import EndpointSettings
from tests.servers.endpoint import EndpointServer

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "reviews.csv"
BATCH = 500  # the pipeline's default micro-batch


def load_events(limit: int) -> list[ReviewEvent]:
    events = [r.event for r in read_csv(DATA, seed=1) if r.event is not None]
    if not events:
        raise SystemExit(f"no reviews in {DATA}")
    while len(events) < limit:  # a small file: go round again
        events += events[: limit - len(events)]
    return events[:limit]


def batches(events: Sequence[ReviewEvent], size: int = BATCH) -> list[Sequence[ReviewEvent]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


async def timed(run: Callable[[], Awaitable[int]], repeats: int) -> tuple[int, float]:
    """(reviews, best seconds) over ``repeats`` runs."""
    best, n = float("inf"), 0
    for _ in range(repeats):
        started = time.perf_counter()
        n = await run()
        best = min(best, time.perf_counter() - started)
    return n, best


async def in_process(events: Sequence[ReviewEvent], repeats: int) -> tuple[int, float]:
    scorer = InProcessScorer()
    await scorer.score(events[:10])  # warm up

    async def run() -> int:
        return sum([len((await scorer.score(b)).predictions) for b in batches(events)])

    return await timed(run, repeats)


def endpoint_scorer(url: str, records_per_request: int, max_in_flight: int) -> EndpointScorer:
    session = get_session()
    session.set_credentials("bench", "bench")  # the local server accepts any signature
    settings = EndpointSettings(
        mode="sagemaker",
        url=url,
        records_per_request=records_per_request,
        max_in_flight=max_in_flight,
    )
    return EndpointScorer(settings, session=session)


async def through_endpoint(
    url: str,
    events: Sequence[ReviewEvent],
    *,
    records_per_request: int,
    max_in_flight: int,
    repeats: int,
) -> tuple[int, float]:
    async with endpoint_scorer(url, records_per_request, max_in_flight) as scorer:
        await scorer.score(events[: max_in_flight * records_per_request])  # connections, warm

        async def run() -> int:
            # As the pipeline does: several batches in flight, the scorer's limit shared.
            results = await asyncio.gather(*(scorer.score(b) for b in batches(events)))
            return sum(len(r.predictions) for r in results)

        result = await timed(run, repeats)
        if scorer.failures:
            raise SystemExit(f"{scorer.failures} failed requests: the figures are not valid")
        return result


def boto3_one_by_one(
    server: EndpointServer, events: Sequence[ReviewEvent], repeats: int
) -> tuple[int, float]:
    client = server.client()
    bodies = [json.dumps({"instances": [e.review_text]}).encode() for e in events]

    def call(body: bytes) -> Any:
        response = client.invoke_endpoint(
            EndpointName="review-sentiment",
            Body=body,
            ContentType="application/json",
            Accept="application/json",
        )
        return json.loads(response["Body"].read())

    call(bodies[0])  # warm up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for body in bodies:
            call(body)
        best = min(best, time.perf_counter() - started)
    return len(bodies), best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--reviews", type=int, default=6_000, help="reviews for batched modes")
    parser.add_argument("--single", type=int, default=1_500, help="reviews for one-per-request")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = parser.parse_args(argv)

    events = load_events(args.reviews)
    single = events[: args.single]
    print(
        f"{len(events):,} real reviews from {DATA.name}; one-per-request modes use {len(single):,}"
    )
    rows: list[tuple[str, int, float]] = []
    n, s = asyncio.run(in_process(events, args.repeats))
    rows.append(("in-process (InProcessScorer, batches of 500)", n, s))
    with EndpointServer(workers=2) as server:
        n, s = asyncio.run(
            through_endpoint(
                server.url, events, records_per_request=100, max_in_flight=4, repeats=args.repeats
            )
        )
        rows.append(("endpoint, 100 per request, 4 in flight (EndpointScorer)", n, s))
        n, s = asyncio.run(
            through_endpoint(
                server.url, single, records_per_request=1, max_in_flight=1, repeats=args.repeats
            )
        )
        rows.append(("endpoint, 1 per request, 1 in flight (EndpointScorer)", n, s))
        n, s = boto3_one_by_one(server, single, args.repeats)
        rows.append(("endpoint, 1 per request (boto3 sync, one by one)", n, s))

    rates = [n / s for _, n, s in rows]
    naive = rates[-1]
    batched = rates[1]
    width = max(len(name) for name, _, _ in rows)
    print(
        f"\n{'mode':<{width}}  {'reviews':>7}  {'seconds':>7}  {'reviews/s':>10}  {'x boto3 1-by-1':>14}"
    )
    for (name, n, s), rate in zip(rows, rates, strict=True):
        print(f"{name:<{width}}  {n:>7,}  {s:>7.2f}  {rate:>10,.0f}  {rate / naive:>14.1f}")
    print(
        f"\nbatched endpoint / in-process: {batched / rates[0]:.2f}"
        f"   batched endpoint / EndpointScorer one-per-request: {batched / rates[2]:.1f}"
        f"   in-process / boto3 one-by-one: {rates[0] / naive:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
