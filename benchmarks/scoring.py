"""Scoring throughput: reviews/s scored in-process, through the local SageMaker-compatible
endpoint with batching, and one request per review (the way a naive client calls it), on real
review texts from ``../shared/data/reviews.csv``. All figures come from one run on one machine,
so the ratios compare like with like.

* in-process: :class:`~stream.scoring.InProcessScorer`, batches of 500 (the pipeline's);
* endpoint, batched: :class:`~stream.endpoint_client.EndpointScorer` with 100 reviews per
  request and 4 requests in flight, against ``python -m endpoint.server --workers 2``;
* endpoint, one per review: the same scorer with ``records_per_request=1, max_in_flight=1``,
  and boto3's synchronous ``invoke_endpoint`` called once per review;
* for the transformers, the batched mode again against 2 workers whose ONNX Runtime has one
  thread each (``SENTIMENT_MODEL_THREADS=1``) instead of its default, every core each.

The same table is printed for each model flavour: the shipped TF-IDF model, and the minilm
and mpnet transformer flavours (``--minilm-model DIR``, ``--mpnet-model DIR``: directories
``model train --flavour ...`` wrote; without one, the pre-trained encoder with an untrained
head, which costs the same to run: the figures are speed only), and an ensemble
(``--ensemble-model DIR``, ``model train --flavour ensemble`` wrote it; only when given). The
transformers score far fewer reviews per second, so they get fewer reviews
(``--transformer-reviews``, ``--transformer-single``).

    .venv/bin/python -m benchmarks.scoring [--reviews 6000] [--single 1500] [--repeats 3]
        [--minilm-model DIR] [--mpnet-model DIR] [--ensemble-model DIR]
        [--transformer-reviews 256] [--transformer-single 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiobotocore.session import get_session

from endpoint.transformer import THREADS_ENV
from stream.endpoint_client import EndpointScorer
from stream.events import ReviewEvent
from stream.replay_csv import read_csv
from stream.scoring import InProcessScorer
from stream.settings import EndpointSettings
from tests.servers.endpoint import EndpointServer

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "reviews.csv"
BATCH = 500  # the pipeline's default micro-batch
#: A transformer's batched client: 16 reviews a request, 2 in flight, 60 s timeout (100
#: reviews of mpnet take longer than the default 10 s on 2 cores).
TRANSFORMER_CLIENT = (16, 2, 60.0)


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


async def in_process(
    events: Sequence[ReviewEvent], repeats: int, model_dir: Path | None = None
) -> tuple[int, float]:
    scorer = InProcessScorer(model_dir)
    await scorer.score(events[:10])  # warm up

    async def run() -> int:
        return sum([len((await scorer.score(b)).predictions) for b in batches(events)])

    return await timed(run, repeats)


def endpoint_scorer(
    url: str, records_per_request: int, max_in_flight: int, timeout_s: float = 10.0
) -> EndpointScorer:
    session = get_session()
    session.set_credentials("bench", "bench")  # the local server accepts any signature
    settings = EndpointSettings(
        mode="sagemaker",
        url=url,
        records_per_request=records_per_request,
        max_in_flight=max_in_flight,
        timeout_s=timeout_s,
    )
    return EndpointScorer(settings, session=session)


async def through_endpoint(
    url: str,
    events: Sequence[ReviewEvent],
    *,
    records_per_request: int,
    max_in_flight: int,
    repeats: int,
    timeout_s: float = 10.0,
) -> tuple[int, float]:
    async with endpoint_scorer(url, records_per_request, max_in_flight, timeout_s) as scorer:
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


Row = tuple[str, int, float]


def flavour_rows(
    model_dir: Path | None,
    events: Sequence[ReviewEvent],
    single: Sequence[ReviewEvent],
    repeats: int,
    client: tuple[int, int, float] = (100, 4, 10.0),
    *,
    one_thread: bool = False,
) -> list[Row]:
    """The four modes for one model directory (None: the shipped model); ``client`` is the
    batched mode's reviews per request, requests in flight and timeout. ``one_thread`` adds a
    fifth: the batched mode against workers whose model has one thread each
    (``SENTIMENT_MODEL_THREADS=1``; by default ONNX Runtime uses every core in each)."""
    rows: list[Row] = []
    n, s = asyncio.run(in_process(events, repeats, model_dir))
    rows.append(("in-process (InProcessScorer, batches of 500)", n, s))
    args = () if model_dir is None else ("--model-dir", str(model_dir))
    per_request, in_flight, timeout_s = client

    def endpoint(url: str, reviews: Sequence[ReviewEvent], per: int, flight: int) -> Row:
        n, s = asyncio.run(
            through_endpoint(
                url,
                reviews,
                records_per_request=per,
                max_in_flight=flight,
                repeats=repeats,
                timeout_s=timeout_s,
            )
        )
        return f"endpoint, {per} per request, {flight} in flight (EndpointScorer)", n, s

    with EndpointServer(*args, workers=2) as server:
        rows.append(endpoint(server.url, events, per_request, in_flight))
        rows.append(endpoint(server.url, single, 1, 1))
        n, s = boto3_one_by_one(server, single, repeats)
        rows.append(("endpoint, 1 per request (boto3 sync, one by one)", n, s))
    if one_thread:
        with EndpointServer(*args, workers=2, env={THREADS_ENV: "1"}) as server:
            _name, n, s = endpoint(server.url, events, per_request, in_flight)
        rows.append(("  the same, 1 model thread in each of the 2 workers", n, s))
    return rows


def print_rows(title: str, rows: list[Row]) -> list[float]:
    rates = [n / s for _, n, s in rows]
    naive, batched = rates[3], rates[1]
    width = max(len(name) for name, _, _ in rows)
    print(f"\n{title}")
    print(
        f"{'mode':<{width}}  {'reviews':>7}  {'seconds':>7}  {'reviews/s':>10}  {'x boto3 1-by-1':>14}"
    )
    for (name, n, s), rate in zip(rows, rates, strict=True):
        print(f"{name:<{width}}  {n:>7,}  {s:>7.2f}  {rate:>10,.1f}  {rate / naive:>14.1f}")
    print(
        f"batched endpoint / in-process: {batched / rates[0]:.2f}"
        f"   batched endpoint / EndpointScorer one-per-request: {batched / rates[2]:.1f}"
        f"   in-process / boto3 one-by-one: {rates[0] / naive:.1f}"
    )
    if len(rates) > 4:
        print(
            f"batched endpoint, 1 model thread / every core in each worker: "
            f"{rates[4] / batched:.2f}"
        )
    return rates


def speed_only(flavour: str, root: Path) -> Path:
    """The flavour's pre-trained encoder with a zero head, saved under ``root``: what a
    fine-tuned one costs to run."""
    import numpy as np

    from endpoint.transformer import TransformerModel, pretrained_weights

    tensors, tokenizer_json, config, source = pretrained_weights(flavour, 128)
    head = {
        "head.weight": np.zeros((config.hidden, 3), dtype=np.float32),
        "head.bias": np.zeros(3, dtype=np.float32),
    }
    meta = {
        "name": f"{flavour}-speed-only",
        "version": "untrained",
        "flavour": flavour,
        "encoder": {"source": source},
    }
    model = TransformerModel(tensors | head, tokenizer_json, config, [], meta)
    return model.save(root / flavour)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--reviews", type=int, default=6_000, help="reviews for batched modes")
    parser.add_argument("--single", type=int, default=1_500, help="reviews for one-per-request")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--minilm-model", type=Path, default=None, help="a minilm model dir")
    parser.add_argument("--mpnet-model", type=Path, default=None, help="an mpnet model dir")
    parser.add_argument("--ensemble-model", type=Path, default=None, help="an ensemble dir")
    parser.add_argument("--transformer-reviews", type=int, default=256, help="batched modes")
    parser.add_argument("--transformer-single", type=int, default=64, help="one by one")
    args = parser.parse_args(argv)

    events = load_events(args.reviews)
    single = events[: args.single]
    print(
        f"{len(events):,} real reviews from {DATA.name}; one-per-request modes use {len(single):,}"
    )
    rates = {
        "tfidf": print_rows(
            "tfidf (the shipped model)", flavour_rows(None, events, single, args.repeats)
        )
    }
    flavours = [("minilm", args.minilm_model), ("mpnet", args.mpnet_model)]
    if args.ensemble_model is not None:
        flavours.append(("ensemble", args.ensemble_model))
    for flavour, given in flavours:
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = given or speed_only(flavour, Path(tmp))
            what = "trained" if given else "pre-trained encoder, untrained head: speed only"
            rates[flavour] = print_rows(
                f"{flavour} ({model_dir}; {what}; max length 128; "
                f"{args.transformer_reviews} and {args.transformer_single} reviews)",
                flavour_rows(
                    model_dir,
                    events[: args.transformer_reviews],
                    events[: args.transformer_single],
                    1,
                    TRANSFORMER_CLIENT,
                    one_thread=True,
                ),
            )
    tfidf = rates["tfidf"]
    print()
    for flavour, _ in flavours:
        r = rates[flavour]
        print(
            f"{flavour} / tfidf: in-process {r[0] / tfidf[0]:.4f}, batched endpoint "
            f"{r[1] / tfidf[1]:.4f}, boto3 one by one {r[3] / tfidf[3]:.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
