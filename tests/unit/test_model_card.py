"""The model card: rendered from model.json alone, written with the model, shipped fresh."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from endpoint.artifact import artifact_members
from endpoint.card import CARD_FILE, model_card, write_model_card
from endpoint.inference import default_model_dir
from endpoint.model import MODEL_FILE, FeatureBlock, SentimentModel
from endpoint.train import Reviews, TrainConfig, save_model, train
from tests.toy_reviews import write_toy_reviews

META = {
    "name": "tiny",
    "version": "abc123",
    "description": "A tiny model.",
    "class_priors": [0.25, 0.25, 0.5],
    "training": {
        "data": "r.csv",
        "data_sha256": "ff",
        "rows": 10,
        "train_rows": 8,
        "validation_rows": 2,
        "split": "stratified hold-out, test_size=0.2, seed=1",
        "note": "Fitted on the training split only.",
        "scikit_learn": "1.0",
        "numpy": "2.0",
        "config": {"C": 1.0},
    },
    "validation": {
        "accuracy": 0.5,
        "macro_f1": 0.25,
        "log_loss": 0.75,
        "expected_calibration_error": 0.125,
        "per_class": {
            "negative": {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2},
            "neutral": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
            "positive": {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1},
        },
        "confusion_matrix": {"counts": [[1, 0, 1], [0, 0, 0], [0, 0, 1]]},
    },
    "calibration": {
        "method": "vector_scaling",
        "temperature": [0.5, 2.0, 1.0],
        "bias": [0.1, -0.2, 0.1],
        "fitted_on": "out-of-fold scores",
        "validation": {
            "expected_calibration_error": {"before": 0.2, "after": 0.125},
            "log_loss": {"before": 0.9, "after": 0.75},
        },
    },
    "features": [{"analyzer": "word", "ngram_range": [1, 2], "n_terms": 7}],
    "speed": {"reviews_per_s": 12345, "reviews": 2, "what": "one call", "cpu_count": 2},
}


def test_card_says_what_model_json_says() -> None:
    card = model_card(META)
    assert card.startswith("# Model card: tiny abc123\n\nA tiny model.\n")
    for line in (
        "- Data: `r.csv` (10 reviews, sha256 `ff`).",
        "- Split: stratified hold-out, test_size=0.2, seed=1: 8 training reviews, 2 validation "
        "reviews.",
        "- Class shares of the training reviews (negative, neutral, positive): 0.250, 0.250, 0.500",
        "- Features: word (1, 2) TF-IDF, 7 terms",
        "Accuracy 0.500, macro-F1 0.250, log loss 0.750, expected calibration error 0.125.",
        "| negative | 1.000 | 0.500 | 0.667 | 2 |",
        "| neutral | 0.000 | 0.000 | 0.000 | 0 |",
        "| positive | 0.500 | 1.000 | 0.667 | 1 |",
        "| negative | 1 | 0 | 1 |",
        "- Method: vector_scaling; temperature 0.500, 2.000, 1.000; biases 0.100, -0.200, 0.100",
        "| expected calibration error (15 bins) | 0.200 | 0.125 |",
        "| log loss | 0.900 | 0.750 |",
        "12,345 reviews/s: one call (2 reviews, a machine with 2 cores; a figure of the machine "
        "that trained it, not a guarantee).",
    ):
        assert line in card.splitlines(), line


def test_card_of_a_model_without_calibration_or_speed() -> None:
    meta = {k: v for k, v in META.items() if k not in ("calibration", "speed")}
    card = model_card(meta).splitlines()
    assert "None: probabilities are the plain softmax of the linear scores." in card
    assert "Not measured." in card


def test_card_is_written_from_the_saved_model_json(tmp_path: Path) -> None:
    model = SentimentModel(
        [FeatureBlock(terms=("bad", "good"))],
        np.array([[1.0, -1.0], [0.0, 0.0], [-1.0, 1.0]]),
        [0.0, 0.0, 0.0],
        {"name": "tiny", "version": "v1"},
    )
    root = model.save(tmp_path / "m")
    path = write_model_card(root)
    assert path == root / CARD_FILE
    saved = json.loads((root / MODEL_FILE).read_text())
    assert path.read_text() == model_card(saved)
    assert "- Features: word (1, 1) TF-IDF, 2 terms" in path.read_text().splitlines()
    assert artifact_members(root)[CARD_FILE] == path.read_bytes()


def test_shipped_card_is_fresh() -> None:
    """The committed card is what the committed model.json renders (retraining rewrites both)."""
    root = default_model_dir()
    meta = json.loads((root / MODEL_FILE).read_text())
    assert (root / CARD_FILE).read_text() == model_card(meta)
    assert meta["speed"]["reviews_per_s"] > 0


def test_training_saves_the_card_with_the_model(tmp_path: Path) -> None:
    words = {-1: "awful broken", 0: "fine okay", 1: "lovely great"}
    labels = np.array([(-1, 0, 1)[i % 3] for i in range(60)], dtype=np.int64)
    reviews = Reviews([f"{words[int(y)]} item {i}" for i, y in enumerate(labels)], labels)
    result = train(reviews, TrainConfig(min_df=1, calibration_folds=2, seed=1))
    root = save_model(result, tmp_path / "m")
    assert result.model_dir == root
    meta = json.loads((root / MODEL_FILE).read_text())
    assert meta["speed"]["reviews"] == 12 and meta["speed"]["reviews_per_s"] > 0
    assert (root / CARD_FILE).read_text() == model_card(meta)


def _model_train(tmp_path: Path, rows: int, *options: str) -> tuple[int, str, Path]:
    """``model train`` on ``rows`` toy reviews into ``tmp_path / "m"``: its exit code, its
    output and that directory."""
    from typer.testing import CliRunner

    from stream.cli import app

    data = write_toy_reviews(tmp_path / "reviews.csv", rows)
    out = tmp_path / "m"
    args = ["model", "train", "--data", str(data), "--out", str(out), *options]
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output, out


def test_model_train_command_takes_the_calibration_method(tmp_path: Path) -> None:
    code, output, out = _model_train(
        tmp_path, 90, "--calibration", "bcts", "--calibration-folds", "3"
    )
    assert code == 0, output
    meta = json.loads((out / MODEL_FILE).read_text())
    assert meta["calibration"]["method"] == "bias_corrected_temperature_scaling"
    assert isinstance(meta["calibration"]["temperature"], float)
    assert meta["training"]["config"]["calibration_folds"] == 3
    assert "- Method: bias_corrected_temperature_scaling;" in (out / CARD_FILE).read_text()
    code, output, _ = _model_train(
        tmp_path, 90, "--calibration", "bcts", "--calibration-folds", "1"
    )
    assert code != 0 and "calibration_folds" in output


def test_model_train_auto_records_the_losses_that_chose_the_calibration(tmp_path: Path) -> None:
    from endpoint.calibration import METHOD_NAMES

    code, output, out = _model_train(
        tmp_path, 150, "--calibration", "auto", "--calibration-folds", "3"
    )
    assert code == 0, output
    meta = json.loads((out / MODEL_FILE).read_text())
    cal = meta["calibration"]
    losses = cal["cross_validated_log_loss"]
    assert set(losses) == set(METHOD_NAMES.values())
    assert cal["method"] == min(losses, key=losses.get)
    assert meta["training"]["config"]["calibration_method"] == "auto"
    card = (out / CARD_FILE).read_text()
    assert "- Chosen by the smaller cross-validated log loss on those reviews: " in card
    assert card == model_card(meta)


def test_calibration_settings_are_checked_before_any_fit() -> None:
    import pytest

    with pytest.raises(ValueError, match="calibration_method"):
        TrainConfig(calibration_method="matrix")  # type: ignore[arg-type]
    words = {-1: "awful", 0: "fine", 1: "lovely"}
    labels = np.array([(-1, 0, 1)[i % 3] for i in range(30)], dtype=np.int64)
    reviews = Reviews([f"{words[int(y)]} item {i}" for i, y in enumerate(labels)], labels)
    # 8 training reviews of each class cannot fill 10 calibration folds
    with pytest.raises(ValueError, match=r"calibration_folds=10 needs .*rarest has 8\)"):
        train(reviews, TrainConfig(min_df=1))
