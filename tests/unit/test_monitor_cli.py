"""``sentiment-monitor baseline build``, ``priors`` and ``bias`` (and ``run --baseline``,
``run --data`` shuffling), through typer's CliRunner on small hand-made CSVs.

Expected values come from the pure functions of ``monitors`` applied to the same arrays, and
from the shipped model scoring the same texts.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from endpoint.explain import negative_contributions
from endpoint.inference import default_model_dir
from endpoint.model import SentimentModel
from endpoint.train import TrainConfig, _split, load_reviews
from monitors import (
    Baseline,
    FacetCounts,
    bbse,
    clarify_analysis,
    dumps_baseline,
    em_priors,
    facet_metrics,
    loads_baseline,
)
from stream.cli import app

REVIEWS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "reviews.csv"

# (sentiment, text, category): written for these tests
ROWS: tuple[tuple[int, str, str], ...] = (
    (1, "Absolutely love this dress, the fabric is soft and it fits perfectly.", "Dresses"),
    (1, "Gorgeous colour and flattering cut, I bought it in two sizes.", "Dresses"),
    (-1, "The seams came apart after one wash, very disappointed.", "Dresses"),
    (0, "It is fine, nothing special, the length is a bit odd.", "Dresses"),
    (1, "Warm, cosy and well made; my favourite sweater this winter.", "Sweaters"),
    (-1, "Itchy wool and the sleeves are far too long, returning it.", "Sweaters"),
    (-1, "Cheap material that pilled within days, would not buy again.", "Sweaters"),
    (0, "Decent sweater but the colour is duller than in the photo.", "Sweaters"),
    (1, "Great jeans, comfortable all day and true to size.", "Jeans"),
    (-1, "Terrible fit around the waist and the zipper broke.", "Jeans"),
    (0, "Okay jeans; the wash looks different from the picture.", "Jeans"),
    (1, "Perfect pair of jeans, I get compliments every time.", "Jeans"),
)
CATEGORIES = ("Dresses", "Jeans", "Sweaters")


def _write(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def course_csv(tmp_path: Path) -> Path:
    """This project's layout: sentiment, review_body, product_category."""
    return _write(tmp_path / "reviews.csv", ("sentiment", "review_body", "product_category"), ROWS)


@pytest.fixture(scope="module")
def model() -> SentimentModel:
    return SentimentModel.load(default_model_dir())


@pytest.fixture(autouse=True)
def _shipped_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTIMENT_ENDPOINT__MODEL_DIR", raising=False)
    monkeypatch.delenv("SENTIMENT_MONITOR__BASELINE_PATH", raising=False)


def _texts() -> list[str]:
    return [r[1] for r in ROWS]


def _labels() -> np.ndarray[Any, np.dtype[np.int64]]:
    return np.array([r[0] for r in ROWS], dtype=np.int64)


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def invoke_json(*args: str) -> Any:
    return json.loads(invoke(*args).stdout)


def plain(output: str) -> str:
    """Terminal output without rich's box characters and line wrapping."""
    return " ".join(output.replace("│", " ").split())


# -- priors ----------------------------------------------------------------------------------


