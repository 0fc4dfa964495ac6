"""The ensemble flavour's arithmetic on tiny hand-made members: its scores are the weighted
sum of the members' calibrated log-probabilities, centred per row, and its probabilities that
with its own calibration; it saves and loads through the handler's ``model_fn``; the weight
search's cross-validated losses."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from endpoint.ensemble import EnsembleModel
from endpoint.inference import model_fn
from endpoint.model import calibrated_softmax
from endpoint.stack import weight_losses
from tests.unit.test_model import tiny_model

TEXTS = ["good good bad", "not good", "", "bad"]


def test_scores_are_the_weighted_log_probabilities_centred() -> None:
    first, second = tiny_model(), tiny_model(norm=None)
    second.metadata["calibration"] = {"temperature": [2.0, 1.0, 0.5], "bias": [0.1, 0.0, -0.1]}
    calibration = {"temperature": 1.5, "bias": [0.2, -0.1, -0.1]}
    model = EnsembleModel([first, second], [0.25, 0.75], {"calibration": calibration})
    # "bad": first sees bad 1 (l2 -> 1): z = (0.1 + 2, 0.2, -0.3 - 2)
    p1 = np.array([math.exp(v) for v in (2.1, 0.2, -2.3)])
    p1 /= p1.sum()
    # second, raw counts: the same z, calibrated: z / (2, 1, 0.5) + (0.1, 0, -0.1)
    z2 = [2.1 / 2 + 0.1, 0.2, -2.3 / 0.5 - 0.1]
    p2 = np.array([math.exp(v) for v in z2])
    p2 /= p2.sum()
    want = 0.25 * np.log(p1) + 0.75 * np.log(p2)
    want -= want.mean()
    got = model.decision_function(["bad"])[0]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert abs(got.sum()) < 1e-12
    np.testing.assert_allclose(
        model.predict_proba(["bad"])[0],
        calibrated_softmax(want[None, :], 1.5, np.array([0.2, -0.1, -0.1]))[0],
        rtol=1e-12,
    )
    assert model.predict_proba([]).shape == (0, 3)
    # a member with weight 0 is not asked
    alone = EnsembleModel([first, second], [1.0, 0.0])
    np.testing.assert_allclose(
        alone.predict_proba(TEXTS), first.predict_proba(TEXTS), rtol=1e-12, atol=1e-15
    )


def test_description() -> None:
    model = EnsembleModel([tiny_model(), tiny_model()], [0.6, 0.4], {"name": "e", "version": "v"})
    assert model.flavour == "ensemble"
    assert model.size_text == "ensemble of tfidf x 0.60 and tfidf x 0.40"
    assert model.backend == "numpy"
    assert model.vocabulary == {"bad", "good"}  # the TF-IDF member's single words
    assert model.oov_rate(["good thing"]).tolist() == [0.5]


def test_saved_and_loaded_through_model_fn(tmp_path: Path) -> None:
    first, second = tiny_model(), tiny_model(norm=None)
    model = EnsembleModel([first, second], [0.3, 0.7], {"name": "e", "version": "v1"})
    root = model.save(tmp_path / "e")
    meta = json.loads((root / "model.json").read_text())
    assert meta["flavour"] == "ensemble" and meta["version"] == "v1"
    assert meta["members"] == [
        {"path": "members/0-tfidf", "flavour": "tfidf", "weight": 0.3},
        {"path": "members/1-tfidf", "flavour": "tfidf", "weight": 0.7},
    ]
    loaded = model_fn(root)
    assert isinstance(loaded, EnsembleModel) and loaded.weights == (0.3, 0.7)
    np.testing.assert_allclose(loaded.predict_proba(TEXTS), model.predict_proba(TEXTS), rtol=1e-14)
    # a member outside the directory is refused
    meta["members"][1]["path"] = "../elsewhere"
    (root / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="outside"):
        model_fn(root)


def test_invalid_ensembles_are_refused() -> None:
    m = tiny_model()
    with pytest.raises(ValueError, match="one weight per member"):
        EnsembleModel([m, m], [1.0])
    with pytest.raises(ValueError, match="one weight per member"):
        EnsembleModel([], [])
    for weights in ([-0.5, 1.5], [0.0, 0.0], [math.nan, 1.0]):
        with pytest.raises(ValueError, match="weights must be"):
            EnsembleModel([m, m], weights)
    with pytest.raises(ValueError, match="cannot be ensembles"):
        EnsembleModel([EnsembleModel([m], [1.0])], [1.0])


def test_weight_losses() -> None:
    rng = np.random.default_rng(7)
    labels = np.repeat(np.array([-1, 0, 1]), 30)
    informative = np.log(np.full((90, 3), 0.1))
    informative[np.arange(90), labels + 1] = np.log(0.8)
    informative += rng.normal(0, 1.5, (90, 3))  # not separable: the fit has an optimum
    constant = np.zeros((90, 3))
    grid = [0.0, 0.25, 0.5, 1.0]
    losses = weight_losses([informative, constant], labels, grid, 3, 0, "vector")
    # w = 0: scores carry nothing, the biases fit the fitting folds' class shares (1/3 each)
    assert losses[0] == pytest.approx(math.log(3), abs=1e-6)
    # w > 0: the calibration's temperatures absorb the scale of the one informative member
    assert losses[1] == pytest.approx(losses[2], abs=1e-6)
    assert losses[2] == pytest.approx(losses[3], abs=1e-6)
    assert losses[3] < 0.9 * math.log(3)
    # the members swapped with their weights give the same losses
    swapped = weight_losses([constant, informative], labels, [1.0, 0.75, 0.5, 0.0], 3, 0, "vector")
    np.testing.assert_allclose(swapped, losses, rtol=1e-9)
    # noise added to the informative member: most weight on the informative one
    noise = rng.normal(0, 2.0, (90, 3))
    mixed = weight_losses([informative, noise], labels, [0.0, 0.5, 0.9], 3, 0, "vector")
    assert mixed[2] < mixed[1] < mixed[0]
    with pytest.raises(ValueError, match="two members"):
        weight_losses([informative], labels, grid, 3, 0, "vector")
