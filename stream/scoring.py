"""Scorers: the in-process model (embedded default) and response parsing shared by all.

Every scorer goes through the SageMaker handler contract of ``endpoint.inference``
(``input_fn`` -> ``predict_fn`` -> ``output_fn``) and parses the same JSON response, so the
embedded default runs exactly the code a SageMaker container runs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stream.errors import ScoringRejected
from stream.events import ReviewEvent
from stream.pipeline import Prediction, ScoringResult

__all__ = ["InProcessScorer", "parse_response", "request_body"]


def request_body(events: Sequence[ReviewEvent]) -> bytes:
    """The ``application/json`` request for a batch: ``{"instances": [text, ...]}``."""
    return json.dumps({"instances": [e.review_text for e in events]}, ensure_ascii=False).encode()


def parse_response(body: bytes | str, expected: int, latency_ms: float) -> ScoringResult:
    """Turn the endpoint's JSON response into predictions, checking it answers every event."""
    try:
        doc: Any = json.loads(body)
        rows = doc["predictions"]
        predictions = [
            Prediction(
                sentiment=int(r["label"]),
                p_negative=float(r["probabilities"]["negative"]),
                p_neutral=float(r["probabilities"]["neutral"]),
                p_positive=float(r["probabilities"]["positive"]),
            )
            for r in rows
        ]
        name, version = str(doc["model_name"]), str(doc["model_version"])
    except (ValueError, KeyError, TypeError) as err:
        raise ScoringRejected(f"unexpected endpoint response: {err!r}") from err
    if len(predictions) != expected:
        raise ScoringRejected(f"endpoint answered {len(predictions)} of {expected} instances")
    return ScoringResult(predictions, name, version, latency_ms)


class InProcessScorer:
    """Scores in this process with the SageMaker handler, in a worker thread so the event
    loop keeps running while numpy works."""

    def __init__(self, model_dir: Path | None = None) -> None:
        from endpoint.inference import default_model_dir, model_fn

        self._model = model_fn(model_dir or default_model_dir())

    def _score_sync(self, body: bytes) -> bytes:
        from endpoint.inference import input_fn, output_fn, predict_fn

        data = input_fn(body, "application/json")
        prediction = predict_fn(data, self._model)
        out, _content_type = output_fn(prediction, "application/json")
        return out

    async def score(self, events: Sequence[ReviewEvent]) -> ScoringResult:
        started = time.perf_counter()
        try:
            body = await asyncio.to_thread(self._score_sync, request_body(events))
        except ValueError as err:  # the handler's InvalidInput is a ValueError
            raise ScoringRejected(str(err)) from err
        latency = (time.perf_counter() - started) * 1000.0
        return parse_response(body, len(events), latency)
