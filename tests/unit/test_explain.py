"""Explanations of the linear model: exact values on a hand-made model, agreement with the
``shap`` package's LinearExplainer on the shipped model and real reviews, and the handler's
explanation requests (the default response unchanged)."""

from __future__ import annotations

import importlib
import json
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from endpoint import explain as ex
from endpoint import inference
from endpoint.inference import InvalidInput, handle, input_fn, output_fn, predict_fn
from endpoint.model import FeatureBlock, SentimentModel
from endpoint.train import load_reviews

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "reviews.csv"


@pytest.fixture
def tiny() -> SentimentModel:
    # raw counts (no idf, no norm): phi = coef * count
    coef = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0], [-2.0, 1.0, -0.5]])
    return SentimentModel(
        [FeatureBlock(terms=("bad", "good", "zip"), norm=None)],
        coef,
        [0.25, 0.0, -0.25],
        {"name": "tiny", "version": "t1"},
    )


@pytest.fixture(scope="module")
def shap() -> ModuleType:
    # shap's plotting colours use a matplotlib call deprecated upstream; not ours to fix
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return importlib.import_module("shap")


@pytest.fixture(scope="module")
def shipped() -> SentimentModel:
    loaded = inference.model_fn(inference.default_model_dir())
    assert isinstance(loaded, SentimentModel)  # the shipped model is the tfidf flavour
    return loaded


# -- exact values ----------------------------------------------------------------------------


def test_explain_is_coefficient_times_value_with_the_intercept_as_base(
    tiny: SentimentModel,
) -> None:
    [e] = ex.explain(tiny, ["bad bad good zip"])
    assert e.label == -1
    assert e.base == (0.25, 0.0, -0.25)
    # scores: 0.25 + 2*2 - 1 + 0.5 = 3.75, 0, -0.25 - 4 + 1 - 0.5 = -3.75
    assert e.logits == (3.75, 0.0, -3.75)
    assert [(t.term, t.value, t.contributions) for t in e.terms] == [
        ("bad", 2.0, (4.0, 0.0, -4.0)),
        ("good", 1.0, (-1.0, 0.0, 1.0)),
        ("zip", 1.0, (0.5, 0.0, -0.5)),
    ]
    assert e.remainder == (0.0, 0.0, 0.0)
    [top] = ex.explain(tiny, ["bad bad good zip"], top_k=1)
    assert [t.term for t in top.terms] == ["bad"]
    assert top.remainder == (-0.5, 0.0, 0.5)
    assert top.to_json() == {
        "predicted": "negative",
        "base": {"negative": 0.25, "neutral": 0.0, "positive": -0.25},
        "logits": {"negative": 3.75, "neutral": 0.0, "positive": -3.75},
        "terms": [{"term": "bad", "value": 2.0, "negative": 4.0, "neutral": 0.0, "positive": -4.0}],
        "remainder": {"negative": -0.5, "neutral": 0.0, "positive": 0.5},
    }


def test_terms_are_ranked_by_their_pull_on_the_predicted_class(tiny: SentimentModel) -> None:
    [e] = ex.explain(tiny, ["good good zip"])
    assert e.label == 1
    # positive class: good +2, zip -0.5
    assert [(t.term, t.contributions[2]) for t in e.terms] == [("good", 2.0), ("zip", -0.5)]
    [empty] = ex.explain(tiny, ["nothing known"])
    assert empty.terms == () and empty.logits == empty.base


def test_negative_contributions_per_text(tiny: SentimentModel) -> None:
    assert ex.negative_contributions(tiny, ["bad zip zip", "", "good"]) == [
        {"bad": 2.0, "zip": 1.0},
        {},
        {"good": -1.0},
    ]


def test_global_importance_table(tiny: SentimentModel) -> None:
    rows = ex.global_importance(tiny, ["bad", "good good", "nothing", "bad zip"])
    # mean values: bad 2/4, good 2/4, zip 1/4
    assert [r.term for r in rows] == ["bad", "good", "zip"]  # bad and good tie at 1.0
    bad, good, zip_ = rows
    assert bad.document_frequency == 0.5 and bad.mean_value == 0.5
    assert bad.mean_abs == (1.0, 0.0, 1.0) and bad.mean == (1.0, 0.0, -1.0)
    assert good.mean_abs == (0.5, 0.0, 0.5) and good.mean == (-0.5, 0.0, 0.5)
    assert zip_.document_frequency == 0.25
    assert zip_.mean_abs == (0.125, 0.0, 0.125) and zip_.mean == (0.125, 0.0, -0.125)
    assert [r.term for r in ex.global_importance(tiny, ["bad", "good"], top=1)] == ["bad"]
    assert good.to_json()["mean"] == {"negative": -0.5, "neutral": 0.0, "positive": 0.5}


def test_shap_values_with_a_background_mean(tiny: SentimentModel) -> None:
    mu = ex.background_mean(tiny, ["bad", "good good zip"])
    assert mu.tolist() == [0.5, 1.0, 0.5]
    values = ex.shap_values(tiny, ["bad"], mu)
    # x - mu = (0.5, -1, -0.5); negative class coef (2, -1, 0.5)
    assert values[0, :, 0].tolist() == [1.0, 1.0, -0.25]
    assert values[0, :, 1].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="shape"):
        ex.shap_values(tiny, ["bad"], np.zeros(2))
    with pytest.raises(ValueError):
        ex.explain(tiny, ["bad"], top_k=-1)


