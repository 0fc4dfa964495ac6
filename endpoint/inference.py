"""SageMaker inference handler for the sentiment model (numpy only).

The SageMaker framework containers (scikit-learn, PyTorch, ...) import ``code/inference.py``
of the model archive as a top-level module and call, per request::

    model = model_fn(model_dir)                       # once per worker
    data = input_fn(request_body, request_content_type)
    prediction = predict_fn(data, model)
    body, content_type = output_fn(prediction, accept)

This module works both as ``endpoint.inference`` (in this project: the local server and the
in-process scorer use it) and alone as ``code/inference.py`` with ``code/model.py`` beside it
(it then loads that sibling file by path, under a private module name).

Request content types (parameters such as ``; charset=utf-8`` are ignored; UTF-8 only):

* ``application/json``: ``{"instances": [instance, ...]}`` or a bare list of instances; an
  instance is a review text (string) or a review event object, whose ``review_text`` (or
  ``review_body``) is scored.
* ``application/jsonlines`` (also ``application/jsonl``, ``application/x-jsonlines``): one
  instance (JSON string or object) per non-blank line.
* ``text/csv`` (RFC 4180, quotes allowed): if the first record has a ``review_text`` or
  ``review_body`` column it is a header and that column is scored; otherwise every record
  must be a single field (quote texts that contain commas), one text per record.

Explanations: a JSON request may carry ``"explain": true`` (the 10 largest terms per
prediction) or ``"explain": k`` (the ``k`` largest) beside ``"instances"``; any request may
ask with an Accept parameter instead, ``application/json;verbose`` (10 terms) or
``application/json;verbose=k`` (also for JSON Lines). Each prediction then also carries
``"explanation"``: the exact per-term contributions to each class score (``explain.py``:
coefficient times TF-IDF value, the SHAP values of the linear model against the empty review)::

    "explanation": {"predicted": "negative", "base": {class: intercept},
                    "logits": {class: score}, "remainder": {class: sum of unlisted terms},
                    "terms": [{"term": t, "value": tfidf, "negative": c, "neutral": c,
                               "positive": c}, ...]}

Without either, the response is exactly the one below.

Response (``Accept``: ``application/json``, the default, also for a missing Accept, ``*/*``)::

    {"predictions": [{"label": -1 | 0 | 1, "sentiment_label": "negative" | ...,
                      "probabilities": {"negative": p, "neutral": p, "positive": p}}, ...],
     "model_name": "...", "model_version": "..."}

or, for ``Accept: application/jsonlines``, one prediction object per line, each also carrying
``model_name`` and ``model_version``. Predictions are in request order.

Errors: a malformed body, an empty request or an unsupported content type / Accept raises
:class:`InvalidInput` (a ``ValueError``; subclasses :class:`UnsupportedContentType` and its
:class:`UnsupportedAccept`). The local server answers them on the runtime route with HTTP 400
``ValidationError``, on the container route with 400 (415 / 406 for the subclasses).

Public API::

    model_fn(model_dir) -> ModelInfo    # Sentiment-, Transformer- or EnsembleModel (its flavour)
    input_fn(request_body: bytes | str, request_content_type: str | None) -> Instances
    predict_fn(input_data: Sequence[str], model) -> Prediction
    output_fn(prediction, accept: str | None) -> tuple[bytes, str]    # (body, content type)
    handle(body, content_type, accept, model) -> tuple[bytes, str]    # all three in one
    default_model_dir() -> Path                                       # the shipped model
    InvalidInput, UnsupportedContentType(InvalidInput), UnsupportedAccept(...), Prediction,
    Instances (the list input_fn returns; ``.explain``: terms asked for, or None)
    JSON, JSONLINES, CSV (content type names)
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt


def _load_sibling(file: str, name: str) -> Any:
    """A module beside this file, loaded by path under a private name (inside a SageMaker
    container, where this module is the top-level ``inference``)."""
    import importlib.util
    import sys

    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(file))
        if spec is None or spec.loader is None:
            raise ImportError(f"{file} not found beside inference.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


if TYPE_CHECKING or __package__:
    from . import explain as _explain
    from .model import CLASSES, LABELS, MODEL_FILE, InvalidInput, ModelInfo, SentimentModel
else:  # top-level ``inference`` inside a SageMaker container: load ./model.py by path
    _model_module = _load_sibling("model.py", "_sentiment_endpoint_model")
    _explain = _load_sibling("explain.py", "_sentiment_endpoint_explain")
    CLASSES = _model_module.CLASSES
    LABELS = _model_module.LABELS
    InvalidInput = _model_module.InvalidInput
    MODEL_FILE = _model_module.MODEL_FILE
    ModelInfo = _model_module.ModelInfo
    SentimentModel = _model_module.SentimentModel

__all__ = [
    "CSV",
    "DEFAULT_EXPLAIN_TERMS",
    "JSON",
    "JSONLINES",
    "Instances",
    "InvalidInput",
    "Prediction",
    "UnsupportedAccept",
    "UnsupportedContentType",
    "default_model_dir",
    "handle",
    "input_fn",
    "model_fn",
    "output_fn",
    "predict_fn",
]

JSON = "application/json"
JSONLINES = "application/jsonlines"
CSV = "text/csv"
_JSONLINES_ALIASES = frozenset({JSONLINES, "application/jsonl", "application/x-jsonlines"})
_TEXT_FIELDS = ("review_text", "review_body")
#: Terms per explanation for ``"explain": true`` and a bare ``verbose`` Accept parameter.
DEFAULT_EXPLAIN_TERMS = 10


class UnsupportedContentType(InvalidInput):
    """The request's content type is not supported (HTTP 415 from a container)."""