def test_priors_prints_naive_bbse_em_and_true_shares(
    course_csv: Path, model: SentimentModel
) -> None:
    doc = invoke_json("priors", "--data", str(course_csv))
    assert set(doc) == {
        "classes",
        "count",
        "confidence_level",
        "model",
        "source_priors",
        "estimates",
        "true",
    }
    assert doc["classes"] == ["negative", "neutral", "positive"]
    assert doc["count"] == len(ROWS)
    assert doc["confidence_level"] == 0.95
    assert doc["model"] == {"name": model.name, "version": model.version}
    assert list(doc["estimates"]) == ["naive", "bbse", "em"]

    probs = model.predict_proba(_texts())
    predicted = model.predict(_texts())
    counts = np.bincount(predicted + 1, minlength=3)
    naive = doc["estimates"]["naive"]
    assert naive["priors"] == [round(float(c) / len(ROWS), 6) for c in counts]
    assert naive["count"] == len(ROWS)
    for est in doc["estimates"].values():
        assert set(est) == {"method", "priors", "lower", "upper", "confidence_level", "count"}
        bounds = zip(est["lower"], est["priors"], est["upper"], strict=True)
        assert all(lo <= p <= hi for lo, p, hi in bounds)
        assert sum(est["priors"]) == pytest.approx(1.0, abs=1e-5)

    cm = model.confusion_matrix
    assert cm is not None
    assert doc["estimates"]["bbse"] == bbse(cm.T, counts).to_json()
    em = em_priors(probs, model.class_priors).to_json()
    assert doc["estimates"]["em"]["priors"] == pytest.approx(em["priors"], abs=1e-6)
    assert doc["estimates"]["em"]["lower"] == pytest.approx(em["lower"], abs=1e-6)

    true = np.bincount(_labels() + 1, minlength=3) / len(ROWS)
    assert doc["true"]["priors"] == [round(float(v), 6) for v in true]
    assert doc["true"]["count"] == len(ROWS)
    assert doc["true"]["mean_absolute_error"]["naive"] == pytest.approx(
        float(np.abs(counts / len(ROWS) - true).mean()), abs=1e-6
    )


def test_priors_needs_no_labels_and_takes_a_confidence(tmp_path: Path) -> None:
    path = _write(tmp_path / "texts.csv", ("review_text",), [(t,) for t in _texts()])
    doc = invoke_json("priors", "--data", str(path), "--confidence", "0.8")
    assert "true" not in doc
    assert doc["count"] == len(ROWS)
    assert doc["confidence_level"] == 0.8
    assert {e["confidence_level"] for e in doc["estimates"].values()} == {0.8}


def test_priors_rejects_a_confidence_outside_0_1(course_csv: Path) -> None:
    result = CliRunner().invoke(app, ["priors", "--data", str(course_csv), "--confidence", "1"])
    assert result.exit_code == 2
    assert "between 0 and 1" in plain(result.output)


def test_a_csv_without_text_column_is_a_usage_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.csv", ("sentiment", "body"), [(1, "nice")])
    result = CliRunner().invoke(app, ["priors", "--data", str(path)])
    assert result.exit_code == 2
    assert "no review text column" in plain(result.output)


# -- bias ------------------------------------------------------------------------------------


def _facets(labels: Sequence[int]) -> dict[str, FacetCounts]:
    out = {}
    for cat in CATEGORIES:
        ys = [y for (_, _, c), y in zip(ROWS, labels, strict=True) if c == cat]
        out[cat] = FacetCounts(len(ys), sum(1 for y in ys if y == 1))
    return out


def test_bias_on_true_labels_is_clarify_analysis_of_the_counts(course_csv: Path) -> None:
    doc = invoke_json(
        "bias",
        "--data",
        str(course_csv),
        "--facet",
        "product_category",
        "--label",
        "sentiment",
        "--positive",
        "1",
    )
    expected = clarify_analysis(
        _facets(_labels().tolist()),
        label="sentiment",
        facet_name="product_category",
        positive_label="1",
    )
    assert doc == json.loads(json.dumps(expected))

    section = doc["pre_training_bias_metrics"]
    assert section["label"] == "sentiment"
    assert section["label_value_or_threshold"] == "1"
    reports = section["facets"]["product_category"]
    assert [r["value_or_threshold"] for r in reports] == list(CATEGORIES)
    for r in reports:
        assert [m["name"] for m in r["metrics"]] == ["CI", "DPL", "JS", "KL", "KS", "LP", "TVD"]
        assert all(set(m) == {"name", "description", "value"} for m in r["metrics"])
    # Dresses: 4 of 12 reviews, 2 positive; the rest: 8 reviews, 3 positive
    dresses = {m["name"]: m["value"] for m in reports[0]["metrics"]}
    assert dresses["CI"] == pytest.approx((8 - 4) / 12)
    assert dresses["DPL"] == pytest.approx(3 / 8 - 2 / 4)
    assert dresses == pytest.approx(facet_metrics(FacetCounts(4, 2), FacetCounts(8, 3)))


