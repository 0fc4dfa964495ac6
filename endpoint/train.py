"""Train the sentiment model with scikit-learn and save it as a portable model directory.

Recipe (the shipped default, :class:`TrainConfig` defaults): word 1-2-gram TF-IDF with
sublinear term frequency (terms in at least 2 training reviews), multinomial logistic
regression with ``C=1``. A stratified, seeded 80/20 split holds out validation reviews; the
model is trained on the 80 % only and *not* refit on all rows, so the confusion matrix and
metrics stored in ``model.json`` are honest estimates on reviews the model never saw.

Calibration: vector scaling (one temperature per class and class biases; bias-corrected
temperature scaling with ``calibration_method="bcts"``; :mod:`endpoint.calibration`) fitted on
held-out scores of the training split -- the out-of-fold decision scores of a stratified,
seeded ``calibration_folds``-fold cross-validation of the same recipe -- so the validation
reviews stay unseen by the calibration too. The model stores it and serves calibrated
probabilities; the validation figures (confusion matrix, accuracy, macro-F1, log loss) are
those of the calibrated model, and ``model.json`` records the expected calibration error and
log loss on the validation reviews before and after.

The saved directory is read by :class:`endpoint.model.SentimentModel` (numpy only); training
checks that the numpy inference reproduces scikit-learn's ``predict_proba`` before saving.

Public API::

    TrainConfig(word_ngrams=(1, 2), min_df=2, sublinear_tf=True, char_ngrams=None,
                char_analyzer="char_wb", char_min_df=3, C=1.0, class_weight=None,
                max_iter=3000, test_size=0.2, seed=42, calibration_folds=10,
                calibration_method="vector", name="review-sentiment")
    load_reviews(path) -> Reviews       # CSV: sentiment, review_body (or Rating, Review Text)
    build_pipeline(config) -> Pipeline  # FeatureUnion of TF-IDF blocks -> LogisticRegression
    export_model(pipeline, metadata) -> SentimentModel
    fit_calibration(texts, labels, config) -> ScalingChoice  # fitted on out-of-fold scores
    fit_recipe(texts, labels, config) -> (Pipeline, ScalingChoice | None)  # both, as train does
    train(reviews, config) -> TrainResult    # split, fit, validate, export (nothing written)
    train_and_save(data, out_dir, config) -> TrainResult    # with MODEL_CARD.md
    save_model(result, out_dir) -> Path

Rebuild the shipped model with ``python -m endpoint.train`` (or ``sentiment-monitor model
train --data ../shared/data/reviews.csv``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from .calibration import (
    CHOICES,
    Calibration,
    Choice,
    ScalingChoice,
    expected_calibration_error,
    fit_choice,
    negative_log_likelihood,
)
from .data import read_review_csv
from .model import CLASSES, LABELS, FeatureBlock, ModelInfo, SentimentModel

__all__ = [
    "DEFAULT_DATA",
    "DEFAULT_MODEL_DIR",
    "LabelsReport",
    "Reviews",
    "TrainConfig",
    "TrainResult",
    "build_pipeline",
    "export_model",
    "fit_calibration",
    "fit_recipe",
    "load_reviews",
    "main",
    "save_model",
    "train",
    "train_and_save",
    "train_with_labels",
]

#: The shipped model directory.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "model_data"
#: The review data beside the repository (``../shared/data/reviews.csv``).
DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "reviews.csv"


@dataclass(frozen=True)
class TrainConfig:
    """Features and classifier; the defaults are the shipped model's recipe."""

    word_ngrams: tuple[int, int] = (1, 2)
    min_df: int = 2
    sublinear_tf: bool = True
    #: Add a character n-gram block with this range (None: words only).
    char_ngrams: tuple[int, int] | None = None
    char_analyzer: Literal["char", "char_wb"] = "char_wb"
    char_min_df: int = 3
    C: float = 1.0
    class_weight: Literal["balanced"] | None = None
    max_iter: int = 3000
    test_size: float = 0.2
    seed: int = 42
    #: Folds of the cross-validation whose held-out scores fit the calibration (0: none).
    calibration_folds: int = 10
    #: ``"vector"``: one temperature per class; ``"bcts"``: one for the model; ``"auto"``: the
    #: one of the smaller cross-validated log loss (:func:`endpoint.calibration.fit_choice`).
    calibration_method: Choice = "vector"
    name: str = "review-sentiment"

    def __post_init__(self) -> None:
        if not 0.0 < self.test_size < 1.0:
            raise ValueError("test_size must be in (0, 1)")
        if self.C <= 0:
            raise ValueError("C must be > 0")
        if self.min_df < 1 or self.char_min_df < 1:
            raise ValueError("min_df must be >= 1")
        if self.calibration_folds == 1 or self.calibration_folds < 0:
            raise ValueError("calibration_folds must be 0 (no calibration) or >= 2")
        if self.calibration_method not in CHOICES:
            raise ValueError(
                f"calibration_method must be one of {list(CHOICES)}, "
                f"got {self.calibration_method!r}"
            )