class UnsupportedAccept(UnsupportedContentType):
    """The response type asked for in Accept is not supported (HTTP 406 from a container)."""


class Instances(list[str]):
    """The texts :func:`input_fn` decoded, with the number of explanation terms the request
    asked for in its body (``explain``; None: none)."""

    explain: int | None = None


@dataclass(frozen=True)
class Prediction:
    """What :func:`predict_fn` returns: probabilities (n, 3) in class order [-1, 0, 1] and
    the model's identity, which :func:`output_fn` writes into the response; with the texts
    and the model, so that :func:`output_fn` can explain them when asked (``explain``: terms
    the request body asked for)."""

    probabilities: npt.NDArray[np.float64]
    model_name: str
    model_version: str
    texts: Sequence[str] = field(default=(), repr=False, compare=False)
    model: ModelInfo | None = field(default=None, repr=False, compare=False)
    explain: int | None = None

    def explanations(self, top_k: int) -> list[dict[str, Any]]:
        """One explanation object per instance (see the module doc); per-term explanations
        are the TF-IDF flavour's (another flavour's request is an :class:`InvalidInput`)."""
        if self.model is None or len(self.texts) != len(self.probabilities):
            raise ValueError("this prediction holds no model and texts to explain")
        if not isinstance(self.model, SentimentModel):
            raise InvalidInput(
                "explanations are per-term contributions of the tfidf flavour; this endpoint "
                f"serves the {self.model.flavour} flavour"
            )
        return [e.to_json() for e in _explain.explain(self.model, self.texts, top_k)]

    @property
    def labels(self) -> npt.NDArray[np.int64]:
        out: npt.NDArray[np.int64] = np.asarray(CLASSES, dtype=np.int64)[
            np.argmax(self.probabilities, axis=1)
        ]
        return out

    def records(self) -> list[dict[str, Any]]:
        """One response object per instance."""
        out = []
        for row in self.probabilities.tolist():
            k = max(range(len(CLASSES)), key=row.__getitem__)
            out.append(
                {
                    "label": CLASSES[k],
                    "sentiment_label": LABELS[k],
                    "probabilities": dict(zip(LABELS, row, strict=True)),
                }
            )
        return out


def default_model_dir() -> Path:
    """The model shipped with the package (``endpoint/model_data``)."""
    return Path(__file__).resolve().parent / "model_data"


# -- the handler contract -------------------------------------------------------------------


