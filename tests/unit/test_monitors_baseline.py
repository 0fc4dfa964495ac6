"""Baselines: built from reviews or columns, saved and loaded as JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from monitors.baseline import (
    Baseline,
    BaselineBuilder,
    baseline_from_dict,
    baseline_to_dict,
    dumps_baseline,
    loads_baseline,
)
from monitors.features import extract
from monitors.simulate import StreamSpec, make_review, synthetic_stream

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def _reviews() -> list:  # type: ignore[type-arg]
    rows = [
        # category, predicted, rating, text, channel
        ("Dresses", -1, 1, "the zipper broke and i returned it", "web"),
        ("Dresses", 1, 5, "love this dress", "app"),
        ("Knits", 1, 4, "soft and warm", "web"),
        ("Knits", 0, 2, "it is okay i guess", "email"),
        ("Knits", 1, None, "great fit", "web"),
    ]
    return [
        make_review(
            i,
            time=T0 + timedelta(minutes=i),
            category=c,
            sentiment=p,
            rating=r,
            text=t,
            channel=ch,
        )
        for i, (c, p, r, t, ch) in enumerate(rows)
    ]


def test_from_reviews_counts_priors_and_confusion() -> None:
    b = Baseline.from_reviews(_reviews(), vocabulary={"love", "dress", "great", "fit"})
    assert b.n == 5
    assert b.predicted_counts == (1, 1, 3)
    assert b.category_predicted == {"Dresses": (1, 0, 1), "Knits": (0, 1, 2)}
    # ratings 1, 5, 4, 2 -> true classes neg, pos, pos, neg; the fifth has no rating
    assert b.true_counts == (2, 0, 2)
    assert b.priors == pytest.approx((0.5, 0.0, 0.5))
    # [predicted][true]: (neg, neg), (pos, pos), (pos, pos), (neu, neg)
    assert b.confusion == ((1, 0, 0), (1, 0, 0), (0, 0, 2))
    assert b.accuracy == pytest.approx(0.75)
    assert b.features["channel"].values[:3] == ("web", "app", "email")
    assert b.features["channel"].matrix[2].tolist() == [2, 1, 0, 0, 0, 0, 0, 0]
    assert b.features["rating"].edges == (1.5, 2.5, 3.5, 4.5)
    assert b.features["oov_rate"].total == 5
    assert b.negative_terms == {"zipper": 1, "broke": 1, "returned": 1}
    assert b.mean_probabilities == pytest.approx((0.24, 0.24, 0.52))


def test_without_labels_or_vocabulary() -> None:
    reviews = [make_review(i, time=T0, sentiment=-1 if i % 4 == 0 else 1) for i in range(8)]
    b = Baseline.from_reviews(reviews)
    assert b.true_counts is None and b.confusion is None and b.accuracy is None
    assert b.priors == pytest.approx((0.25, 0.0, 0.75))  # the predicted shares
    assert "oov_rate" not in b.features and "rating" not in b.features


def test_given_confusion_gives_bbse_priors() -> None:
    reviews = [make_review(i, time=T0, sentiment=(i % 3) - 1) for i in range(30)]
    confusion = [[80, 10, 5], [10, 70, 10], [10, 20, 85]]
    b = Baseline.from_reviews(reviews, confusion=confusion)
    m = np.asarray(confusion) / 100
    want = np.linalg.solve(m, [1 / 3, 1 / 3, 1 / 3])
    assert b.priors == pytest.approx(tuple(want))
    assert b.confusion == tuple(tuple(r) for r in confusion)


def test_from_values_matches_from_reviews() -> None:
    reviews = _reviews()
    f = extract(reviews, None)
    a = Baseline.from_reviews(reviews)
    b = Baseline.from_values(
        texts=[r.event.review_text for r in reviews],
        categories=f.category,
        channels=f.channel,
        predicted=[r.sentiment for r in reviews],
        probabilities=f.probabilities,
        ratings=[r.event.rating for r in reviews],
    )
    assert baseline_to_dict(a) == baseline_to_dict(b)


def test_json_round_trip() -> None:
    b = Baseline.from_reviews(synthetic_stream(StreamSpec(events=500, seed=3)))
    text = dumps_baseline(b)
    assert loads_baseline(text) == b
    assert baseline_from_dict(json.loads(text)) == b
    with pytest.raises(ValueError, match="format"):
        baseline_from_dict({**baseline_to_dict(b), "format": 99})


def test_builder_learns_from_the_first_events_and_resumes() -> None:
    reviews = synthetic_stream(StreamSpec(events=300, seed=4))
    f = extract(reviews, None)
    builder = BaselineBuilder(200)
    rest = builder.add(f.take(np.arange(300) < 120))
    assert len(rest) == 0 and not builder.done
    resumed = BaselineBuilder(200)
    resumed.load_state(json.loads(json.dumps(builder.state())))
    rest = resumed.add(f.take(np.arange(300) >= 120))
    assert len(rest) == 100 and resumed.done
    assert rest.review_ids[0] == "r200"
    assert resumed.build() == Baseline.from_reviews(reviews[:200])