def test_bias_on_predicted_labels_uses_the_model(course_csv: Path, model: SentimentModel) -> None:
    doc = invoke_json("bias", "--data", str(course_csv), "--predicted")
    predicted = model.predict(_texts()).tolist()
    expected = clarify_analysis(_facets(predicted), label="sentiment", positive_label="1")
    assert doc == json.loads(json.dumps(expected))


def test_bias_takes_other_columns_and_values(tmp_path: Path) -> None:
    rows = [(c, "yes" if i % 3 else "no", t) for i, (_, t, c) in enumerate(ROWS)]
    path = _write(tmp_path / "r.csv", ("shop", "recommended", "review_text"), rows)
    doc = invoke_json(
        "bias",
        "--data",
        str(path),
        "--facet",
        "shop",
        "--label",
        "recommended",
        "--positive",
        "yes",
    )
    facets: dict[str, FacetCounts] = {}
    for cat in CATEGORIES:
        ys = [y for c, y, _ in rows if c == cat]
        facets[cat] = FacetCounts(len(ys), ys.count("yes"))
    expected = clarify_analysis(
        facets, label="recommended", facet_name="shop", positive_label="yes"
    )
    assert doc == json.loads(json.dumps(expected))


def test_bias_names_a_missing_column(course_csv: Path) -> None:
    result = CliRunner().invoke(app, ["bias", "--data", str(course_csv), "--facet", "segment"])
    assert result.exit_code == 2
    assert "has no column 'segment'" in plain(result.output)


def test_kaggle_layout_title_rating_and_class_name(tmp_path: Path, model: SentimentModel) -> None:
    header = ("Clothing ID", "Title", "Review Text", "Rating", "Class Name")
    rows = [
        (1, "Lovely", "Soft fabric and a flattering fit.", 5, "Dresses"),
        (2, "", "Too tight at the hips, sent it back.", 2, "Jeans"),
        (3, "Meh.", "Average quality for the price.", 3, "Dresses"),
        (4, "", "", 1, "Jeans"),  # no text: skipped, as the stream would dead-letter it
        (5, "Great", "", 4, "Jeans"),
    ]
    path = _write(tmp_path / "kaggle.csv", header, rows)
    result = invoke("priors", "--data", str(path))
    assert "rows without review text skipped: 1" in plain(result.stderr)
    doc = json.loads(result.stdout)
    assert doc["count"] == 4
    assert doc["true"]["priors"] == [0.25, 0.25, 0.5]
    texts = [
        "Lovely. Soft fabric and a flattering fit.",
        "Too tight at the hips, sent it back.",
        "Meh. Average quality for the price.",
        "Great",
    ]
    counts = np.bincount(model.predict(texts) + 1, minlength=3)
    assert doc["estimates"]["naive"]["priors"] == [float(c) / 4 for c in counts]

    bias = invoke_json("bias", "--data", str(path))  # product_category <- Class Name
    expected = clarify_analysis(
        {"Dresses": FacetCounts(2, 1), "Jeans": FacetCounts(2, 1)}, label="sentiment"
    )
    assert bias == json.loads(json.dumps(expected))


# -- baseline build --------------------------------------------------------------------------