def model_fn(model_dir: str | Path) -> ModelInfo:
    """Load the model in ``model_dir``, whichever its flavour (``model.json``'s
    ``flavour``): the TF-IDF model (``model.json``, ``weights.npz``), a fine-tuned
    transformer (``endpoint.transformer``) or an ensemble of them (``endpoint.ensemble``,
    its members loaded by this function)."""
    meta_path = Path(model_dir) / MODEL_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"model file missing: {meta_path}")
    flavour = json.loads(meta_path.read_text(encoding="utf-8")).get("flavour", "tfidf")
    if flavour == "tfidf":
        return SentimentModel.load(model_dir)
    model: ModelInfo
    if flavour == "ensemble":
        model = _sibling("ensemble").EnsembleModel.load(model_dir, model_fn)
    else:
        model = _sibling("transformer").TransformerModel.load(model_dir)
    return model


def _sibling(name: str) -> Any:
    """The handler module ``name`` (``transformer``, ``ensemble``) of this package, or the
    file beside this one inside a SageMaker container; imported on first use, since the
    TF-IDF flavour needs neither."""
    if __package__:
        import importlib

        return importlib.import_module(f".{name}", __package__)
    return _load_sibling(f"{name}.py", f"_sentiment_endpoint_{name}")


def input_fn(
    request_body: bytes | bytearray | memoryview | str, request_content_type: str | None
) -> Instances:
    """Decode a request body into the review texts to score (a list, with the request's
    ``explain`` wish)."""
    kind = _media_type(request_content_type)
    text = _decode(request_body)
    if kind == JSON:
        texts = _from_json(text)
    elif kind in _JSONLINES_ALIASES:
        texts = _from_jsonlines(text)
    elif kind == CSV:
        texts = _from_csv(text)
    else:
        raise UnsupportedContentType(
            f"unsupported content type {request_content_type!r}: use {JSON}, {JSONLINES} or {CSV}"
        )
    if not texts:
        raise InvalidInput("the request holds no instances")
    return texts if isinstance(texts, Instances) else Instances(texts)


def predict_fn(input_data: Sequence[str], model: ModelInfo) -> Prediction:
    """Score the texts."""
    return Prediction(
        model.predict_proba(input_data),
        model.name,
        model.version,
        texts=input_data,
        model=model,
        explain=getattr(input_data, "explain", None),
    )


def output_fn(prediction: Prediction, accept: str | None) -> tuple[bytes, str]:
    """Serialise ``prediction`` as JSON (default) or JSON Lines; returns (body, type).
    Explanations are added when the request body or ``accept`` asked for them."""
    kind = _accepted(accept)
    records = prediction.records()
    top_k = prediction.explain or _verbose(accept)
    if top_k:
        for r, e in zip(records, prediction.explanations(top_k), strict=True):
            r["explanation"] = e
    if kind == JSON:
        doc = {
            "predictions": records,
            "model_name": prediction.model_name,
            "model_version": prediction.model_version,
        }
        return json.dumps(doc, ensure_ascii=False).encode("utf-8"), JSON
    ident = {"model_name": prediction.model_name, "model_version": prediction.model_version}
    lines = [json.dumps({**r, **ident}, ensure_ascii=False) for r in records]
    return ("\n".join(lines) + "\n").encode("utf-8"), JSONLINES


def handle(
    body: bytes | bytearray | memoryview | str,
    content_type: str | None,
    accept: str | None,
    model: ModelInfo,
) -> tuple[bytes, str]:
    """``output_fn(predict_fn(input_fn(body, content_type), model), accept)``; the Accept
    header is checked first, so an unsupported one costs no scoring."""
    _accepted(accept)
    _verbose(accept)
    return output_fn(predict_fn(input_fn(body, content_type), model), accept)


# -- helpers --------------------------------------------------------------------------------


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _accepted(accept: str | None) -> str:
    """The response type for an Accept header: the first supported entry, in order."""
    if accept is None or not accept.strip():
        return JSON
    for entry in accept.split(","):
        kind = _media_type(entry)
        if kind in (JSON, "*/*", "application/*"):
            return JSON
        if kind in _JSONLINES_ALIASES:
            return JSONLINES
    raise UnsupportedAccept(f"unsupported Accept {accept!r}: use {JSON} or {JSONLINES}")


