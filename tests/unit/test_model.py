"""The portable model: numpy inference equals scikit-learn's, on real reviews and on tiny
hand-made models with hand-computed results; persistence; OOV rate; the shipped model."""

from __future__ import annotations

import json
import math
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from endpoint.model import (
    CLASSES,
    LABELS,
    MODEL_FILE,
    SCORE_STEP,
    TOKENISE_STEP,
    WEIGHTS_FILE,
    FeatureBlock,
    SentimentModel,
)
from endpoint.train import (
    DEFAULT_MODEL_DIR,
    Reviews,
    TrainConfig,
    build_pipeline,
    export_model,
    fit_calibration,
    fit_recipe,
    load_reviews,
    train,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data" / "reviews.csv"

EDGE_TEXTS = [
    "",
    " ",
    "a",
    "ab",
    "NOT good. Not bad!",
    "  tabs\tand\n\nnewlines   here ",
    "Ünïcödé straße ÇA va; naïve café",
    "don't didn't won't it's",
    "x" * 3,
    "love love love love love",
    "12 34 5'6\" size 0p",
]


@pytest.fixture(scope="module")
def reviews() -> Reviews:
    return load_reviews(DATA)


@pytest.fixture(scope="module")
def fitted(reviews: Reviews) -> tuple[Any, SentimentModel, list[str]]:
    """A word + char_wb pipeline on 1,500 real reviews, its export, and 600 unseen reviews."""
    cfg = TrainConfig(word_ngrams=(1, 2), char_ngrams=(2, 4), char_min_df=2)
    pipe = build_pipeline(cfg).fit(reviews.texts[:1500], reviews.labels[:1500])
    return pipe, export_model(pipe), reviews.texts[3000:3600] + EDGE_TEXTS


# -- equivalence with scikit-learn -----------------------------------------------------------


@pytest.mark.parametrize(
    ("analyzer", "ngrams"),
    [
        ("word", (1, 1)),
        ("word", (1, 2)),
        ("word", (2, 3)),
        ("char", (1, 3)),
        ("char", (2, 5)),
        ("char_wb", (1, 4)),
        ("char_wb", (3, 5)),
    ],
)
def test_analyzers_match_sklearn_on_real_reviews(
    reviews: Reviews, analyzer: str, ngrams: tuple[int, int]
) -> None:
    reference = TfidfVectorizer(analyzer=analyzer, ngram_range=ngrams).build_analyzer()
    block = FeatureBlock(terms=(), analyzer=analyzer, ngram_range=ngrams)  # type: ignore[arg-type]
    for text in reviews.texts[:300] + EDGE_TEXTS:
        assert sorted(block.analyze(text)) == sorted(reference(text)), text


def test_features_equal_sklearn_transform(fitted: tuple[Any, SentimentModel, list[str]]) -> None:
    pipe, model, texts = fitted
    expected = sp.csr_matrix(pipe.named_steps["features"].transform(texts))
    got = model.transform(texts)
    assert got.shape == expected.shape
    mine = sp.csr_matrix((got.values, got.indices, got.indptr), shape=got.shape)
    assert abs(mine - expected).max() < 1e-12
    assert mine.nnz == expected.nnz
    small = got.toarray()[:5]
    np.testing.assert_allclose(small, expected[:5].toarray(), rtol=1e-12, atol=1e-15)
    # CSR invariants: columns sorted within each row.
    for i in range(len(texts)):
        cols = got.indices[got.indptr[i] : got.indptr[i + 1]]
        assert np.all(np.diff(cols) > 0)


def test_predict_proba_equals_sklearn_on_real_reviews(
    fitted: tuple[Any, SentimentModel, list[str]],
) -> None:
    pipe, model, texts = fitted
    expected = pipe.predict_proba(texts)
    got = model.predict_proba(texts)
    assert got.shape == (len(texts), 3)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(got.sum(axis=1), 1.0)
    assert np.array_equal(model.predict(texts), pipe.predict(texts))
    np.testing.assert_allclose(
        model.decision_function(texts), pipe.decision_function(texts), rtol=1e-10, atol=1e-12
    )


def test_saved_and_loaded_model_predicts_the_same(
    fitted: tuple[Any, SentimentModel, list[str]], tmp_path: Path
) -> None:
    _, model, texts = fitted
    model.metadata.update(name="m", version="v1", extra={"k": [1, 2]})
    model.save(tmp_path / "m")
    loaded = SentimentModel.load(tmp_path / "m")
    assert (loaded.name, loaded.version) == ("m", "v1")
    assert loaded.metadata["extra"] == {"k": [1, 2]}
    assert [b.settings() for b in loaded.blocks] == [b.settings() for b in model.blocks]
    assert np.array_equal(loaded.predict_proba(texts), model.predict_proba(texts))


def test_save_is_byte_for_byte_reproducible(
    fitted: tuple[Any, SentimentModel, list[str]], tmp_path: Path
) -> None:
    _, model, _ = fitted
    a, b = model.save(tmp_path / "a"), model.save(tmp_path / "b")
    for name in (MODEL_FILE, WEIGHTS_FILE):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    with np.load(a / WEIGHTS_FILE, allow_pickle=False) as w:  # plain arrays, no pickle
        assert {"coef", "intercept", "block0_terms", "block0_idf"} <= set(w.files)


# -- tiny hand-made models -------------------------------------------------------------------


def tiny_model(**block: Any) -> SentimentModel:
    """Terms good, bad, "not good"; each votes for one class."""
    settings: dict[str, Any] = {"ngram_range": (1, 2), "norm": "l2", **block}
    terms = ("bad", "good", "not good")
    coef = np.array(
        [
            [2.0, -1.0, 1.5],  # negative
            [0.0, 0.0, 0.5],  # neutral
            [-2.0, 1.0, -2.0],  # positive
        ]
    )
    return SentimentModel(
        [FeatureBlock(terms=terms, **settings)],
        coef,
        [0.1, 0.2, -0.3],
        {"name": "tiny", "version": "t1"},
    )


def softmax(z: list[float]) -> list[float]:
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


def test_word_pairs_are_found_within_a_text_only() -> None:
    """The batch lookup of unigrams and bigrams by word number: a bigram whose words are not
    terms themselves, a pair across two texts (never a bigram), empty and unknown texts."""
    block = FeatureBlock(terms=("good", "not good", "very bad"), ngram_range=(1, 2), norm=None)
    texts = ["Not good", "very", "bad very bad", "", "good good", "nothing known"]
    rows, cols, values = block.transform(texts)
    assert list(zip(rows.tolist(), cols.tolist(), values.tolist(), strict=True)) == [
        (0, 0, 1.0),
        (0, 1, 1.0),
        (2, 2, 1.0),
        (4, 0, 2.0),
    ]
    # the same as the per-text analysis
    for i, text in enumerate(texts):
        ids = sorted(c for c in block.term_ids(text) if c >= 0)
        assert ids == sorted(np.repeat(cols[rows == i], values[rows == i].astype(int)).tolist())
    unigrams = FeatureBlock(terms=("good", "not good"), ngram_range=(1, 1), norm=None)
    assert unigrams.transform(["not good"])[1].tolist() == [0]
    empty = FeatureBlock(terms=(), ngram_range=(1, 2), norm=None)
    assert [a.tolist() for a in empty.transform(["not good", ""])] == [[], [], []]


def test_tiny_model_exact_output_raw_counts_l2() -> None:
    model = tiny_model()
    # "good good bad" -> counts bad 1, good 2 -> l2: (1, 2) / sqrt(5)
    x = [1 / math.sqrt(5), 2 / math.sqrt(5), 0.0]
    z = [0.1 + 2 * x[0] - x[1], 0.2, -0.3 - 2 * x[0] + x[1]]
    got = model.predict_proba(["Good good BAD, unknown"])[0]
    np.testing.assert_allclose(got, softmax(z), rtol=1e-14)
    # good and bad cancel out in both votes: the intercept decides (neutral).
    assert model.predict(["Good good BAD", "bad bad good", "good"]).tolist() == [0, -1, 1]


def test_tiny_model_exact_output_sublinear_idf() -> None:
    idf = np.array([2.0, 1.0, 3.0])
    model = tiny_model(sublinear_tf=True, idf=idf)
    # "not good good": good 2 -> (1 + ln 2) * 1, "not good" 1 -> 1 * 3; "not" unknown
    v = [0.0, (1 + math.log(2)) * 1.0, 3.0]
    norm = math.sqrt(sum(t * t for t in v))
    x = [t / norm for t in v]
    z = [0.1 - x[1] + 1.5 * x[2], 0.2 + 0.5 * x[2], -0.3 + x[1] - 2 * x[2]]
    np.testing.assert_allclose(model.predict_proba(["not good good"])[0], softmax(z), rtol=1e-14)


def test_tiny_model_no_known_terms_gives_the_intercept_softmax() -> None:
    model = tiny_model(norm=None)
    for text in ["", "nothing we know", "!!!"]:
        np.testing.assert_allclose(model.predict_proba([text])[0], softmax([0.1, 0.2, -0.3]))
    assert model.predict_proba([]).shape == (0, 3)
    # norm=None keeps raw counts: 3 x good.
    z = [0.1 - 3, 0.2, -0.3 + 3]
    np.testing.assert_allclose(model.predict_proba(["good good good"])[0], softmax(z))


def test_rows_are_scored_independently_of_the_batch() -> None:
    model = tiny_model()
    texts = ["good", "bad bad", "", "not good at all", "good"]
    batch = model.predict_proba(texts)
    one_by_one = np.vstack([model.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(batch, one_by_one, rtol=1e-15)


def test_texts_are_scored_in_bounded_steps(reviews: Reviews) -> None:
    # 4,000 real reviews at once hold one step's features and one tokenising chunk's byte
    # masks and token numbers (about 5 MB), not the whole batch's (33 MB of token lists when
    # they were scored in one step); every row is what it is alone, bit for bit, at the edges
    # of steps and chunks
    model = SentimentModel.load(DEFAULT_MODEL_DIR)
    texts = reviews.texts[:4000]
    tracemalloc.start()
    try:
        scores = model.decision_function(texts)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"{peak / 2**20:.1f} MB"
    edges = [0, 1, SCORE_STEP - 1, SCORE_STEP, SCORE_STEP + 1, len(texts) - 1]
    edges += [TOKENISE_STEP - 1, TOKENISE_STEP, TOKENISE_STEP + 1, 2 * TOKENISE_STEP + 1]
    alone = np.vstack([model.decision_function([texts[i]]) for i in edges])
    assert np.array_equal(scores[edges], alone)


def test_description_properties() -> None:
    model = tiny_model()
    assert model.classes.tolist() == list(CLASSES) == [-1, 0, 1]
    assert model.labels == LABELS == ("negative", "neutral", "positive")
    assert model.n_features == 3
    np.testing.assert_allclose(model.class_priors, [1 / 3] * 3)
    assert model.confusion_matrix is None
    assert model.confusion_matrix_normalised is None
    assert "tiny" in repr(model)


def test_invalid_models_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="coef has shape"):
        SentimentModel([FeatureBlock(terms=("a",))], np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="intercept"):
        SentimentModel([FeatureBlock(terms=("a",))], np.zeros((3, 1)), np.zeros(2))
    with pytest.raises(ValueError, match="at least one"):
        SentimentModel([], np.zeros((3, 0)), np.zeros(3))
    with pytest.raises(ValueError, match="unique"):
        FeatureBlock(terms=("a", "a"))
    with pytest.raises(ValueError, match="ngram_range"):
        FeatureBlock(terms=(), ngram_range=(2, 1))
    with pytest.raises(ValueError, match="idf"):
        FeatureBlock(terms=("a",), idf=np.ones(2))
    with pytest.raises(FileNotFoundError, match=r"model\.json"):
        SentimentModel.load(tmp_path)
    tiny_model().save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / MODEL_FILE).read_text())
    (tmp_path / "m" / MODEL_FILE).write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(ValueError, match="unsupported model format"):
        SentimentModel.load(tmp_path / "m")