def test_baseline_build_round_trips_and_equals_the_pure_builder(
    course_csv: Path, tmp_path: Path, model: SentimentModel
) -> None:
    out = tmp_path / "nested" / "baseline.json"
    invoke("baseline", "build", "--data", str(course_csv), "--out", str(out))
    text = out.read_text(encoding="utf-8")
    b = loads_baseline(text)
    assert dumps_baseline(b) == text.strip()

    probs = model.predict_proba(_texts())
    predicted = model.predict(_texts())
    cm = model.confusion_matrix
    assert cm is not None
    expected = Baseline.from_values(
        texts=_texts(),
        categories=[r[2] for r in ROWS],
        predicted=predicted,
        probabilities=probs,
        true=_labels(),
        vocabulary=model.vocabulary,
        confusion=cm.T,
        contributions=negative_contributions(model, _texts()),
    )
    assert b == loads_baseline(dumps_baseline(expected))
    # each category's predicted negatives, explained by the model, for the alert evidence
    negatives = {c: n[0] for c, n in b.category_predicted.items() if n[0]}
    assert negatives and {c: s.n for c, s in b.negative_contributions.items()} == negatives
    assert b.n == len(ROWS)
    assert b.true_counts == (4, 3, 5)
    assert b.priors == pytest.approx((4 / 12, 3 / 12, 5 / 12))
    assert b.confusion == tuple(tuple(int(v) for v in row) for row in cm.T)
    assert b.predicted_counts == tuple(int(v) for v in np.bincount(predicted + 1, minlength=3))
    # no rating or channel column: those features are not monitored against this baseline
    assert set(b.features) == {
        "review_words",
        "review_chars",
        "oov_rate",
        "confidence",
        "product_category",
    }
    assert b.features["product_category"].values == CATEGORIES


def test_baseline_build_keeps_ratings_and_channels(tmp_path: Path) -> None:
    ratings = (5, 4, 1, 3, 5, 2, 1, 3, 4, 2, 3, 5)
    channels = (
        "web",
        "app",
        "email",
        "web",
        "web",
        "app",
        "chat",
        "web",
        "call",
        "web",
        "app",
        "web",
    )
    rows = [
        (r, t, c, ch) for r, (_, t, c), ch in zip(ratings, ROWS, channels, strict=True)
    ]  # ratings agree with ROWS' sentiment
    path = _write(
        tmp_path / "r.csv", ("rating", "review_text", "product_category", "channel"), rows
    )
    out = tmp_path / "b.json"
    invoke("baseline", "build", "--data", str(path), "--out", str(out))
    b = loads_baseline(out.read_text(encoding="utf-8"))
    assert b.true_counts == (4, 3, 5)
    assert {"rating", "channel"} <= set(b.features)
    assert b.features["rating"].matrix.sum(axis=0).tolist() == [2, 2, 3, 2, 3]
    channel_counts = b.features["channel"].matrix.sum(axis=0).tolist()
    assert channel_counts == [6, 3, 1, 1, 1, 0, 0, 0]  # web app email chat call social partner ?


def test_baseline_build_without_labels_estimates_priors(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", ("review_text",), [(t,) for t in _texts()])
    out = tmp_path / "b.json"
    invoke("baseline", "build", "--data", str(path), "--out", str(out))
    b = loads_baseline(out.read_text(encoding="utf-8"))
    assert b.true_counts is None
    assert sum(b.priors) == pytest.approx(1.0)
    assert b.confusion is not None


# -- run --baseline / --data shuffling -------------------------------------------------------


def _run_capturing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str
) -> tuple[list[Path | None], list[bool]]:
    import stream.app
    import stream.replay_csv

    baselines: list[Path | None] = []
    shuffles: list[bool] = []
    build_monitor = stream.app.build_monitor
    read_csv = stream.replay_csv.read_csv

    def spy_monitor(settings: Any, state: Any = None) -> Any:
        baselines.append(settings.monitor.baseline_path)
        return build_monitor(settings, state)

    def spy_read_csv(path: Any, **kwargs: Any) -> Any:
        shuffles.append(kwargs.get("shuffle", False))
        return read_csv(path, **kwargs)

    monkeypatch.setattr(stream.app, "build_monitor", spy_monitor)
    monkeypatch.setattr(stream.replay_csv, "read_csv", spy_read_csv)
    invoke(
        "run",
        *args,
        "--lake",
        str(tmp_path / "lake"),
        "--alerts",
        str(tmp_path / "alerts.jsonl"),
        "--metrics-port",
        "0",
        "--no-progress",
    )
    return baselines, shuffles