@dataclass(frozen=True)
class Reviews:
    """Texts with their sentiment (-1/0/1) and, when known, product categories."""

    texts: list[str]
    labels: npt.NDArray[np.int64]
    categories: list[str] = field(default_factory=list)
    source: str = ""
    sha256: str = ""

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class TrainResult:
    """What a training run produced, with the validation figures."""

    model: ModelInfo
    pipeline: Any
    accuracy: float
    macro_f1: float
    #: Validation counts, rows = true class, columns = predicted class, order [-1, 0, 1].
    confusion: npt.NDArray[np.int64]
    per_class: dict[str, dict[str, float]]
    n_train: int
    n_validation: int
    seconds: float
    #: The fitted calibration (None: ``calibration_folds=0``).
    calibration: Calibration | None = None
    #: Expected calibration error (15 bins) on the validation reviews, before and after.
    ece_uncalibrated: float = float("nan")
    ece: float = float("nan")
    model_dir: Path | None = None


def load_reviews(path: str | Path) -> Reviews:
    """Read a reviews CSV with :func:`endpoint.data.read_review_csv`: columns ``sentiment``
    (-1/0/1) and ``review_body`` (this project's data), or ``Rating`` (1-5) and ``Review Text``
    (the original Kaggle file; the model learns from the review text alone, rows without one
    are skipped). ``product_category`` / ``Class Name`` are kept when present."""
    data = read_review_csv(
        path, layouts=(("sentiment", "review_body"), ("Rating", "Review Text")), labelled=True
    )
    if not data.rows:
        raise ValueError(f"{path}: no rows")
    rows = [r for r in data.rows if r.body] if data.kaggle else data.rows
    y = np.asarray([r.sentiment for r in rows], dtype=np.int64)
    if not set(np.unique(y).tolist()) <= set(CLASSES):
        raise ValueError(f"{path}: sentiment must be one of {CLASSES}")
    return Reviews([r.body for r in rows], y, [r.category for r in rows], data.source, data.sha256)


