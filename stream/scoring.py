"""Scorers: the in-process model (embedded default) and response parsing shared by all.

Every scorer goes through the SageMaker handler contract of ``endpoint.inference``: the
in-process scorer sends the same JSON request through ``input_fn`` and ``predict_fn``, so the
embedded default decodes and predicts with exactly the code a SageMaker container runs, and
takes the prediction's columns as they are. Only ``output_fn``'s JSON and its parsing
(:func:`parse_response`, what the endpoint client reads) are left out in-process: they took
13.7 µs an event against 33.4 for the rest of scoring (shipped model, 20,000 events) and change
nothing (``tests/integration/test_endpoint_client.py`` checks that both paths give the same
predictions).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from stream.errors import ScoringRejected
from stream.events import ReviewEvent
from stream.pipeline import Prediction, PredictionColumns, ScoringResult

if TYPE_CHECKING:
    from endpoint.model import ModelInfo

__all__ = ["InProcessScorer", "load_model", "parse_response", "request_body"]

_MODELS: dict[Path, ModelInfo] = {}
_MODELS_LOCK = threading.Lock()


def load_model(model_dir: Path | None = None) -> ModelInfo:
    """The model in ``model_dir`` (the packaged one when None), loaded by the SageMaker
    handler's ``model_fn`` once per process and directory. The in-process scorer and the
    monitors (the model's vocabulary, validation confusion matrix and explanations) share
    that one instance, so they always judge by the same model: a directory replaced while a
    worker runs is read at its next start, by both, where the monitors rebuilt after a
    rebalance used to load the new model beside the scorer's old one. It also saves the
    second copy (about 5 MiB of a Kafka worker's peak RSS) and its load at every rebalance."""
    from endpoint.inference import default_model_dir, model_fn

    key = Path(model_dir or default_model_dir()).resolve()
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = _MODELS[key] = model_fn(key)
    return model


_JSON = msgspec.json.Encoder()


def request_body(events: Sequence[ReviewEvent]) -> bytes:
    """The ``application/json`` request for a batch: ``{"instances": [text, ...]}`` (UTF-8,
    by msgspec: a tenth of the standard library's time, on the event loop's thread). A text
    UTF-8 cannot hold (a lone surrogate) raises :class:`UnicodeEncodeError`."""
    return _JSON.encode({"instances": [e.review_text for e in events]})


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
        from endpoint.model import InvalidInput

        self._model = load_model(model_dir)
        #: what refuses a batch for good (its reviews become dead letters): the handler's
        #: InvalidInput (the 400 of an endpoint) or a text UTF-8 cannot hold; any other error
        #: is this process's fault and ends the run, committing nothing past the batch
        self._refusals: tuple[type[ValueError], ...] = (InvalidInput, UnicodeEncodeError)

    @property
    def model(self) -> ModelInfo:
        """The model it scores with (:func:`load_model`'s: the monitors' too)."""
        return self._model

    def _score_sync(self, body: bytes) -> tuple[PredictionColumns, str, str]:
        from endpoint.inference import input_fn, predict_fn

        data = input_fn(body, "application/json")
        prediction = predict_fn(data, self._model)
        columns = PredictionColumns(prediction.labels, prediction.probabilities)
        return columns, prediction.model_name, prediction.model_version

    async def score(self, events: Sequence[ReviewEvent]) -> ScoringResult:
        started = time.perf_counter()
        try:
            columns, name, version = await asyncio.to_thread(self._score_sync, request_body(events))
        except self._refusals as err:
            raise ScoringRejected(str(err)) from err
        if len(columns) != len(events):
            raise ScoringRejected(f"the model answered {len(columns)} of {len(events)} instances")
        latency = (time.perf_counter() - started) * 1000.0
        return ScoringResult(columns, name, version, latency)
