"""``sentiment-monitor baseline build``, ``priors`` and ``bias``: the monitors on a CSV.

The commands read a reviews CSV, score it in this process with the model the pipeline uses
(``SENTIMENT_ENDPOINT__MODEL_DIR``, default: the shipped one, through the SageMaker handler of
:mod:`endpoint.inference`), hand plain arrays to the pure functions of :mod:`monitors`, and do
the file I/O themselves:

* ``baseline build --data CSV [--out baseline.json]`` writes the monitors' reference
  (:class:`monitors.Baseline`, built with :meth:`~monitors.Baseline.from_values`): class priors
  (the label shares when the CSV has labels, else the BBSE estimate from the model's
  validation confusion matrix), that confusion matrix ``[predicted, true]``, the predicted
  class mix overall and per category, and the reference histograms of review length (words,
  characters), rating (when the CSV has ratings), channel (when it has a ``channel`` column),
  category mix, out-of-vocabulary rate against the model's vocabulary and model confidence.
  ``run --baseline FILE`` (or ``SENTIMENT_MONITOR__BASELINE_PATH``) makes the monitors use it
  instead of learning one from the first events of the stream.
* ``priors --data CSV [--confidence 0.95]`` prints as JSON the naive estimate of the class
  priors (the predicted-label shares), BBSE and EM, each with a simultaneous interval, and the
  true shares when the CSV has labels (the labels are not needed).
* ``bias --data CSV [--facet product_category] [--label sentiment] [--positive 1]
  [--predicted]`` prints SageMaker Clarify's pre-training bias metrics of the whole file as
  the ``pre_training_bias_metrics`` section of Clarify's ``analysis.json``, on the CSV's labels
  or, with ``--predicted``, on the model's predicted sentiment.

CSV layouts: this project's (``sentiment, review_body, product_category``), the original
Kaggle file (``Title``, ``Review Text``, ``Rating``, ``Class Name``, ...), or any file with a
``review_text`` or ``review_body`` column and optionally ``sentiment`` (-1/0/1), ``rating``
(1-5), ``product_category`` and ``channel``. Rows without review text are skipped, as the
stream would dead-letter them; the Kaggle title is put before the text, as the replay does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import numpy.typing as npt
import typer
from rich.console import Console

from endpoint.data import read_review_csv
from stream.events import CHANNELS, LABELS

if TYPE_CHECKING:
    from endpoint.model import ModelInfo
    from monitors import Baseline

__all__ = [
    "ReviewTable",
    "ScoredTable",
    "baseline_app",
    "bias_command",
    "build_baseline",
    "load_model",
    "priors_command",
    "priors_report",
    "read_reviews",
    "score",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: Label value of a row without a label.
UNKNOWN = -2
#: Texts scored per call of the model (bounds the memory of one call).
_CHUNK = 2000

baseline_app = typer.Typer(
    name="baseline",
    help="Build the monitors' reference statistics from a reviews CSV.",
    no_args_is_help=True,
    add_completion=False,
)
_err = Console(stderr=True)


# -- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewTable:
    """The rows of a reviews CSV that carry review text, as columns.

    ``sentiment`` is -1/0/1 per row (``UNKNOWN`` where the row has no label) or None when the
    file has no label column; ``ratings`` is None without a rating column; ``channels`` None
    without a channel column. ``columns`` keeps every CSV column (as text), row-aligned."""

    texts: list[str]
    categories: list[str]
    sentiment: IntArray | None
    ratings: list[int | None] | None
    channels: list[str] | None
    columns: Mapping[str, list[str]]
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def labelled(self) -> bool:
        return self.sentiment is not None and bool(np.any(self.sentiment != UNKNOWN))

    def column(self, name: str) -> list[str] | None:
        """A CSV column by name, else a derived one (``sentiment`` from a rating,
        ``product_category`` from Kaggle's ``Class Name``, ``review_text``), else None."""
        if name in self.columns:
            return self.columns[name]
        if name == "sentiment" and self.sentiment is not None:
            return ["" if s == UNKNOWN else str(s) for s in self.sentiment.tolist()]
        if name == "product_category" and "Class Name" in self.columns:
            return self.categories
        if name == "review_text":
            return self.texts
        return None


def read_reviews(path: Path) -> ReviewTable:
    """Read a reviews CSV with :func:`endpoint.data.read_review_csv` (see the module
    docstring for the layouts), keeping the rows with review text. Raises ``ValueError`` for
    a file without a text column or a row with a label out of range, naming the row."""
    data = read_review_csv(path)
    kept = [r for r in data.rows if r.text]
    return ReviewTable(
        texts=[r.text for r in kept],
        categories=[r.category for r in kept],
        sentiment=(
            np.asarray([UNKNOWN if r.sentiment is None else r.sentiment for r in kept], np.int64)
            if data.labelled
            else None
        ),
        ratings=[r.rating for r in kept] if data.rating_column is not None else None,
        channels=[r.channel for r in kept] if "channel" in data.columns else None,
        columns={name: [r.cells[name] for r in kept] for name in data.columns},
        skipped=len(data) - len(kept),
    )


# -- scoring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredTable:
    """Class probabilities (n, 3) in class order (negative, neutral, positive) and the
    predicted sentiment (-1/0/1) of every row of a :class:`ReviewTable`."""

    probabilities: FloatArray
    predicted: IntArray

    @property
    def predicted_counts(self) -> IntArray:
        out: IntArray = np.bincount(self.predicted + 1, minlength=3).astype(np.int64)
        return out


def load_model(model_dir: Path | None = None) -> ModelInfo:
    """The model the pipeline scores with: ``model_dir``, else the settings' one, else the
    shipped one (loaded once per process: :func:`stream.scoring.load_model`)."""
    from stream.scoring import load_model as load
    from stream.settings import Settings

    return load(model_dir or Settings().endpoint.model_dir)


def score(model: ModelInfo, texts: Sequence[str]) -> ScoredTable:
    """Score ``texts`` in this process with the SageMaker handler's ``predict_fn``."""
    from endpoint.inference import predict_fn

    if not texts:
        return ScoredTable(np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
    parts = [predict_fn(texts[i : i + _CHUNK], model) for i in range(0, len(texts), _CHUNK)]
    return ScoredTable(
        np.concatenate([p.probabilities for p in parts]),
        np.concatenate([p.labels for p in parts]).astype(np.int64),
    )


def _validation_confusion(model: ModelInfo) -> IntArray | None:
    """The model's validation confusion matrix as ``[predicted, true]`` counts."""
    cm = model.confusion_matrix  # [true, predicted]
    return None if cm is None else np.ascontiguousarray(cm.T)


# -- the computations (no I/O; the statistics live in monitors) ------------------------------


def build_baseline(table: ReviewTable, scored: ScoredTable, model: ModelInfo) -> Baseline:
    """The monitors' reference for ``table`` scored by ``model`` (see the module docstring)."""
    from monitors import Baseline

    if not len(table):
        raise ValueError("a baseline needs at least one review with text")
    channels = table.channels
    if channels is not None and not set(channels) <= set(CHANNELS):
        unknown = sorted(set(channels) - set(CHANNELS))
        raise ValueError(f"unknown channels {unknown}; expected some of {list(CHANNELS)}")
    return Baseline.from_values(
        texts=table.texts,
        categories=table.categories,
        predicted=scored.predicted,
        probabilities=scored.probabilities,
        true=table.sentiment,
        ratings=table.ratings,
        channels=channels,
        vocabulary=model.vocabulary,
        confusion=_validation_confusion(model),
        contributions=_negative_contributions(model, table.texts, scored.predicted),
    )


def _negative_contributions(
    model: ModelInfo, texts: Sequence[str], predicted: IntArray
) -> list[dict[str, float]] | None:
    """Each predicted negative's per-term contributions to the negative score ({} for the
    others), in chunks; None for a transformer flavour (per-term evidence is the TF-IDF
    flavour's)."""
    from endpoint.explain import negative_contributions
    from endpoint.model import SentimentModel

    if not isinstance(model, SentimentModel):
        return None

    out: list[dict[str, float]] = [{} for _ in texts]
    idx = np.flatnonzero(predicted == -1).tolist()
    for lo in range(0, len(idx), _CHUNK):
        part = idx[lo : lo + _CHUNK]
        for i, row in zip(
            part, negative_contributions(model, [texts[i] for i in part]), strict=True
        ):
            out[i] = row
    return out


def priors_report(
    table: ReviewTable, scored: ScoredTable, model: ModelInfo, *, confidence: float
) -> dict[str, Any]:
    """The JSON document ``priors`` prints."""
    from monitors import prior_estimates

    if not len(table):
        raise ValueError("no review with text to score")
    estimates = prior_estimates(
        scored.probabilities,
        scored.predicted_counts,
        confusion=_validation_confusion(model),
        source_priors=model.class_priors,
        confidence=confidence,
    )
    doc: dict[str, Any] = {
        "classes": list(LABELS.values()),
        "count": len(table),
        "confidence_level": confidence,
        "model": {"name": model.name, "version": model.version},
        "source_priors": [round(float(v), 6) for v in model.class_priors],
        "estimates": {name: est.to_json() for name, est in estimates.items()},
    }
    if table.sentiment is not None and table.labelled:
        known = table.sentiment[table.sentiment != UNKNOWN]
        true = np.bincount(known + 1, minlength=3) / known.size
        doc["true"] = {
            "priors": [round(float(v), 6) for v in true],
            "count": int(known.size),
            "mean_absolute_error": {
                name: round(float(np.abs(est.priors - true).mean()), 6)
                for name, est in estimates.items()
            },
        }
    return doc


# -- commands --------------------------------------------------------------------------------

_DATA_HELP = "Reviews CSV (sentiment/review_body/product_category, Kaggle's, or review_text)."


def _read(data: Path) -> ReviewTable:
    try:
        table = read_reviews(data)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--data") from err
    if table.skipped:
        _err.print(f"rows without review text skipped: {table.skipped:,}")
    if not len(table):
        raise typer.BadParameter(f"{data}: no row with review text", param_hint="--data")
    return table


def _confidence(value: float) -> float:
    if not 0.0 < value < 1.0:
        raise typer.BadParameter("must be strictly between 0 and 1")
    return value


@baseline_app.callback()
def baseline() -> None:
    """Build the monitors' reference statistics from a reviews CSV."""


@baseline_app.command("build")
def baseline_build(
    data: Annotated[Path, typer.Option(exists=True, dir_okay=False, help=_DATA_HELP)],
    out: Annotated[
        Path, typer.Option(dir_okay=False, help="Where to write the baseline JSON.")
    ] = Path("baseline.json"),
) -> None:
    """Score a CSV with the model and save the monitors' baseline (for run --baseline)."""
    from monitors import dumps_baseline

    table = _read(data)
    model = load_model()
    scored = score(model, table.texts)
    try:
        b = build_baseline(table, scored, model)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--data") from err
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dumps_baseline(b) + "\n", encoding="utf-8")
    source = "labels" if b.true_counts is not None else "BBSE estimate (no labels)"
    mix = "/".join(f"{v:.1%}" for v in b.priors)
    _err.print(
        f"baseline of {b.n:,} reviews written to {out}\n"
        f"  priors (neg/neu/pos): {mix} from {source}\n"
        f"  features: {', '.join(b.features)}"
    )


def priors_command(
    data: Annotated[Path, typer.Option(exists=True, dir_okay=False, help=_DATA_HELP)],
    confidence: Annotated[
        float,
        typer.Option(callback=_confidence, help="Confidence level of the simultaneous intervals."),
    ] = 0.95,
) -> None:
    """Estimate the class priors of a CSV (naive, BBSE, EM) and print them as JSON."""
    table = _read(data)
    model = load_model()
    scored = score(model, table.texts)
    typer.echo(json.dumps(priors_report(table, scored, model, confidence=confidence), indent=2))


def bias_command(
    data: Annotated[Path, typer.Option(exists=True, dir_okay=False, help=_DATA_HELP)],
    facet: Annotated[str, typer.Option(help="Facet column.")] = "product_category",
    label: Annotated[str, typer.Option(help="Label column (its name, with --predicted).")] = (
        "sentiment"
    ),
    positive: Annotated[str, typer.Option(help="The positive label value.")] = "1",
    predicted: Annotated[
        bool, typer.Option("--predicted", help="Use the model's predicted sentiment as label.")
    ] = False,
) -> None:
    """Clarify's pre-training bias metrics of a CSV, per facet value, as analysis.json."""
    from monitors import bias_report

    table = _read(data)
    facet_values = table.column(facet)
    if facet_values is None:
        raise typer.BadParameter(f"{data} has no column {facet!r}", param_hint="--facet")
    if predicted:
        scored = score(load_model(), table.texts)
        labels = [str(v) for v in scored.predicted.tolist()]
    else:
        found = table.column(label)
        if found is None:
            raise typer.BadParameter(f"{data} has no column {label!r}", param_hint="--label")
        labels = found
    try:
        doc = bias_report(facet_values, labels, facet=facet, label=label, positive=positive)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--data") from err
    typer.echo(json.dumps(doc, indent=2))