def build_pipeline(config: TrainConfig) -> Any:
    """The scikit-learn pipeline: a FeatureUnion of TF-IDF blocks, then logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    blocks: list[tuple[str, Any]] = [
        (
            "word",
            TfidfVectorizer(
                ngram_range=config.word_ngrams,
                min_df=config.min_df,
                sublinear_tf=config.sublinear_tf,
                dtype=np.float64,
            ),
        )
    ]
    if config.char_ngrams is not None:
        blocks.append(
            (
                "char",
                TfidfVectorizer(
                    analyzer=config.char_analyzer,
                    ngram_range=config.char_ngrams,
                    min_df=config.char_min_df,
                    sublinear_tf=config.sublinear_tf,
                    dtype=np.float64,
                ),
            )
        )
    clf = LogisticRegression(C=config.C, class_weight=config.class_weight, max_iter=config.max_iter)
    return Pipeline([("features", FeatureUnion(blocks)), ("clf", clf)])


def _block_from_vectorizer(vec: Any) -> FeatureBlock:
    p = vec.get_params()
    unsupported = {
        k: p[k]
        for k in ("strip_accents", "stop_words", "preprocessor", "tokenizer", "vocabulary")
        if p[k] is not None
    }
    if unsupported or p["binary"] or p["input"] != "content" or callable(p["analyzer"]):
        raise ValueError(f"vectorizer settings the portable model cannot reproduce: {p}")
    vocab: dict[str, int] = vec.vocabulary_
    terms = [""] * len(vocab)
    for term, i in vocab.items():
        terms[i] = term
    return FeatureBlock(
        terms=tuple(terms),
        idf=np.asarray(vec.idf_, dtype=np.float64) if p["use_idf"] else None,
        analyzer=p["analyzer"],
        ngram_range=tuple(p["ngram_range"]),
        lowercase=bool(p["lowercase"]),
        token_pattern=p["token_pattern"],
        sublinear_tf=bool(p["sublinear_tf"]),
        norm=p["norm"],
    )


def export_model(pipeline: Any, metadata: dict[str, Any] | None = None) -> SentimentModel:
    """Turn a fitted :func:`build_pipeline` pipeline into a :class:`SentimentModel`."""
    union, clf = pipeline.named_steps["features"], pipeline.named_steps["clf"]
    if [int(c) for c in clf.classes_] != list(CLASSES):
        raise ValueError(f"classifier classes {clf.classes_} != {CLASSES}")
    blocks = [_block_from_vectorizer(vec) for _, vec in union.transformer_list]
    return SentimentModel(blocks, clf.coef_, clf.intercept_, metadata)


@dataclass(frozen=True)
class _Validation:
    """How the model does on the held-out reviews, from its probabilities there."""

    proba: npt.NDArray[np.float64]
    accuracy: float
    macro_f1: float
    log_loss: float
    ece: float
    confusion: npt.NDArray[np.int64]
    per_class: dict[str, dict[str, float]]


def _split(
    reviews: Reviews, config: TrainConfig
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Row indices of the training and validation parts (stratified, seeded)."""
    from sklearn.model_selection import train_test_split

    train_idx, valid_idx = train_test_split(
        np.arange(len(reviews)),
        test_size=config.test_size,
        stratify=reviews.labels,
        random_state=config.seed,
    )
    return train_idx, valid_idx


