"""Prior-probability shift: BBSE and EM estimates, intervals and the shift decision."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from monitors.priors import bbse, em_priors, prior_shift

# validation confusion counts [predicted, true], 100 reviews per true class
CONFUSION = np.array([[80, 10, 5], [10, 70, 10], [10, 20, 85]])
M = CONFUSION / 100.0


def test_bbse_recovers_priors_exactly_from_expected_predictions() -> None:
    q = np.array([0.5, 0.2, 0.3])
    mu = M @ q  # (0.435, 0.22, 0.345)
    np.testing.assert_allclose(mu, [0.435, 0.22, 0.345])
    est = bbse(CONFUSION, [435, 220, 345])
    np.testing.assert_allclose(est.priors, q, atol=1e-12)
    np.testing.assert_allclose(est.raw, q, atol=1e-12)
    assert est.n == 1000
    assert np.all(est.lower < q) and np.all(q < est.upper)


def test_bbse_covariance_is_the_delta_method() -> None:
    est = bbse(CONFUSION, [435, 220, 345])
    q = np.array([0.5, 0.2, 0.3])
    mu = np.array([0.435, 0.22, 0.345])
    inv = np.linalg.inv(M)
    cov_mu = (np.diag(mu) - np.outer(mu, mu)) / 1000
    cov_m = sum(q[j] ** 2 * (np.diag(M[:, j]) - np.outer(M[:, j], M[:, j])) / 100 for j in range(3))
    np.testing.assert_allclose(est.covariance, inv @ (cov_mu + cov_m) @ inv.T)
    z = stats.norm.ppf(1 - 0.05 / 6)  # simultaneous over 3 classes
    sd = np.sqrt(np.diag(est.covariance))
    np.testing.assert_allclose(est.upper, q + z * sd)


def test_bbse_projects_onto_the_simplex() -> None:
    # predictions no mixture of M's columns can produce: the raw solution leaves the simplex
    est = bbse(CONFUSION, [900, 50, 50])
    assert est.raw.min() < 0
    assert est.priors.min() >= 0 and est.priors.sum() == pytest.approx(1.0)


def test_bbse_rejects_a_singular_confusion_matrix() -> None:
    with pytest.raises(ValueError, match="singular"):
        bbse([[50, 50, 0], [50, 50, 0], [0, 0, 100]], [10, 10, 10])


def test_bbse_interval_covers_by_simulation() -> None:
    rng = np.random.default_rng(11)
    q = np.array([0.5, 0.2, 0.3])
    big = (M * 100_000).round().astype(int)  # a large validation set: M is nearly known
    covered = 0
    for _ in range(500):
        est = bbse(big, rng.multinomial(800, M @ q))
        covered += bool(np.all((est.lower <= q) & (q <= est.upper)))
    assert covered / 500 >= 0.93
    assert covered == 475


def test_em_on_one_hot_predictions_returns_the_predicted_shares() -> None:
    probs = np.repeat(np.eye(3), [5, 3, 2], axis=0)
    est = em_priors(probs, [1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(est.priors, [0.5, 0.3, 0.2], atol=1e-9)


def _calibrated(n: int, priors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Posteriors of a calibrated model (classes are unit Gaussians at -2, 0, 2) trained at
    uniform priors, on a sample drawn with ``priors``."""
    y = rng.choice(3, size=n, p=priors)
    x = rng.normal(np.array([-2.0, 0.0, 2.0])[y], 1.0)
    lik = stats.norm.pdf(x[:, None], loc=[-2.0, 0.0, 2.0])
    out: np.ndarray = lik / lik.sum(axis=1, keepdims=True)
    return out


def test_em_recovers_shifted_priors_of_a_calibrated_model() -> None:
    rng = np.random.default_rng(2)
    target = np.array([0.5, 0.2, 0.3])
    est = em_priors(_calibrated(4000, target, rng), [1 / 3, 1 / 3, 1 / 3])
    assert np.all(est.lower <= target) and np.all(target <= est.upper)
    np.testing.assert_allclose(est.priors, target, atol=0.03)
    assert est.iterations > 1
    assert est.priors.sum() == pytest.approx(1.0)


def test_prior_shift_flags_only_when_the_interval_excludes_the_reference() -> None:
    est = bbse(CONFUSION, [435, 220, 345])  # priors (0.5, 0.2, 0.3)
    assert prior_shift(est, [0.2, 0.2, 0.6], alpha=0.001).shifted
    assert not prior_shift(est, [0.49, 0.21, 0.30], alpha=0.001).shifted
    # significant, but below the effect floor
    assert not prior_shift(est, [0.2, 0.2, 0.6], alpha=0.001, min_change=0.5).shifted
    # the reference's own uncertainty widens the interval
    wide = np.eye(3) * 0.05
    assert not prior_shift(est, [0.3, 0.2, 0.5], wide, alpha=0.001).shifted


def test_stationary_windows_rarely_flag() -> None:
    rng = np.random.default_rng(4)
    q = np.array([0.2, 0.2, 0.6])
    base = bbse(CONFUSION, rng.multinomial(2000, M @ q))
    flags = sum(
        prior_shift(
            bbse(CONFUSION, rng.multinomial(500, M @ q)),
            base.priors,
            base.covariance,
            alpha=0.01,
        ).shifted
        for _ in range(300)
    )
    assert flags <= 3


def test_em_weights_count_repeated_rows() -> None:
    rng = np.random.default_rng(8)
    probs = _calibrated(300, np.array([0.3, 0.3, 0.4]), rng)
    rows = np.repeat(probs[:50], 3, axis=0)
    a = em_priors(rows, [1 / 3, 1 / 3, 1 / 3])
    b = em_priors(probs[:50], [1 / 3, 1 / 3, 1 / 3], weights=np.full(50, 3.0))
    np.testing.assert_allclose(a.priors, b.priors, atol=1e-9)
    np.testing.assert_allclose(a.covariance, b.covariance, atol=1e-9)
    assert a.n == b.n == 150