# -- vocabulary and OOV rate -----------------------------------------------------------------


def test_vocabulary_is_single_words_and_oov_rate_counts_word_tokens() -> None:
    model = tiny_model()
    assert model.vocabulary == frozenset({"bad", "good"})
    assert model.tokenize("Good, NOT bad!") == ["good", "not", "bad"]
    rates = model.oov_rate(["good bad", "good not", "zzz", "", "a"])
    np.testing.assert_array_equal(rates[:3], [0.0, 0.5, 1.0])
    assert np.isnan(rates[3]) and np.isnan(rates[4])  # no tokens ("a" is too short)


# -- the shipped model -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> SentimentModel:
    return SentimentModel.load(DEFAULT_MODEL_DIR)


def test_shipped_model_metadata_is_complete_and_consistent(shipped: SentimentModel) -> None:
    meta = shipped.metadata
    assert meta["classes"] == [-1, 0, 1]
    assert meta["labels"] == ["negative", "neutral", "positive"]
    assert shipped.name == "review-sentiment" and len(shipped.version) == 12
    np.testing.assert_allclose(shipped.class_priors.sum(), 1.0)
    cm = shipped.confusion_matrix
    assert cm is not None and cm.shape == (3, 3)
    val = meta["validation"]
    assert cm.sum() == meta["training"]["validation_rows"] == 1200
    assert val["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    norm = shipped.confusion_matrix_normalised
    assert norm is not None
    np.testing.assert_allclose(norm, val["confusion_matrix"]["row_normalised"])
    np.testing.assert_allclose(norm.sum(axis=1), 1.0)
    assert meta["training"]["refit_on_all_rows"] is False
    assert val["macro_f1"] > 0.65
    size = sum((DEFAULT_MODEL_DIR / f).stat().st_size for f in (MODEL_FILE, WEIGHTS_FILE))
    assert size < 4 * 1024 * 1024


def test_shipped_model_scores_obvious_reviews(shipped: SentimentModel) -> None:
    texts = [
        "absolutely love this dress  fits perfectly and the color is gorgeous",
        "terrible quality  fell apart after one wash  returning it",
    ]
    assert shipped.predict(texts).tolist() == [1, -1]
    assert len(shipped.vocabulary) > 1000
    assert {"love", "dress", "returning"} <= shipped.vocabulary


def test_fit_recipe_is_the_pipeline_and_its_out_of_fold_calibration(reviews: Reviews) -> None:
    """What train() fits on its training split (and the cross-fitted benchmark pool on each
    fold's complement): the recipe on all given reviews, the calibration on their out-of-fold
    scores; no calibration with ``calibration_folds=0``."""
    texts, labels = reviews.texts[:400], reviews.labels[:400]
    config = TrainConfig(calibration_folds=2)
    pipeline, calibration = fit_recipe(texts, labels, config)
    alone = build_pipeline(config).fit(texts, labels)
    np.testing.assert_array_equal(pipeline[-1].coef_, alone[-1].coef_)
    np.testing.assert_array_equal(pipeline[-1].intercept_, alone[-1].intercept_)
    assert calibration == fit_calibration(texts, labels, config)
    assert calibration is not None and calibration.log_loss == {}  # the method was given
    assert calibration.calibration.method == "vector_scaling"
    assert np.all(np.asarray(calibration.calibration.temperature) != 1.0)
    uncalibrated, none = fit_recipe(texts, labels, TrainConfig(calibration_folds=0))
    assert none is None
    np.testing.assert_array_equal(uncalibrated[-1].coef_, alone[-1].coef_)


@pytest.mark.slow
def test_shipped_model_is_what_the_training_recipe_builds(
    reviews: Reviews, shipped: SentimentModel
) -> None:
    """Retraining the default recipe reproduces the committed model (so it is not stale)."""
    result = train(reviews, TrainConfig())
    texts = reviews.texts[:500]
    np.testing.assert_allclose(
        result.model.predict_proba(texts), shipped.predict_proba(texts), atol=1e-6
    )
    assert result.confusion.tolist() == shipped.metadata["validation"]["confusion_matrix"]["counts"]
    np.testing.assert_allclose(
        result.model.predict_proba(texts, calibrated=False),
        result.pipeline.predict_proba(texts),
        rtol=1e-10,
    )
    assert result.calibration is not None
    np.testing.assert_allclose(
        shipped.metadata["calibration"]["temperature"], result.calibration.temperature, rtol=1e-6
    )
    np.testing.assert_allclose(
        result.model.predict_proba(texts),
        result.calibration.apply(result.pipeline.decision_function(texts)),
        rtol=1e-10,
    )