def _verbose(accept: str | None) -> int | None:
    """Explanation terms asked for by the ``verbose`` parameter of the Accept entry
    :func:`_accepted` picks (``verbose``, ``verbose=true``: the default number; ``verbose=k``;
    ``verbose=false`` or ``0``: none)."""
    if accept is None:
        return None
    for entry in accept.split(","):
        kind = _media_type(entry)
        if kind in (JSON, "*/*", "application/*") or kind in _JSONLINES_ALIASES:
            for param in entry.split(";")[1:]:
                key, _, value = param.partition("=")
                if key.strip().lower() == "verbose":
                    return _explain_terms(value.strip().strip('"').lower() or True, "verbose")
            return None
    return None


def _explain_terms(value: object, where: str) -> int | None:
    """Terms asked for by an ``explain`` / ``verbose`` value (None: no explanation)."""
    if value is True or value == "true":
        return DEFAULT_EXPLAIN_TERMS
    if value is False or value is None or value in ("false", "0", 0):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise InvalidInput(f"{where} must be true, false or a number of terms, got {value!r:.40}")


def _decode(body: bytes | bytearray | memoryview | str) -> str:
    if isinstance(body, str):
        return body
    if not isinstance(body, bytes | bytearray | memoryview):
        raise InvalidInput(f"request body must be bytes or str, got {type(body).__name__}")
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInput(f"request body is not valid UTF-8: {err}") from None
    return text.removeprefix("\ufeff")


def _instance_text(item: object, where: str) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        for key in _TEXT_FIELDS:
            value = item.get(key)
            if isinstance(value, str):
                return value
        raise InvalidInput(f"{where}: an object instance needs a string 'review_text'")
    raise InvalidInput(
        f"{where}: expected a review text (string) or an object with 'review_text', "
        f"got {type(item).__name__}"
    )


def _from_json(text: str) -> list[str]:
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise InvalidInput(f"malformed JSON: {err}") from None
    except RecursionError:
        raise InvalidInput("malformed JSON: nested too deeply") from None
    explain = None
    if isinstance(doc, dict):
        if "instances" not in doc:
            raise InvalidInput('a JSON request must be {"instances": [...]} or a list')
        explain = _explain_terms(doc.get("explain"), '"explain"')
        doc = doc["instances"]
    if not isinstance(doc, list):
        raise InvalidInput('"instances" must be a list of texts or review objects')
    out = Instances(_instance_text(item, f"instance {i}") for i, item in enumerate(doc))
    out.explain = explain
    return out


def _from_jsonlines(text: str) -> list[str]:
    texts = []
    # Lines end at \n only: JSON strings may hold other line separators (U+2028, \x1c, ...).
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as err:
            raise InvalidInput(f"line {n}: malformed JSON: {err}") from None
        except RecursionError:
            raise InvalidInput(f"line {n}: malformed JSON: nested too deeply") from None
        texts.append(_instance_text(item, f"line {n}"))
    return texts


def _from_csv(text: str) -> list[str]:
    try:
        rows = [r for r in csv.reader(io.StringIO(text, newline=""), strict=True) if r]
    except csv.Error as err:
        raise InvalidInput(f"malformed CSV: {err}") from None
    if not rows:
        return []
    header = [h.strip().lower() for h in rows[0]]
    column = next((header.index(f) for f in _TEXT_FIELDS if f in header), None)
    if column is not None:
        out = []
        for n, row in enumerate(rows[1:], start=2):
            if column >= len(row):
                raise InvalidInput(f"CSV record {n} has no {header[column]} field")
            out.append(row[column])
        return out
    for n, row in enumerate(rows, start=1):
        if len(row) != 1:
            raise InvalidInput(
                f"CSV record {n} has {len(row)} fields: send one text per record (quote texts "
                "that contain commas) or a header with a review_text column"
            )
    return [row[0] for row in rows]
