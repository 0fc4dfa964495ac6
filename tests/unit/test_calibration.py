"""Bias-corrected temperature scaling and vector scaling: hand-computed NLL and ECE, the
identity, recovery of known temperatures and biases, and the model applying its stored
calibration."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax

from endpoint.calibration import (
    MAX_BIAS,
    MAX_TEMPERATURE,
    METHOD_NAMES,
    MIN_TEMPERATURE,
    Calibration,
    cross_validated_log_loss,
    expected_calibration_error,
    fit_bcts,
    fit_choice,
    fit_scaling,
    negative_log_likelihood,
    stratified_folds,
)
from endpoint.model import MODEL_FILE, FeatureBlock, SentimentModel, calibrated_softmax
from endpoint.train import DEFAULT_MODEL_DIR


def test_negative_log_likelihood_of_a_known_case() -> None:
    p = [[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]]
    assert negative_log_likelihood(p, [0, 2]) == pytest.approx(
        (math.log(2) + math.log(10 / 7)) / 2, rel=1e-15
    )
    # a zero probability on the true class is a large but finite loss
    assert math.isfinite(negative_log_likelihood([[1.0, 0.0]], [1]))
    with pytest.raises(ValueError, match="class indices"):
        negative_log_likelihood(p, [0, 3])


def test_expected_calibration_error_by_hand() -> None:
    p = [
        [0.9, 0.05, 0.05],  # confidence 0.9 (bin 13), right
        [0.9, 0.05, 0.05],  # confidence 0.9 (bin 13), wrong
        [0.5, 0.3, 0.2],  # confidence 0.5 (bin 7), right
        [0.2, 0.2, 0.6],  # confidence 0.6: the upper edge of bin 8, right
    ]
    y = [0, 1, 0, 2]
    # bin 13: |1/2 - 0.9| * 2/4; bin 7: |1 - 0.5| * 1/4; bin 8: |1 - 0.6| * 1/4
    assert expected_calibration_error(p, y) == pytest.approx((0.8 + 0.5 + 0.4) / 4, rel=1e-14)
    # one bin: |accuracy - mean confidence| = |3/4 - 0.725|
    assert expected_calibration_error(p, y, bins=1) == pytest.approx(0.025, rel=1e-12)
    # a perfectly confident, always right model is perfectly calibrated
    assert expected_calibration_error([[0.0, 1.0], [1.0, 0.0]], [1, 0]) == 0.0
    with pytest.raises(ValueError, match="bins"):
        expected_calibration_error(p, y, bins=0)


def test_identity_calibration_leaves_probabilities_unchanged() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(50, 3)) * 3
    np.testing.assert_allclose(Calibration().apply(scores), softmax(scores, axis=1), rtol=1e-14)
    np.testing.assert_allclose(calibrated_softmax(scores), softmax(scores, axis=1), rtol=1e-14)


def test_calibrated_softmax_exact() -> None:
    got = calibrated_softmax([[1.0, 2.0, 3.0]], 2.0, [0.0, 0.0, 1.0])
    np.testing.assert_allclose(got[0], softmax([0.5, 1.0, 2.5]), rtol=1e-15)
    cal = Calibration(0.5, (0.1, -0.2, 0.1))
    np.testing.assert_allclose(
        cal.apply([[0.0, 1.0, -1.0]])[0], softmax([0.1, 1.8, -1.9]), rtol=1e-15
    )
    with pytest.raises(ValueError, match="temperature"):
        calibrated_softmax([[0.0, 0.0, 0.0]], 0.0)
    with pytest.raises(ValueError, match="temperature"):
        Calibration(-1.0)
    with pytest.raises(ValueError, match="scores"):
        cal.apply([[0.0, 1.0]])
    assert Calibration.from_json(cal.to_json()) == cal
    assert cal.method == "bias_corrected_temperature_scaling"


def test_vector_scaling_divides_column_by_column() -> None:
    got = calibrated_softmax([[1.0, 2.0, 3.0]], [2.0, 0.5, 1.0], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(got[0], softmax([0.5, 4.0, 4.0]), rtol=1e-15)
    cal = Calibration((0.5, 2.0, 1.0), (0.1, -0.2, 0.1))
    np.testing.assert_allclose(
        cal.apply([[1.0, 1.0, -1.0]])[0], softmax([2.1, 0.3, -0.9]), rtol=1e-15
    )
    assert cal.method == "vector_scaling"
    assert cal.to_json()["temperature"] == [0.5, 2.0, 1.0]
    assert Calibration.from_json(json.loads(json.dumps(cal.to_json()))) == cal
    with pytest.raises(ValueError, match="temperature"):
        calibrated_softmax([[0.0, 0.0, 0.0]], [1.0, 1.0])
    with pytest.raises(ValueError, match="temperature"):
        Calibration((1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="one per class"):
        Calibration((1.0, 1.0))
    # a list or an array is the same per-class calibration, and it serialises
    for given in ([0.5, 2.0, 1.0], np.array([0.5, 2.0, 1.0])):
        same = Calibration(given, (0.1, -0.2, 0.1))  # type: ignore[arg-type]
        assert same == cal and same.method == "vector_scaling"
        assert json.loads(json.dumps(same.to_json()))["temperature"] == [0.5, 2.0, 1.0]
    assert Calibration(np.float64(2.0)).to_json()["temperature"] == 2.0


def _synthetic(
    temperature: float, bias: tuple[float, float, float], n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels drawn from softmax(scores / temperature + bias)."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(scale=2.0, size=(n, 3))
    p = softmax(scores / temperature + np.asarray(bias), axis=1)
    labels = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return scores, labels


@pytest.mark.parametrize(
    ("temperature", "bias"),
    [
        (2.0, (0.3, 0.0, -0.3)),  # over-confident scores: soften
        (0.5, (-0.2, 0.4, -0.2)),  # under-confident scores: sharpen
        (1.0, (0.0, 0.0, 0.0)),  # already calibrated: the identity
    ],
)
def test_fit_recovers_the_generating_temperature_and_biases(
    temperature: float, bias: tuple[float, float, float]
) -> None:
    scores, labels = _synthetic(temperature, bias, 40_000, seed=7)
    cal = fit_bcts(scores, labels)
    assert cal.temperature == pytest.approx(temperature, rel=0.04)
    np.testing.assert_allclose(cal.bias, bias, atol=0.04)
    assert sum(cal.bias) == pytest.approx(0.0, abs=1e-12)
    # the optimum: mean calibrated probabilities equal the label shares (gradient in b is 0)
    shares = np.bincount(labels, minlength=3) / len(labels)
    np.testing.assert_allclose(cal.apply(scores).mean(axis=0), shares, atol=1e-6)
    # and it is at least as good as the identity and the generating calibration
    fitted = negative_log_likelihood(cal.apply(scores), labels)
    assert fitted <= negative_log_likelihood(softmax(scores, axis=1), labels)
    truth = Calibration(temperature, bias).apply(scores)
    assert fitted <= negative_log_likelihood(truth, labels) + 1e-12


@pytest.mark.parametrize(
    ("temperature", "bias"),
    [
        ((0.5, 2.0, 0.4), (-0.1, 0.25, -0.15)),  # sharp on one class, soft on the others
        ((1.5, 1.5, 1.5), (0.3, 0.0, -0.3)),  # one temperature: vector scaling finds it too
    ],
)
def test_vector_scaling_recovers_per_class_temperatures(
    temperature: tuple[float, float, float], bias: tuple[float, float, float]
) -> None:
    rng = np.random.default_rng(11)
    scores = rng.normal(scale=2.0, size=(60_000, 3))
    p = Calibration(temperature, bias).apply(scores)
    labels = (rng.random(len(p))[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    cal = fit_scaling(scores, labels, method="vector")
    assert isinstance(cal.temperature, tuple)
    np.testing.assert_allclose(cal.temperature, temperature, rtol=0.06)
    np.testing.assert_allclose(cal.bias, bias, atol=0.05)
    shares = np.bincount(labels, minlength=3) / len(labels)
    np.testing.assert_allclose(cal.apply(scores).mean(axis=0), shares, atol=1e-6)
    # vector scaling nests BCTS: its optimum is at least as good
    vector = negative_log_likelihood(cal.apply(scores), labels)
    assert vector <= negative_log_likelihood(fit_bcts(scores, labels).apply(scores), labels) + 1e-9
    with pytest.raises(ValueError, match="method"):
        fit_scaling(scores, labels, method="matrix")  # type: ignore[arg-type]


def test_fit_lowers_ece_of_an_under_confident_model() -> None:
    scores, labels = _synthetic(0.4, (0.0, 0.0, 0.0), 20_000, seed=3)
    before = expected_calibration_error(softmax(scores, axis=1), labels)
    after = expected_calibration_error(fit_bcts(scores, labels).apply(scores), labels)
    assert before > 0.1 and after < 0.02


def test_fit_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="scores"):
        fit_bcts(np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match="finite"):
        fit_bcts([[np.nan, 0.0, 0.0]], [0])
    with pytest.raises(ValueError, match="labels"):
        fit_bcts([[0.0, 0.0, 0.0]], [0.5])


# -- the model applies its calibration --------------------------------------------------------


def _calibrated_model(calibration: dict[str, object] | None) -> SentimentModel:
    coef = np.array([[2.0, -1.0], [0.0, 0.0], [-2.0, 1.0]])
    meta = {"name": "tiny", "version": "c1"}
    if calibration is not None:
        meta["calibration"] = calibration  # type: ignore[assignment]
    return SentimentModel([FeatureBlock(terms=("bad", "good"))], coef, [0.0, 0.1, 0.0], meta)


def test_model_serves_calibrated_probabilities_and_predictions(tmp_path: Path) -> None:
    # "good": scores (-1, 0.1, 1); T = 2, b = (0, 0.5, 0) -> (-0.5, 0.55, 0.5): neutral wins
    # "bad": scores (2, 0.1, -2) -> (1, 0.55, -1): still negative
    model = _calibrated_model({"temperature": 2.0, "bias": [0.0, 0.5, 0.0]})
    assert model.calibration is not None
    np.testing.assert_allclose(
        model.predict_proba(["good"])[0], softmax([-0.5, 0.55, 0.5]), rtol=1e-15
    )
    np.testing.assert_allclose(
        model.predict_proba(["good"], calibrated=False)[0], softmax([-1.0, 0.1, 1.0]), rtol=1e-15
    )
    assert model.predict(["good", "bad"]).tolist() == [0, -1]
    assert _calibrated_model(None).predict(["good"]).tolist() == [1]
    loaded = SentimentModel.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict_proba(["good"]), model.predict_proba(["good"]))
    assert json.loads((tmp_path / "m" / MODEL_FILE).read_text())["calibration"]["temperature"] == 2


def test_model_serves_vector_scaled_probabilities(tmp_path: Path) -> None:
    # "good": scores (-1, 0.1, 1); T = (1, 0.1, 2), b = 0 -> (-1, 1, 0.5): neutral wins
    model = _calibrated_model({"temperature": [1.0, 0.1, 2.0], "bias": [0.0, 0.0, 0.0]})
    np.testing.assert_allclose(
        model.predict_proba(["good"])[0], softmax([-1.0, 1.0, 0.5]), rtol=1e-15
    )
    assert model.predict(["good"]).tolist() == [0]
    loaded = SentimentModel.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict_proba(["good"]), model.predict_proba(["good"]))


def test_model_refuses_a_malformed_calibration() -> None:
    with pytest.raises(ValueError, match="calibration"):
        _calibrated_model({"temperature": 0.0, "bias": [0.0, 0.0, 0.0]})
    with pytest.raises(ValueError, match="calibration"):
        _calibrated_model({"temperature": 1.0, "bias": [0.0, 0.0]})
    with pytest.raises(ValueError, match="calibration"):
        _calibrated_model({"temperature": [1.0, 1.0], "bias": [0.0, 0.0, 0.0]})
    with pytest.raises(ValueError, match="calibration"):
        _calibrated_model({"temperature": [1.0, -1.0, 1.0], "bias": [0.0, 0.0, 0.0]})


def test_shipped_model_is_calibrated_and_better_for_it() -> None:
    meta = SentimentModel.load(DEFAULT_MODEL_DIR).metadata
    cal = meta["calibration"]
    assert cal["method"] == "vector_scaling"
    negative, neutral, positive = cal["temperature"]
    # the raw model is under-confident on the poles and over-confident on "neutral"
    assert 0 < negative < 1 and 0 < positive < 1 and neutral > 1
    figures = cal["validation"]
    ece, loss = figures["expected_calibration_error"], figures["log_loss"]
    assert ece["after"] < ece["before"] / 2
    assert loss["after"] < loss["before"]
    assert meta["validation"]["expected_calibration_error"] == ece["after"]


def test_separable_scores_keep_a_finite_bounded_fit() -> None:
    # twelve reviews whose first score separates the classes by two thresholds: the
    # likelihood rises without end as T -> 0 with biases that move the thresholds apart
    s0 = np.array([2.0, 1.5, 0.5, -0.5, 0.2, -1.5, -2.0, -0.1, 1.8, -1.7, 0.0, 2.5])
    scores = np.stack([s0, np.zeros_like(s0), -s0], axis=1)
    labels = np.where(s0 > 1, 0, np.where(s0 < -1, 2, 1))
    for method in ("vector", "bcts"):
        cal = fit_scaling(scores, labels, method=method)
        temperatures = np.atleast_1d(cal.temperature)
        assert np.all(temperatures >= MIN_TEMPERATURE * (1 - 1e-9))
        assert np.all(temperatures <= MAX_TEMPERATURE * (1 + 1e-9))
        assert np.all(np.abs(cal.bias) <= 2 * MAX_BIAS)
        assert np.isclose(temperatures.min(), MIN_TEMPERATURE)  # the bound holds the fit
        assert np.all(np.isfinite(cal.apply(scores)))


def test_cross_validated_log_loss_judges_each_fold_on_rows_it_was_not_fitted_on() -> None:
    scores, labels = _synthetic(2.0, (0.3, 0.0, -0.3), 600, seed=3)
    folds = stratified_folds(labels, 4, seed=0)
    assert sorted(np.concatenate([held for _, held in folds]).tolist()) == list(range(600))
    shares = np.bincount(labels, minlength=3) / len(labels)
    for fit, held in folds:
        assert not set(fit.tolist()) & set(held.tolist())
        np.testing.assert_allclose(np.bincount(labels[held], minlength=3), shares * 150, atol=1)
    expected = (
        sum(
            negative_log_likelihood(
                fit_scaling(scores[fit], labels[fit], "bcts").apply(scores[held]), labels[held]
            )
            * len(held)
            for fit, held in folds
        )
        / 600
    )
    assert cross_validated_log_loss(scores, labels, "bcts", folds) == pytest.approx(expected)
    with pytest.raises(ValueError, match="no held rows"):
        cross_validated_log_loss(scores, labels, "bcts", [])


@pytest.mark.parametrize(
    ("temperature", "n", "chosen"),
    [
        # sharp on one class, soft on the others, many rows: a temperature per class pays off
        ((0.5, 2.0, 0.4), 3000, "vector_scaling"),
        # one temperature and few rows: vector scaling's two more parameters fit noise
        ((1.5, 1.5, 1.5), 150, "bias_corrected_temperature_scaling"),
    ],
)
def test_auto_fits_the_method_of_the_smaller_cross_validated_loss(
    temperature: tuple[float, float, float], n: int, chosen: str
) -> None:
    rng = np.random.default_rng(5)
    scores = rng.normal(scale=2.0, size=(n, 3))
    p = Calibration(temperature, (0.1, 0.0, -0.1)).apply(scores)
    labels = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    choice = fit_choice(scores, labels, "auto", seed=9)
    folds = stratified_folds(labels, 5, seed=9)
    assert choice.log_loss == {
        m: pytest.approx(cross_validated_log_loss(scores, labels, m, folds))
        for m in ("bcts", "vector")
    }
    assert choice.calibration.method == chosen
    on_all = {m: fit_scaling(scores, labels, m) for m in ("bcts", "vector")}
    assert choice.calibration == on_all["vector" if chosen == "vector_scaling" else "bcts"]
    doc = choice.to_json()
    assert set(doc["cross_validated_log_loss"]) == set(METHOD_NAMES.values())
    assert min(doc["cross_validated_log_loss"], key=doc["cross_validated_log_loss"].get) == chosen


def test_a_named_method_or_too_few_rows_chooses_nothing() -> None:
    scores, labels = _synthetic(2.0, (0.3, 0.0, -0.3), 300, seed=4)
    named = fit_choice(scores, labels, "vector")
    assert named.calibration == fit_scaling(scores, labels, "vector")
    assert named.log_loss == {} and named.to_json() == {}
    # one review of a class: nothing to cross-validate on, so the method of fewer parameters
    few = np.array([0, 0, 1, 1, 2])
    tiny = fit_choice(scores[:5], few, "auto")
    assert tiny.calibration == fit_scaling(scores[:5], few, "bcts") and tiny.log_loss == {}
    with pytest.raises(ValueError, match="calibration must be one of"):
        fit_choice(scores, labels, "matrix")  # type: ignore[arg-type]
