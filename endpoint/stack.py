"""Train the ensemble flavour (:mod:`endpoint.ensemble`): a fine-tuned transformer stacked with
the TF-IDF recipe, with figures as honest as each member's.

The transformer member is a model directory ``model train --flavour minilm|mpnet`` wrote. Its
``model.json`` records the data's SHA-256 and its split (seed, validation share, calibration
share); the split is drawn again on the same data, which must hash the same and have as many
rows. Then:

* the TF-IDF member is the shipped recipe (:class:`endpoint.train.TrainConfig`) fitted on
  exactly the rows the transformer was fine-tuned on, its own calibration on their
  out-of-fold scores;
* the ensemble's weight ``w`` (transformer ``w``, TF-IDF ``1 - w``) is the value of a grid in
  steps of :data:`WEIGHT_STEP` whose calibrated ensemble has the lowest log loss on the
  calibration share, cross-validated (:data:`WEIGHT_FOLDS` stratified, seeded folds, fewer
  when a class has fewer reviews there: the calibration fitted on the other folds, the loss
  taken on the one left out); the ensemble's calibration is then fitted on the whole share.
  Neither member was fitted on it. With ``calibration_method="auto"`` the grid is searched
  for each method and the method and weight of the smallest loss are taken.
* the validation reviews, which no member, weight or calibration saw, give the figures in
  ``model.json`` and the model card, as for every flavour.

Public API::

    StackConfig(weight_step=0.05, weight_folds=5, calibration_method="vector",
                name="review-sentiment")
    stack(reviews, transformer, config) -> TrainResult     # nothing written
    stack_and_save(data, transformer_dir, out_dir, config) -> TrainResult   # with MODEL_CARD.md
    weight_losses(member_scores, labels, weights, folds, seed, method) -> list[float]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .calibration import (
    CHOICES,
    METHODS,
    Choice,
    Method,
    ScalingChoice,
    best_method,
    cross_validated_log_loss,
    fit_scaling,
    stratified_folds,
)
from .ensemble import EnsembleModel, combine, log_probabilities
from .finetune import split_rows
from .inference import model_fn
from .model import ModelInfo, calibrated_softmax
from .train import (
    Reviews,
    TrainConfig,
    TrainResult,
    _speed,
    _validate,
    evaluation_metadata,
    export_model,
    fit_recipe,
    load_reviews,
    save_model,
    train_result,
)

__all__ = [
    "WEIGHT_FOLDS",
    "WEIGHT_STEP",
    "StackConfig",
    "stack",
    "stack_and_save",
    "weight_losses",
]

#: The weight grid's step, and the folds its log loss is cross-validated over.
WEIGHT_STEP, WEIGHT_FOLDS = 0.05, 5

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class StackConfig:
    """How the ensemble's weight and calibration are fitted."""

    weight_step: float = WEIGHT_STEP
    weight_folds: int = WEIGHT_FOLDS
    calibration_method: Choice = "vector"
    name: str = "review-sentiment"

    def __post_init__(self) -> None:
        if not 0.0 < self.weight_step <= 1.0:
            raise ValueError("weight_step must be in (0, 1]")
        if self.weight_folds < 2:
            raise ValueError("weight_folds must be >= 2")
        if self.calibration_method not in CHOICES:
            raise ValueError(f"calibration_method must be one of {list(CHOICES)}")


def weight_losses(
    member_scores: Sequence[FloatArray],
    labels: npt.NDArray[np.int64],
    weights: Sequence[float],
    folds: int,
    seed: int,
    method: Method,
) -> list[float]:
    """For each first-member weight ``w`` in ``weights`` (the second member gets ``1 - w``),
    the cross-validated log loss of the calibrated two-member ensemble: per stratified fold,
    the calibration fitted on the others and the mean NLL taken on it, weighted by fold size.
    ``member_scores``: two (n, 3) matrices of log-probabilities; ``labels``: classes -1/0/1."""
    if len(member_scores) != 2:
        raise ValueError("weight_losses weighs two members")
    y = np.asarray(labels, dtype=np.int64) + 1
    splits = stratified_folds(y, folds, seed)
    return [
        cross_validated_log_loss(combine(member_scores, (w, 1.0 - w)), y, method, splits)
        for w in weights
    ]


def _member_split(
    reviews: Reviews, member: ModelInfo
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], dict[str, Any]]:
    """The transformer member's fine-tuning, calibration and validation rows, drawn again from
    its recorded split (refused unless ``reviews`` hash as its training data did)."""
    training = member.metadata.get("training", {})
    config = training.get("config", {})
    if member.flavour in ("tfidf", "ensemble") or "calibration_size" not in config:
        raise ValueError(
            f"the ensemble's first member is a fine-tuned transformer model directory; "
            f"this one is the {member.flavour} flavour"
        )
    if training.get("data_sha256") != reviews.sha256 or training.get("rows") != len(reviews):
        raise ValueError(
            f"--data is not the data the {member.flavour} member was trained on (SHA-256 "
            f"{str(training.get('data_sha256'))[:12]}..., given {reviews.sha256[:12]}...): "
            "its split cannot be drawn again, so the figures would not be honest"
        )
    rows = split_rows(reviews, config["test_size"], config["calibration_size"], config["seed"])
    return *rows, config


