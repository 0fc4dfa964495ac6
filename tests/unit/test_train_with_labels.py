"""``model train --labels``: human labels join the training part only; the validation split
stays the same, and a labelled text that is in the validation part is left out."""

from __future__ import annotations

import numpy as np
import pytest

from endpoint.train import Reviews, TrainConfig, _split, train_with_labels

WORDS = {-1: "awful broken returned", 0: "okay average fine", 1: "lovely perfect great"}


def _reviews(n: int) -> Reviews:
    labels = np.array([(-1, 0, 1)[i % 3] for i in range(n)], dtype=np.int64)
    texts = [f"{WORDS[int(y)]} item {i}" for i, y in enumerate(labels)]
    return Reviews(texts, labels)


def test_labels_are_added_to_training_and_the_split_is_fixed() -> None:
    reviews = _reviews(60)
    config = TrainConfig(seed=1, min_df=1)
    _, valid_idx = _split(reviews, config)
    leaked = reviews.texts[int(valid_idx[0])]
    texts = ["lovely perfect great extra 1", "awful broken returned extra 2", leaked]
    report = train_with_labels(reviews, texts, [1, -1, 1], config)
    assert (report.added, report.held_out) == (2, 1)
    assert report.before.n_train == 48
    assert report.after.n_train == 50
    assert report.before.n_validation == report.after.n_validation == 12
    assert int(report.before.confusion.sum()) == int(report.after.confusion.sum()) == 12
    assert 0.0 <= report.after.macro_f1 <= 1.0


def test_bad_labels() -> None:
    with pytest.raises(ValueError, match="one label"):
        train_with_labels(_reviews(30), ["a"], [], TrainConfig(min_df=1))
    with pytest.raises(ValueError, match="labels must be"):
        train_with_labels(_reviews(30), ["a"], [2], TrainConfig(min_df=1))