def fit_calibration(
    texts: Sequence[str], labels: npt.NDArray[np.int64], config: TrainConfig
) -> ScalingChoice:
    """``config.calibration_method`` fitted on the out-of-fold decision scores of a
    stratified, seeded ``config.calibration_folds``-fold cross-validation of the recipe on
    ``texts`` (each review scored by a model that did not see it)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    smallest = int(np.bincount(np.asarray(labels) + 1, minlength=len(CLASSES)).min())
    if smallest < config.calibration_folds:
        raise ValueError(
            f"calibration_folds={config.calibration_folds} needs at least that many training "
            f"reviews of each class (the rarest has {smallest}): lower calibration_folds "
            "(0: no calibration)"
        )
    folds = StratifiedKFold(config.calibration_folds, shuffle=True, random_state=config.seed)
    scores = cross_val_predict(
        build_pipeline(config), list(texts), labels, cv=folds, method="decision_function"
    )
    return fit_choice(scores, labels + 1, config.calibration_method, seed=config.seed)


def fit_recipe(
    texts: Sequence[str], labels: npt.NDArray[np.int64], config: TrainConfig
) -> tuple[Any, ScalingChoice | None]:
    """The recipe fitted on ``texts`` and its calibration fitted on their out-of-fold scores
    (None with ``calibration_folds=0``): what :func:`train` does with the training split."""
    pipeline = build_pipeline(config).fit(list(texts), labels)
    calibration = fit_calibration(texts, labels, config) if config.calibration_folds else None
    return pipeline, calibration


def _validate(proba: npt.NDArray[np.float64], truth: npt.NDArray[np.int64]) -> _Validation:
    """Compare probabilities (n, 3) of held-out reviews with their true classes."""
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    pred = np.asarray(CLASSES, dtype=np.int64)[np.argmax(proba, axis=1)]
    labels = list(CLASSES)
    prec, rec, f1, support = precision_recall_fscore_support(
        truth, pred, labels=labels, zero_division=0
    )
    per_class = {
        LABELS[k]: {
            "precision": float(prec[k]),
            "recall": float(rec[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
        }
        for k in range(len(CLASSES))
    }
    return _Validation(
        proba=proba,
        accuracy=float(np.mean(pred == truth)),
        macro_f1=float(f1_score(truth, pred, labels=labels, average="macro")),
        log_loss=negative_log_likelihood(proba, truth + 1),
        ece=expected_calibration_error(proba, truth + 1),
        confusion=confusion_matrix(truth, pred, labels=labels).astype(np.int64),
        per_class=per_class,
    )


def _metadata(
    config: TrainConfig,
    reviews: Reviews,
    y_train: npt.NDArray[np.int64],
    n_validation: int,
    validation: _Validation,
    raw: _Validation,
    calibration: ScalingChoice | None,
) -> dict[str, Any]:
    """What ``model.json`` records: recipe, class priors, calibration, validation figures
    (of the calibrated model; ``raw``: before calibration), provenance."""
    meta: dict[str, Any] = {
        "name": config.name,
        "description": (
            "Review sentiment: TF-IDF n-grams and multinomial logistic regression; "
            "probabilities are softmax((X @ coef.T + intercept) / T + b) with the calibration's "
            "temperature T (one, or one per class) and biases b (T = 1, b = 0 without one), "
            "columns in class order."
        ),
        "classifier": {
            "type": "multinomial_logistic_regression",
            "C": config.C,
            "class_weight": config.class_weight,
        },
    }
    fitted_on = (
        f"out-of-fold decision scores of a stratified {config.calibration_folds}-fold "
        f"cross-validation on the training split (seed {config.seed})"
    )
    return evaluation_metadata(
        meta,
        reviews,
        y_train,
        n_validation,
        validation,
        raw,
        calibration,
        fitted_on=fitted_on,
        split=f"stratified hold-out, test_size={config.test_size}, seed={config.seed}",
        config={k: v for k, v in asdict(config).items() if k != "name"},
    )


def evaluation_metadata(
    meta: dict[str, Any],
    reviews: Reviews,
    y_train: npt.NDArray[np.int64],
    n_validation: int,
    validation: _Validation,
    raw: _Validation,
    calibration: ScalingChoice | None,
    *,
    fitted_on: str,
    split: str,
    config: Mapping[str, Any],
) -> dict[str, Any]:
    """``meta`` (name, description, classifier) with what every flavour's ``model.json``
    records: class priors (before the classifier), calibration (with the cross-validated
    losses that chose its method, when they did), validation figures, provenance."""
    import sklearn

    cm = validation.confusion
    priors = np.bincount(y_train + 1, minlength=3) / len(y_train)
    row_sums = cm.sum(axis=1, keepdims=True)
    classifier = meta.pop("classifier", None)
    meta = {**meta, "class_priors": [float(p) for p in priors]}
    if classifier is not None:
        meta["classifier"] = classifier
    if calibration is not None:
        meta["calibration"] = {
            **calibration.calibration.to_json(),
            **calibration.to_json(),
            "fitted_on": fitted_on,
            "validation": {
                "expected_calibration_error": {"before": raw.ece, "after": validation.ece},
                "log_loss": {"before": raw.log_loss, "after": validation.log_loss},
                "ece_bins": "15 equal-width bins of the top-class probability",
            },
        }
    meta["validation"] = {
        "accuracy": validation.accuracy,
        "macro_f1": validation.macro_f1,
        "log_loss": validation.log_loss,
        "expected_calibration_error": validation.ece,
        "per_class": validation.per_class,
        "confusion_matrix": {
            "orientation": "rows: true class, columns: predicted class, order [-1, 0, 1]",
            "counts": cm.tolist(),
            "row_normalised": (cm / np.where(row_sums == 0, 1, row_sums)).tolist(),
        },
    }
    if calibration is not None:
        meta["validation"]["uncalibrated"] = {
            "accuracy": raw.accuracy,
            "macro_f1": raw.macro_f1,
            "log_loss": raw.log_loss,
            "expected_calibration_error": raw.ece,
        }
    meta["training"] = {
        "data": reviews.source,
        "data_sha256": reviews.sha256,
        "rows": len(reviews),
        "train_rows": len(y_train),
        "validation_rows": n_validation,
        "split": split,
        "refit_on_all_rows": False,
        "note": (
            "The model was fitted on the training split only and not refit on all rows, "
            "so the validation figures describe reviews it never saw."
        ),
        "config": dict(config),
        "scikit_learn": sklearn.__version__,
        "numpy": np.__version__,
    }
    return meta


def _check_export(
    model: SentimentModel,
    texts: list[str],
    expected: npt.NDArray[np.float64],
    calibrated: npt.NDArray[np.float64],
) -> None:
    """Raise unless the numpy model gives scikit-learn's probabilities on ``texts`` (before
    calibration) and ``calibrated`` after."""
    for mine, want in (
        (model.predict_proba(texts, calibrated=False), expected),
        (model.predict_proba(texts), calibrated),
    ):
        if not np.allclose(mine, want, rtol=1e-9, atol=1e-12):
            raise RuntimeError(
                "numpy inference differs from scikit-learn: max abs difference "
                f"{np.max(np.abs(mine - want)):.3g}"
            )


def _weights_digest(model: SentimentModel, calibration: Calibration | None) -> str:
    h = hashlib.sha256()
    for b in model.blocks:
        h.update("\n".join(b.terms).encode())
        if b.idf is not None:
            h.update(b.idf.tobytes())
    h.update(model.coef.tobytes())
    h.update(model.intercept.tobytes())
    if calibration is not None:
        h.update(np.asarray([*np.atleast_1d(calibration.temperature), *calibration.bias]).tobytes())
    return h.hexdigest()


def train(
    reviews: Reviews,
    config: TrainConfig | None = None,
    *,
    extra: tuple[Sequence[str], Sequence[int]] | None = None,
) -> TrainResult:
    """Split (stratified, seeded), fit on the training part (plus the ``extra`` texts and
    labels, which never enter the validation part), fit the calibration on out-of-fold scores
    of that training part, validate on the rest, and export the portable model (checked
    against scikit-learn on the validation texts)."""
    config = config or TrainConfig()
    started = time.perf_counter()
    train_idx, valid_idx = _split(reviews, config)
    x_train = [reviews.texts[i] for i in train_idx]
    x_valid = [reviews.texts[i] for i in valid_idx]
    y_train, y_valid = reviews.labels[train_idx], reviews.labels[valid_idx]
    if extra is not None and len(extra[0]):
        x_train += list(extra[0])
        y_train = np.concatenate([y_train, np.asarray(extra[1], dtype=np.int64)])

    pipeline, chosen = fit_recipe(x_train, y_train, config)
    calibration = None if chosen is None else chosen.calibration
    raw_proba = pipeline.predict_proba(x_valid)
    proba = (
        raw_proba if calibration is None else calibration.apply(pipeline.decision_function(x_valid))
    )
    raw, validation = _validate(raw_proba, y_valid), _validate(proba, y_valid)
    metadata = _metadata(config, reviews, y_train, len(valid_idx), validation, raw, chosen)
    model = export_model(pipeline, metadata)
    model.metadata["version"] = _weights_digest(model, calibration)[:12]
    _check_export(model, x_valid, raw_proba, proba)
    model.metadata["speed"] = _speed(model, x_valid)
    return train_result(model, pipeline, validation, raw, calibration, len(x_train), started)


def train_result(
    model: ModelInfo,
    pipeline: Any,
    validation: _Validation,
    raw: _Validation,
    calibration: Calibration | None,
    n_train: int,
    started: float,
) -> TrainResult:
    """A :class:`TrainResult` from a trained model and its figures on the validation reviews
    (``started``: the ``time.perf_counter()`` when training began)."""
    return TrainResult(
        model=model,
        pipeline=pipeline,
        accuracy=validation.accuracy,
        macro_f1=validation.macro_f1,
        confusion=validation.confusion,
        per_class=validation.per_class,
        n_train=n_train,
        n_validation=int(validation.confusion.sum()),
        seconds=time.perf_counter() - started,
        calibration=calibration,
        ece_uncalibrated=raw.ece,
        ece=validation.ece,
    )


@dataclass(frozen=True)
class LabelsReport:
    """``train`` without and with extra labelled reviews, on the same validation split."""

    before: TrainResult
    after: TrainResult
    added: int  #: extra reviews added to the training part
    held_out: int  #: extra reviews left out: their text is in the validation part


def train_with_labels(
    reviews: Reviews,
    texts: Sequence[str],
    labels: Sequence[int],
    config: TrainConfig | None = None,
) -> LabelsReport:
    """Train on ``reviews`` alone, then with ``texts``/``labels`` (human labels) added to the
    training part only; both are validated on the same, fixed split of ``reviews``. An extra
    review whose text is in the validation part is left out (it would leak)."""
    if len(texts) != len(labels):
        raise ValueError("one label per text")
    if not set(labels) <= set(CLASSES):
        raise ValueError(f"labels must be in {CLASSES}")
    config = config or TrainConfig()
    before = train(reviews, config)
    _, valid_idx = _split(reviews, config)
    validation_texts = {reviews.texts[i] for i in valid_idx}
    keep = [i for i, t in enumerate(texts) if t not in validation_texts]
    after = train(reviews, config, extra=([texts[i] for i in keep], [labels[i] for i in keep]))
    return LabelsReport(before, after, len(keep), len(texts) - len(keep))


def _speed(model: ModelInfo, texts: list[str]) -> dict[str, Any]:
    """How fast ``model`` scores: the validation reviews in one call, best of three."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        model.predict_proba(texts)
        best = min(best, time.perf_counter() - started)
    return {
        "reviews_per_s": round(len(texts) / max(best, 1e-9)),
        "reviews": len(texts),
        "what": (
            f"in-process {model.backend} inference of the validation reviews in one call, best of 3"
        ),
        "cpu_count": len(os.sched_getaffinity(0)),
    }