def stack(
    reviews: Reviews, transformer: ModelInfo, config: StackConfig | None = None
) -> TrainResult:
    """Fit the TF-IDF member, the weight and the calibration as the module docstring says,
    and validate the ensemble of ``transformer`` (fine-tuned on ``reviews``); nothing is
    written."""
    config = config or StackConfig()
    started = time.perf_counter()
    fit_idx, cal_idx, valid_idx, member_config = _member_split(reviews, transformer)
    seed = int(member_config["seed"])
    texts = reviews.texts
    tfidf_config = TrainConfig(seed=seed)
    pipeline, tfidf_cal = fit_recipe(
        [texts[i] for i in fit_idx], reviews.labels[fit_idx], tfidf_config
    )
    tfidf = export_model(pipeline, {"name": f"{config.name}-tfidf", "flavour": "tfidf"})
    if tfidf_cal is not None:
        tfidf.metadata["calibration"] = tfidf_cal.calibration.to_json()
    members = (transformer, tfidf)

    def scores(rows: npt.NDArray[np.int64]) -> list[FloatArray]:
        batch = [texts[i] for i in rows]
        return [log_probabilities(m, batch) for m in members]

    y_cal, y_valid = reviews.labels[cal_idx], reviews.labels[valid_idx]
    rarest = int(np.bincount(y_cal + 1, minlength=3).min())
    if rarest < 2:
        raise ValueError(
            f"the calibration share has {rarest} review(s) of a class; weighing the members "
            "needs at least 2 of each (more data)"
        )
    cal_scores = scores(cal_idx)
    grid = [round(v, 10) for v in np.arange(0.0, 1.0 + 1e-9, config.weight_step)]
    folds = min(config.weight_folds, rarest)
    choice = config.calibration_method
    methods = METHODS if choice == "auto" else (choice,)
    by_method = {m: weight_losses(cal_scores, y_cal, grid, folds, seed, m) for m in methods}
    # "auto": the method and weight of the smallest loss
    method = best_method({m: min(v) for m, v in by_method.items()})
    losses = by_method[method]
    w = grid[int(np.argmin(losses))]
    weights = (w, round(1.0 - w, 10))
    calibration = fit_scaling(combine(cal_scores, weights), y_cal + 1, method)
    chosen = ScalingChoice(
        calibration, {m: min(v) for m, v in by_method.items()} if choice == "auto" else {}
    )
    valid_members = scores(valid_idx)
    valid_scores = combine(valid_members, weights)
    raw = _validate(calibrated_softmax(valid_scores), y_valid)
    validation = _validate(calibration.apply(valid_scores), y_valid)
    singles = {
        m.flavour: _validate(np.exp(s), y_valid).macro_f1
        for m, s in zip(members, valid_members, strict=True)
    }
    meta: dict[str, Any] = {
        "name": config.name,
        "description": (
            f"Review sentiment: the {transformer.flavour} flavour and the TF-IDF recipe "
            "stacked; scores z are the weighted sum of the members' calibrated "
            "log-probabilities, centred per row, and probabilities softmax(z / T + b) with the "
            "ensemble's calibration."
        ),
        "classifier": {
            "type": "weighted_log_probability_ensemble",
            "weights": dict(zip((transformer.flavour, "tfidf"), weights, strict=True)),
            "weight_search": {
                "grid_step": config.weight_step,
                "folds": folds,
                "log_loss": dict(zip((f"{v:g}" for v in grid), losses, strict=True)),
                "fitted_on": f"the {len(cal_idx)} reviews of the calibration share",
            },
            "members_macro_f1_on_validation": singles,
        },
    }
    meta = evaluation_metadata(
        meta,
        reviews,
        reviews.labels[fit_idx],
        len(valid_idx),
        validation,
        raw,
        chosen,
        fitted_on=(
            f"the ensemble's scores of the {len(cal_idx)} training reviews no member was "
            f"fitted on (the {transformer.flavour} member's calibration share)"
        ),
        split=(
            f"the {transformer.flavour} member's: stratified hold-out, "
            f"test_size={member_config['test_size']}, seed={seed}; calibration share "
            f"{member_config['calibration_size']:g} of the training split"
        ),
        config={
            **{k: v for k, v in asdict(config).items() if k != "name"},
            "members": [transformer.flavour, "tfidf"],
            "transformer_version": transformer.version,
            "tfidf": {k: v for k, v in asdict(tfidf_config).items() if k != "name"},
        },
    )
    model = EnsembleModel(members, weights, meta)
    model.metadata["version"] = _version(transformer.version, tfidf.coef, calibration.to_json())
    tfidf.metadata["version"] = model.version
    model.metadata["speed"] = _speed(model, [texts[i] for i in valid_idx[:256]])
    return train_result(model, None, validation, raw, calibration, len(fit_idx), started)


def _version(transformer_version: str, coef: FloatArray, calibration: dict[str, Any]) -> str:
    import hashlib
    import json

    h = hashlib.sha256(transformer_version.encode())
    h.update(np.ascontiguousarray(coef).tobytes())
    h.update(json.dumps(calibration, sort_keys=True).encode())
    return h.hexdigest()[:12]


def stack_and_save(
    data: str | Path,
    transformer_dir: str | Path,
    out_dir: str | Path,
    config: StackConfig | None = None,
) -> TrainResult:
    """:func:`stack` on the CSV ``data``, saved to ``out_dir`` with its model card."""
    result = stack(load_reviews(data), model_fn(transformer_dir), config)
    save_model(result, out_dir)
    return result