# -- agreement with shap ---------------------------------------------------------------------


@pytest.mark.parametrize("background", ["empty review", "training mean"])
def test_values_equal_shap_linear_explainer(
    shap: ModuleType, shipped: SentimentModel, background: str
) -> None:
    texts = load_reviews(DATA).texts
    explained, reference = texts[:40], texts[1000:1600]
    if background == "empty review":
        data = np.zeros((1, shipped.n_features))
        mu = None
    else:
        data = shipped.transform(reference).toarray()
        mu = ex.background_mean(shipped, reference)
    explainer = shap.LinearExplainer(
        (shipped.coef, shipped.intercept), shap.maskers.Independent(data, max_samples=len(data))
    )
    x = shipped.transform(explained).toarray()
    theirs = np.asarray(explainer.shap_values(x))
    ours = ex.shap_values(shipped, explained, mu)
    assert theirs.shape == ours.shape == (40, shipped.n_features, 3)
    assert np.abs(theirs - ours).max() <= 1e-6
    # additivity: base value + contributions = the model's scores
    base = np.asarray(explainer.expected_value)
    scores = shipped.decision_function(explained)
    assert np.abs(base + ours.sum(axis=1) - scores).max() <= 1e-9
    if mu is None:
        # the sparse explanation is the same numbers, at the text's terms only
        names = ex.term_names(shipped)
        for i, e in enumerate(ex.explain(shipped, explained)):
            got = {t.term: t.contributions for t in e.terms}
            nz = np.flatnonzero(x[i])
            assert set(got) == {names[j] for j in nz}
            for j in nz:
                assert np.abs(np.asarray(got[names[j]]) - theirs[i, j]).max() <= 1e-6
            assert np.abs(np.asarray(e.logits) - scores[i]).max() <= 1e-9


# -- the handler -----------------------------------------------------------------------------


def test_default_response_is_unchanged_and_explanations_come_when_asked(
    tiny: SentimentModel,
) -> None:
    body = json.dumps({"instances": ["bad bad good zip"]})
    plain, _ = handle(body, "application/json", None, tiny)
    assert json.loads(plain)["predictions"][0].keys() == {
        "label",
        "sentiment_label",
        "probabilities",
    }
    expected = ex.explain(tiny, ["bad bad good zip"], top_k=1)[0].to_json()
    by_field, _ = handle(
        json.dumps({"instances": ["bad bad good zip"], "explain": 1}),
        "application/json",
        None,
        tiny,
    )
    by_accept, _ = handle(body, "application/json", "application/json; verbose=1", tiny)
    for out in (by_field, by_accept):
        doc = json.loads(out)
        assert doc["predictions"][0]["explanation"] == expected
        doc["predictions"][0].pop("explanation")
        assert json.dumps(doc).encode() == plain
    default_k = json.loads(handle(body, "application/json", "application/json;verbose", tiny)[0])
    assert len(default_k["predictions"][0]["explanation"]["terms"]) == 3
    lines, kind = handle('"good"\n', "application/jsonlines", "application/jsonlines;verbose", tiny)
    assert kind == "application/jsonlines"
    assert json.loads(lines)["explanation"]["terms"][0]["term"] == "good"
    off, _ = handle(body, "application/json", "application/json;verbose=false", tiny)
    assert off == plain


@pytest.mark.parametrize("value", ["yes", -1, 1.5, [1], {}])
def test_bad_explain_values_are_invalid_input(tiny: SentimentModel, value: object) -> None:
    with pytest.raises(InvalidInput, match="explain"):
        input_fn(json.dumps({"instances": ["x"], "explain": value}), "application/json")
    if isinstance(value, str | int):
        with pytest.raises(InvalidInput, match="verbose"):
            handle('["x"]', "application/json", f"application/json;verbose={value}", tiny)


def test_explain_field_travels_through_input_and_predict(tiny: SentimentModel) -> None:
    data = input_fn(json.dumps({"instances": ["bad"], "explain": True}), "application/json")
    assert data == ["bad"] and data.explain == inference.DEFAULT_EXPLAIN_TERMS
    prediction = predict_fn(data, tiny)
    assert prediction.explain == inference.DEFAULT_EXPLAIN_TERMS
    doc = json.loads(output_fn(prediction, None)[0])
    assert doc["predictions"][0]["explanation"]["terms"][0]["term"] == "bad"
    assert input_fn('{"instances": ["bad"], "explain": false}', "application/json").explain is None


# -- the command line ------------------------------------------------------------------------


def test_explain_command_prints_the_breakdown(shipped: SentimentModel) -> None:
    from typer.testing import CliRunner

    from stream.cli import app

    text = "The zipper broke after one wash, so disappointed"
    result = CliRunner().invoke(app, ["explain", text, "--top", "2"])
    assert result.exit_code == 0, result.output
    [e] = ex.explain(shipped, [text], 2)
    lines = result.output.splitlines()
    assert lines[0].startswith("negative (negative ")
    for t in e.terms:
        row = next(line for line in lines if f" {t.term} " in line)
        assert f"{t.contributions[0]:+.3f}" in row and f"{t.value:.3f}" in row
    score = next(line for line in lines if line.lstrip("│| ").startswith("score "))
    assert all(f"{v:+.3f}" in score for v in e.logits)
    assert "(other terms)" in result.output