def test_run_baseline_option_sets_the_monitor_baseline_path(
    course_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "b.json"
    invoke("baseline", "build", "--data", str(course_csv), "--out", str(out))
    baselines, shuffles = _run_capturing(
        monkeypatch, tmp_path, "--data", str(course_csv), "--baseline", str(out)
    )
    assert baselines == [out]
    assert shuffles == [True]  # --data replays in a shuffled order by default


def test_run_data_no_shuffle_keeps_file_order(
    course_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    baselines, shuffles = _run_capturing(
        monkeypatch, tmp_path, "--data", str(course_csv), "--no-shuffle"
    )
    assert baselines == [None]
    assert shuffles == [False]


def test_records_shuffle_is_a_seeded_permutation(course_csv: Path) -> None:
    from stream.cli import _records

    _, ordered = _records("steady", 1, 7, course_csv, 5000)
    _, shuffled = _records("steady", 1, 7, course_csv, 5000, shuffle=True)
    _, again = _records("steady", 1, 7, course_csv, 5000, shuffle=True)

    def ids(records: list[tuple[bytes, bytes]]) -> list[str]:
        return [json.loads(v)["review_id"] for _, v in records]

    assert ids(ordered) == [f"csv-{i}" for i in range(1, len(ROWS) + 1)]
    assert sorted(ids(shuffled)) == sorted(ids(ordered))
    assert ids(shuffled) != ids(ordered)
    assert ids(shuffled) == ids(again)


# -- the real data set -----------------------------------------------------------------------


@pytest.mark.skipif(not REVIEWS.exists(), reason=f"needs the shared review data at {REVIEWS}")
def test_real_reviews(tmp_path: Path, model: SentimentModel) -> None:
    out = tmp_path / "baseline.json"
    invoke("baseline", "build", "--data", str(REVIEWS), "--out", str(out))
    b = loads_baseline(out.read_text(encoding="utf-8"))
    assert b.n == 6000
    assert b.true_counts == (2000, 2000, 2000)
    assert len(b.category_predicted) == 18

    doc = invoke_json("priors", "--data", str(REVIEWS))
    assert doc["count"] == 6000
    assert doc["true"]["priors"] == [0.333333] * 3
    naive = np.array(doc["estimates"]["naive"]["priors"])
    np.testing.assert_allclose(naive, b.predicted_shares, atol=1e-6)
    # a balanced file: BBSE (the validation confusion matrix) stays near 1/3 even though 80 %
    # of the file trained the model. EM reads the probabilities, which are sharper on the
    # reviews the model was fitted on than the calibration (fitted on unseen reviews) expects,
    # so its figure here says little; it is held to the reviews the model never saw
    assert doc["true"]["mean_absolute_error"]["bbse"] < 0.05
    with REVIEWS.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    _, held_out = _split(load_reviews(REVIEWS), TrainConfig())
    unseen = tmp_path / "validation.csv"
    with unseen.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([rows[0], *(rows[1 + int(i)] for i in held_out)])
    doc = invoke_json("priors", "--data", str(unseen))
    assert doc["count"] == len(held_out) == 1200
    for name in ("bbse", "em"):  # a balanced split too: every estimate near 1/3
        assert doc["true"]["mean_absolute_error"][name] < 0.05

    bias = invoke_json("bias", "--data", str(REVIEWS))
    reports = bias["pre_training_bias_metrics"]["facets"]["product_category"]
    assert len(reports) == 18
    counts = {r["value_or_threshold"]: r for r in reports}
    ci = {m["name"]: m["value"] for m in counts["Dresses"]["metrics"]}["CI"]
    n_dresses = sum(b.category_predicted["Dresses"])
    assert ci == pytest.approx((6000 - 2 * n_dresses) / 6000)