def save_model(result: TrainResult, out_dir: str | Path) -> Path:
    """Save ``result``'s model directory with its model card (``MODEL_CARD.md``)."""
    from .card import write_model_card

    result.model_dir = result.model.save(out_dir)
    write_model_card(result.model_dir)
    return result.model_dir


def train_and_save(
    data: str | Path = DEFAULT_DATA,
    out_dir: str | Path = DEFAULT_MODEL_DIR,
    config: TrainConfig | None = None,
) -> TrainResult:
    """Load ``data``, :func:`train`, and save the model directory to ``out_dir``."""
    result = train(load_reviews(data), config)
    save_model(result, out_dir)
    return result


def format_report(result: TrainResult) -> str:
    """Plain-text summary: sizes, accuracy, macro-F1 and the confusion matrix."""
    cm = result.confusion
    lines = [
        f"model {result.model.name} {result.model.version}: {result.model.size_text},"
        f" trained on {result.n_train} reviews in {result.seconds:.1f} s",
        f"validation ({result.n_validation} reviews): accuracy {result.accuracy:.4f}, "
        f"macro-F1 {result.macro_f1:.4f}",
    ]
    if result.calibration is not None:
        cal = result.calibration
        temps = " ".join(f"{t:.4f}" for t in np.atleast_1d(cal.temperature))
        lines.append(
            f"calibration ({cal.method}): temperature {temps}, biases "
            + " ".join(f"{b:+.4f}" for b in cal.bias)
            + f"; validation ECE {result.ece_uncalibrated:.4f} -> {result.ece:.4f}"
        )
    lines += [
        "confusion matrix (rows true, columns predicted):",
        "            " + "".join(f"{lab:>10s}" for lab in LABELS),
    ]
    for k, lab in enumerate(LABELS):
        lines.append(f"{lab:>12s}" + "".join(f"{int(v):10d}" for v in cm[k]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m endpoint.train", description="Train and save the sentiment model."
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--C", type=float, default=TrainConfig.C)
    args = parser.parse_args(argv)
    result = train_and_save(args.data, args.out, TrainConfig(seed=args.seed, C=args.C))
    sys.stdout.write(format_report(result) + f"\nsaved to {result.model_dir}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
