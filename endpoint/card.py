"""The model card: a Markdown page beside the weights (``MODEL_CARD.md``) that says what the
model is, what it was trained on and how it was split, how well it does per class, how its
probabilities are calibrated and how fast it scores.

It is rendered from ``model.json`` alone (:func:`model_card`), so it never disagrees with the
model it sits beside; ``model train`` writes it with the model (:func:`write_model_card`) and
``model package`` puts it in the SageMaker archive.

Public API::

    CARD_FILE = "MODEL_CARD.md"
    model_card(metadata) -> str                 # Markdown, from a model's metadata
    write_model_card(model_dir) -> Path         # from model_dir/model.json
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .model import LABELS, MODEL_FILE

__all__ = ["CARD_FILE", "model_card", "write_model_card"]

CARD_FILE = "MODEL_CARD.md"


def _f(value: object, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "n/a"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _calibration(cal: Mapping[str, Any] | None) -> list[str]:
    if cal is None:
        return ["None: probabilities are the plain softmax of the linear scores."]
    t = cal.get("temperature")
    temps = ", ".join(_f(x) for x in t) if isinstance(t, list) else _f(t)
    lines = [
        f"- Method: {cal.get('method', 'n/a')}; temperature {temps}; biases "
        + ", ".join(_f(b) for b in cal.get("bias", [])),
        f"- Fitted on: {cal.get('fitted_on', 'n/a')}.",
    ]
    chosen: Mapping[str, float] = cal.get("cross_validated_log_loss", {})
    if chosen:
        lines.append(
            "- Chosen by the smaller cross-validated log loss on those reviews: "
            + ", ".join(f"{m} {_f(v)}" for m, v in chosen.items())
            + "."
        )
    figures = cal.get("validation", {})
    ece, loss = figures.get("expected_calibration_error", {}), figures.get("log_loss", {})
    if ece or loss:
        lines += [
            "",
            *_table(
                ("validation", "before", "after"),
                [
                    (
                        "expected calibration error (15 bins)",
                        _f(ece.get("before")),
                        _f(ece.get("after")),
                    ),
                    ("log loss", _f(loss.get("before")), _f(loss.get("after"))),
                ],
            ),
        ]
    return lines


def _features_line(
    features: Sequence[Mapping[str, Any]],
    encoder: Mapping[str, Any] | None,
    classifier: Mapping[str, Any],
    recipe: Mapping[str, Any],
) -> str:
    """The TF-IDF blocks, a transformer flavour's encoder, or an ensemble's members."""
    weights: Mapping[str, Any] | None = classifier.get("weights")
    if weights is not None:
        search: Mapping[str, Any] = classifier.get("weight_search", {})
        return (
            "- Members (their calibrated log-probabilities summed with these weights): "
            + ", ".join(f"{name} {_f(w, 2)}" for name, w in weights.items())
            + f"; the weights from a grid in steps of {search.get('grid_step', '?')}, the one "
            f"with the lowest {search.get('folds', '?')}-fold cross-validated log loss on "
            f"{search.get('fitted_on', 'n/a')}."
        )
    if encoder is None:
        return "- Features: " + "; ".join(
            f"{b.get('analyzer', '?')} {tuple(b.get('ngram_range', ()))} TF-IDF, "
            f"{b.get('n_terms', '?')} terms"
            for b in features
        )
    source: Mapping[str, Any] = classifier.get("pretrained", {})
    wheel = str(source.get("wheel", "n/a"))
    layers = int(encoder.get("layers", 0))
    frozen = int(recipe.get("frozen_layers", 0))
    tuned = (
        f"the top {layers - frozen} of {layers} layers and the head (the embeddings and the "
        f"{frozen} layers below kept as pre-trained)"
        if frozen
        else f"the embeddings, all {layers} layers and the head"
    )
    return (
        f"- Encoder: {source.get('model', 'n/a')} ({source.get('parameters', '?')} parameters, "
        f"from the wheel{'s' if ',' in wheel else ''} `{wheel}`), fine-tuned: {tuned}; "
        f"hidden size {encoder.get('hidden')}, reviews truncated to "
        f"{encoder.get('max_length')} tokens, mean pooling, linear head."
    )


def model_card(metadata: Mapping[str, Any]) -> str:
    """The card of a model with this ``model.json`` content."""
    training: Mapping[str, Any] = metadata.get("training", {})
    validation: Mapping[str, Any] = metadata.get("validation", {})
    features: Sequence[Mapping[str, Any]] = metadata.get("features", [])
    speed: Mapping[str, Any] | None = metadata.get("speed")
    per_class: Mapping[str, Mapping[str, Any]] = validation.get("per_class", {})
    lines = [
        f"# Model card: {metadata.get('name', 'model')} {metadata.get('version', '')}".rstrip(),
        "",
        str(metadata.get("description", "")),
        "",
        "## Data and split",
        "",
        f"- Data: `{training.get('data', 'n/a')}` ({training.get('rows', 'n/a')} reviews, "
        f"sha256 `{training.get('data_sha256', 'n/a')}`).",
        f"- Split: {training.get('split', 'n/a')}: {training.get('train_rows', 'n/a')} "
        f"training reviews, {training.get('validation_rows', 'n/a')} validation reviews.",
        f"- {training.get('note', '')}".rstrip(),
        "- Class shares of the training reviews (negative, neutral, positive): "
        + ", ".join(_f(p) for p in metadata.get("class_priors", [])),
        _features_line(
            features,
            metadata.get("encoder"),
            metadata.get("classifier", {}),
            training.get("config", {}),
        ),
        f"- Trained with scikit-learn {training.get('scikit_learn', 'n/a')}, numpy "
        f"{training.get('numpy', 'n/a')}; recipe: `{training.get('config', {})}`.",
        *(
            [f"- Fine-tuned on: {training['fine_tuned_on']}."]
            if "fine_tuned_on" in training
            else []
        ),
        "",
        "## Validation (reviews the model never saw)",
        "",
        f"Accuracy {_f(validation.get('accuracy'))}, macro-F1 {_f(validation.get('macro_f1'))}, "
        f"log loss {_f(validation.get('log_loss'))}, expected calibration error "
        f"{_f(validation.get('expected_calibration_error'))}.",
        "",
        *_table(
            ("class", "precision", "recall", "F1", "support"),
            [
                (
                    label,
                    _f(per_class.get(label, {}).get("precision")),
                    _f(per_class.get(label, {}).get("recall")),
                    _f(per_class.get(label, {}).get("f1")),
                    str(per_class.get(label, {}).get("support", "n/a")),
                )
                for label in LABELS
            ],
        ),
        "",
        "Confusion matrix (rows: true class, columns: predicted class):",
        "",
        *_table(
            ("true \\ predicted", *LABELS),
            [
                (label, *(str(v) for v in row))
                for label, row in zip(
                    LABELS, validation.get("confusion_matrix", {}).get("counts", []), strict=False
                )
            ],
        ),
        "",
        "## Calibration",
        "",
        *_calibration(metadata.get("calibration")),
        "",
        "## Speed",
        "",
        (
            f"{speed['reviews_per_s']:,.0f} reviews/s: {speed.get('what', '')} "
            f"({speed.get('reviews', '?')} reviews, a machine with {speed.get('cpu_count', '?')} "
            "cores; a figure of the machine that trained it, not a guarantee)."
            if speed
            else "Not measured."
        ),
        "",
        *_selection(metadata.get("selection")),
    ]
    return "\n".join(lines)


def _selection(sel: Mapping[str, Any] | None) -> list[str]:
    """How ``model select`` picked the model (nothing for a model trained directly)."""
    if sel is None:
        return []
    split, held = sel.get("split", {}), sel.get("holdout", {})
    lines = [
        "## Selection",
        "",
        f"- {sel.get('method', 'n/a')}.",
        f"- {sel.get('trials', '?')} candidates in {sel.get('search_s', '?')} s (budget "
        f"{sel.get('budget_s', '?')} s); speed budget {sel.get('min_reviews_per_s', '?')} "
        "reviews/s.",
        f"- Split: {split.get('train', '?')} training, {split.get('validation', '?')} validation "
        f"(ranking), {split.get('holdout', '?')} held-out reviews"
        + (
            f"; the winner then trained again on all "
            f"{split.get('train', 0) + split.get('validation', 0)} search reviews, so its "
            "validation reviews above are the held-out ones."
            if sel.get("refit")
            else "."
        ),
        f"- Held out (never seen by the search or the training): macro-F1 "
        f"{_f(held.get('macro_f1'))}, accuracy {_f(held.get('accuracy'))}, expected calibration "
        f"error {_f(held.get('expected_calibration_error'))}.",
        "",
        *_table(
            ("rank", "recipe", "macro-F1", "accuracy", "reviews/s", "size MB", "fast enough"),
            [
                (
                    str(rank),
                    str(c.get("recipe", "?")),
                    _f(c.get("macro_f1"), 4),
                    _f(c.get("accuracy")),
                    f"{c.get('reviews_per_s', 0):,.0f}",
                    _f(c.get("size_bytes", 0) / 1e6, 2),
                    "yes" if c.get("feasible") else "no",
                )
                for rank, c in enumerate(sel.get("leaderboard", []), 1)
            ],
        ),
        "",
    ]
    return lines


def write_model_card(model_dir: str | Path) -> Path:
    """Write ``model_dir/MODEL_CARD.md`` from ``model_dir/model.json``."""
    root = Path(model_dir)
    metadata = json.loads((root / MODEL_FILE).read_text(encoding="utf-8"))
    path = root / CARD_FILE
    path.write_text(model_card(metadata), encoding="utf-8")
    return path
