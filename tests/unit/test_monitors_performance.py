"""Accuracy without labels: expected confusion matrices by hand, the label-shift reweighting,
the interval's variance against its definition, and coverage on calibrated draws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitors.baseline import classification_scores
from monitors.performance import (
    estimate_performance,
    estimated_accuracy_drop,
    expected_confusion,
    reweight_posteriors,
)
from monitors.priors import em_priors

P = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
UNIFORM = np.full(3, 1 / 3)


def test_unweighted_cbpe_by_hand() -> None:
    est = estimate_performance(P)
    want = np.array([[0.7, 0.2, 0.1], [0.0, 0.0, 0.0], [0.1, 0.3, 0.6]])
    np.testing.assert_allclose(est.confusion, want)
    assert est.method == "unweighted" and est.n == 2
    assert est.accuracy == pytest.approx(0.65, rel=1e-15)
    # rows predicted: (1, 0, 1); true columns: (0.8, 0.5, 0.7)
    assert est.macro_f1 == pytest.approx((1.4 / 1.8 + 0.0 + 1.2 / 1.7) / 3, rel=1e-14)
    # sum of the Bernoulli variances of "right" over n^2
    sd = math.sqrt((0.7 * 0.3 + 0.6 * 0.4) / 4)
    assert est.accuracy_sd == pytest.approx(sd, rel=1e-14)
    assert est.accuracy_lower == pytest.approx(max(0.0, 0.65 - 1.959963984540054 * sd))
    assert est.accuracy_upper == pytest.approx(min(1.0, 0.65 + 1.959963984540054 * sd))
    np.testing.assert_allclose(est.priors, P.mean(axis=0))


def test_weights_count_reviews() -> None:
    rows = np.vstack([P, P[:1]])
    a = estimate_performance(rows)
    b = estimate_performance(P, weights=[2.0, 1.0])
    assert b.n == 3
    assert b.accuracy == pytest.approx(a.accuracy, rel=1e-15) == pytest.approx(2.0 / 3)
    assert b.macro_f1 == pytest.approx(a.macro_f1, rel=1e-14)
    assert b.accuracy_sd == pytest.approx(a.accuracy_sd, rel=1e-14)


def test_reweighting_under_label_shift_by_hand() -> None:
    q = np.array([0.5, 0.25, 0.25])
    post = reweight_posteriors(P, UNIFORM, q)
    # w = (1.5, 0.75, 0.75): (1.05, 0.15, 0.075) / 1.275 and (0.15, 0.225, 0.45) / 0.825
    np.testing.assert_allclose(post, [[14 / 17, 2 / 17, 1 / 17], [2 / 11, 3 / 11, 6 / 11]])
    est = estimate_performance(P, source_priors=UNIFORM, target_priors=q)
    assert est.method == "prior_weighted"
    assert est.accuracy == pytest.approx((14 / 17 + 6 / 11) / 2, rel=1e-14)
    c = expected_confusion(post, [0, 2])
    np.testing.assert_allclose(est.confusion, c, rtol=1e-15)
    assert est.macro_f1 == pytest.approx(classification_scores(c)[1], rel=1e-15)
    # source == target: the unweighted estimate
    same = estimate_performance(P, source_priors=UNIFORM, target_priors=UNIFORM)
    assert same.accuracy == pytest.approx(estimate_performance(P).accuracy, rel=1e-15)


def test_predicted_classes_can_be_given() -> None:
    est = estimate_performance(P, predicted=[1, 1])
    assert est.accuracy == pytest.approx((0.2 + 0.3) / 2, rel=1e-15)


def _numeric_gradient(probs: np.ndarray, src: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    """Central differences of the metric in each target prior (the model's prediction fixed)."""
    pred = np.argmax(probs, axis=1)
    out = np.zeros(3)
    for j in range(3):
        h = np.zeros(3)
        h[j] = 1e-6
        up = estimate_performance(probs, predicted=pred, source_priors=src, target_priors=q + h)
        down = estimate_performance(probs, predicted=pred, source_priors=src, target_priors=q - h)
        out[j] = (getattr(up, metric) - getattr(down, metric)) / 2e-6
    return out


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_prior_uncertainty_enters_by_the_delta_method(metric: str) -> None:
    rng = np.random.default_rng(5)
    probs = rng.dirichlet([1.0, 1.0, 1.0], size=40)
    src = np.array([0.3, 0.3, 0.4])
    q = np.array([0.5, 0.2, 0.3])
    cov = np.array([[4.0, -1.0, -3.0], [-1.0, 2.0, -1.0], [-3.0, -1.0, 4.0]]) * 1e-4
    without = estimate_performance(probs, source_priors=src, target_priors=q)
    with_cov = estimate_performance(
        probs, source_priors=src, target_priors=q, target_covariance=cov
    )
    g = _numeric_gradient(probs, src, q, metric)
    expected = getattr(without, metric + "_sd") ** 2 + g @ cov @ g
    assert getattr(with_cov, metric + "_sd") ** 2 == pytest.approx(expected, rel=1e-6)


def test_macro_f1_variance_is_the_delta_method_of_the_draws() -> None:
    """Given the posteriors, the true labels are categorical draws: the delta-method standard
    error matches the spread of the realised macro-F1 over many draws."""
    rng = np.random.default_rng(11)
    probs = rng.dirichlet([2.0, 2.0, 2.0], size=2000)
    est = estimate_performance(probs)
    pred = np.argmax(probs, axis=1)
    cum = np.cumsum(probs, axis=1)
    realised_acc, realised_f1 = [], []
    for _ in range(400):
        y = (rng.random(len(probs))[:, None] > cum).sum(axis=1)
        c = np.zeros((3, 3))
        np.add.at(c, (pred, y), 1)
        a, f = classification_scores(c)
        realised_acc.append(a)
        realised_f1.append(f)
    assert est.accuracy == pytest.approx(np.mean(realised_acc), abs=0.003)
    assert est.macro_f1 == pytest.approx(np.mean(realised_f1), abs=0.003)
    assert est.accuracy_sd == pytest.approx(np.std(realised_acc), rel=0.15)
    assert est.macro_f1_sd == pytest.approx(np.std(realised_f1), rel=0.15)


def test_label_shift_correction_tracks_the_realised_accuracy() -> None:
    """Calibrated data (exact posteriors of three Gaussian classes under uniform priors; the
    positive class is easy, the other two are confused), priors moved to 10/10/80: plain
    CBPE misses much of the change of accuracy, the reweighted estimate (EM priors) finds it."""
    rng = np.random.default_rng(2)
    means = np.diag([0.8, 0.8, 2.5])
    n = 20_000
    y = rng.choice(3, size=n, p=[0.1, 0.1, 0.8])
    scores = means[y] + rng.normal(size=(n, 3))
    # exact posteriors under uniform priors (equal spherical Gaussians): softmax of scores @ m
    logits = scores @ means.T - 0.5 * (means**2).sum(axis=1)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    realised = float(np.mean(np.argmax(probs, axis=1) == y))
    plain = estimate_performance(probs)
    em = em_priors(probs, UNIFORM)
    ours = estimate_performance(
        probs, source_priors=UNIFORM, target_priors=em.priors, target_covariance=em.covariance
    )
    assert abs(ours.accuracy - realised) < 0.01
    assert abs(plain.accuracy - realised) > 3 * abs(ours.accuracy - realised)
    assert ours.accuracy_lower <= realised <= ours.accuracy_upper


def test_estimated_drop_by_hand() -> None:
    est = estimate_performance(P)
    # sd^2 = 0.1125, baseline 0.8 on 100 reviews: var = 0.1125 + 0.0016
    d = estimated_accuracy_drop(est, 0.8, 100, alpha=0.05, min_drop=0.05)
    from scipy import stats

    assert d.p_value == pytest.approx(stats.norm.cdf(-0.15 / math.sqrt(0.1141)), rel=1e-12)
    assert not d.dropped and d.drop == pytest.approx(0.15)
    sharp = estimate_performance(np.tile([[0.6, 0.3, 0.1]], (10_000, 1)))
    assert estimated_accuracy_drop(sharp, 0.68, 1200, alpha=0.01, min_drop=0.05).dropped
    assert not estimated_accuracy_drop(sharp, 0.68, 1200, alpha=0.01, min_drop=0.1).dropped
    assert d.to_json()["baseline_accuracy"] == 0.8


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="source priors"):
        estimate_performance(P, target_priors=UNIFORM)
    with pytest.raises(ValueError, match="probabilities"):
        estimate_performance(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="predicted"):
        estimate_performance(P, predicted=[0, 3])
    with pytest.raises(ValueError, match="weights"):
        estimate_performance(P, weights=[0.0, 0.0])
    with pytest.raises(ValueError, match="no probability"):
        reweight_posteriors([[1.0, 0.0, 0.0]], UNIFORM, [0.0, 0.5, 0.5])
