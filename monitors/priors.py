"""Prior-probability (label) shift: estimate a window's true class priors from predictions.

Under label shift ``p(x | y)`` stays fixed while ``p(y)`` moves, so the model's outputs on a
window determine the window's priors:

* **BBSE** (Lipton, Wang and Smola 2018, "Detecting and correcting for label shift with black
  box predictors"): with ``C[i, j] = P(predicted i, true j)`` on validation data and ``mu`` the
  window's predicted-label shares, the importance weights are ``w = C^-1 mu`` and the target
  priors ``q = w * p_source`` -- equivalently ``q = M^-1 mu`` with ``M = P(predicted | true)``.
  The interval is analytical (delta method): ``Cov(q) = M^-1 [Cov(mu) + sum_j q_j^2 Cov(M_j)]
  M^-T`` where ``Cov(mu) = (diag(mu) - mu mu^T) / n`` and ``Cov(M_j)`` is the multinomial
  covariance of column ``j`` of ``M`` estimated from ``n_j`` validation reviews of class ``j``.
* **EM / maximum likelihood** (Saerens, Latinne and Decaestecker 2002; Alexandari, Kundaje and
  Shrikumar 2020, "Maximum likelihood with bias-corrected calibration is hard-to-beat at label
  shift adaptation"): iterate ``post_i ∝ p_i * q / p_source``, ``q = mean_i post_i`` on the
  predicted probabilities. The source priors are the mean predicted probabilities on the
  reference data, as Alexandari et al. recommend (consistent even when calibration is
  imperfect). The interval comes from the observed Fisher information of the mixture
  likelihood ``sum_i log sum_k q_k p_ik / p_source_k`` on the simplex.

Point estimates are projected onto the probability simplex (Euclidean projection); intervals
are clipped to [0, 1] and Bonferroni-adjusted over the classes. :func:`prior_shift` compares a
window's estimate with a reference estimate (both with their sampling covariance) and flags a
shift when the simultaneous interval of the difference excludes 0 for some class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitors._stats import FloatArray, norm_ppf, project_to_simplex

__all__ = [
    "PriorEstimate",
    "PriorShift",
    "bbse",
    "em_priors",
    "naive_priors",
    "prior_estimates",
    "prior_shift",
]


@dataclass(frozen=True, slots=True)
class PriorEstimate:
    """Estimated class priors with a simultaneous ``confidence`` interval."""

    method: str
    priors: FloatArray
    raw: FloatArray  # before projection onto the simplex
    covariance: FloatArray
    lower: FloatArray
    upper: FloatArray
    confidence: float
    n: int
    iterations: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "method": self.method,
            "priors": [round(float(v), 6) for v in self.priors],
            "lower": [round(float(v), 6) for v in self.lower],
            "upper": [round(float(v), 6) for v in self.upper],
            "confidence_level": self.confidence,
            "count": self.n,
        }


def _interval(
    point: FloatArray, cov: FloatArray, confidence: float
) -> tuple[FloatArray, FloatArray]:
    k = point.shape[0]
    z = norm_ppf(1 - (1 - confidence) / (2 * k))
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    return np.clip(point - z * sd, 0.0, 1.0), np.clip(point + z * sd, 0.0, 1.0)


def bbse(
    confusion: npt.ArrayLike, predicted_counts: npt.ArrayLike, *, confidence: float = 0.95
) -> PriorEstimate:
    """Black-box shift estimation from a validation confusion matrix of counts
    ``[predicted, true]`` and the window's predicted-class counts."""
    c = np.asarray(confusion, dtype=np.float64)
    counts = np.asarray(predicted_counts, dtype=np.float64)
    k = counts.shape[0]
    if c.shape != (k, k):
        raise ValueError(f"confusion must be {k}x{k}, got {c.shape}")
    n = float(counts.sum())
    if n <= 0:
        raise ValueError("the window holds no predictions")
    n_true = c.sum(axis=0)
    if np.any(n_true <= 0):
        raise ValueError("every class needs validation examples")
    m = c / n_true
    if abs(np.linalg.det(m)) < 1e-9:
        raise ValueError("the confusion matrix is singular: BBSE is not identifiable")
    mu = counts / n
    raw = np.linalg.solve(m, mu)
    q = project_to_simplex(raw)
    cov_mu = (np.diag(mu) - np.outer(mu, mu)) / n
    cov_m = np.zeros((k, k))
    for j in range(k):
        col = m[:, j]
        cov_m += max(float(raw[j]), 0.0) ** 2 * (np.diag(col) - np.outer(col, col)) / n_true[j]
    inv = np.linalg.inv(m)
    cov = inv @ (cov_mu + cov_m) @ inv.T
    lo, hi = _interval(q, cov, confidence)
    return PriorEstimate("bbse", q, raw, cov, lo, hi, confidence, int(n))


def em_priors(
    probabilities: npt.ArrayLike,
    source_priors: npt.ArrayLike,
    *,
    weights: npt.ArrayLike | None = None,
    confidence: float = 0.95,
    tol: float = 1e-10,
    max_iter: int = 1000,
) -> PriorEstimate:
    """Maximum-likelihood priors of a window by EM (Saerens et al. 2002) from its (n, k)
    predicted probabilities, which the model calibrated to ``source_priors``. ``weights``
    counts how many reviews each row stands for (default one each)."""
    p = np.asarray(probabilities, dtype=np.float64)
    src = np.asarray(source_priors, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != src.shape[0]:
        raise ValueError("probabilities must be (n, k) with k source priors")
    rows, k = p.shape
    w = np.ones(rows) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (rows,) or np.any(w < 0):
        raise ValueError("weights must be one non-negative number per row")
    n = round(float(w.sum()))
    if n == 0:
        raise ValueError("the window holds no predictions")
    if np.any(src <= 0):
        raise ValueError("source priors must be > 0")
    a = p / src  # likelihood ratios p(x | y) / p(x) up to a constant
    q = src / src.sum()
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        post = a * q
        post /= post.sum(axis=1, keepdims=True)
        new = w @ post / w.sum()
        done = float(np.max(np.abs(new - q))) < tol
        q = new
        if done:
            break
    # observed information on the free coordinates q_1..q_{k-1} (q_k = 1 - sum)
    lik = a @ q
    g = (a[:, :-1] - a[:, -1:]) / lik[:, None]
    info = (g * w[:, None]).T @ g
    try:
        cov_free = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        cov_free = np.linalg.pinv(info)
    jac = np.vstack([np.eye(k - 1), -np.ones((1, k - 1))])
    cov = jac @ cov_free @ jac.T
    lo, hi = _interval(q, cov, confidence)
    return PriorEstimate("em", q, q.copy(), cov, lo, hi, confidence, n, it)


@dataclass(frozen=True, slots=True)
class PriorShift:
    """A window's estimate against the reference: the difference, its simultaneous interval
    and whether that interval excludes zero for some class by at least ``min_change``."""

    estimate: PriorEstimate
    reference: FloatArray
    difference: FloatArray
    lower: FloatArray
    upper: FloatArray
    shifted: bool
    #: set when a shift was found but vanishes without this one group (not broad-based)
    concentrated_in: str | None = None


def prior_shift(
    estimate: PriorEstimate,
    reference: npt.ArrayLike,
    reference_covariance: npt.ArrayLike | None = None,
    *,
    alpha: float,
    min_change: float = 0.0,
) -> PriorShift:
    """Test ``estimate`` against reference priors (with their covariance, if estimated):
    the ``1 - alpha`` simultaneous (Bonferroni over classes) interval of the difference must
    exclude 0 and the change must be at least ``min_change`` for some class."""
    ref = np.asarray(reference, dtype=np.float64)
    k = ref.shape[0]
    cov = estimate.covariance + (
        np.zeros((k, k))
        if reference_covariance is None
        else np.asarray(reference_covariance, dtype=np.float64)
    )
    diff = estimate.priors - ref
    z = norm_ppf(1 - alpha / (2 * k))
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    lo, hi = diff - z * sd, diff + z * sd
    excluded = (lo > 0) | (hi < 0)
    shifted = bool(np.any(excluded & (np.abs(diff) >= min_change)))
    return PriorShift(estimate, ref, diff, lo, hi, shifted)


def naive_priors(predicted_counts: npt.ArrayLike, *, confidence: float = 0.95) -> PriorEstimate:
    """The predicted-label shares taken as the class priors, with the simultaneous
    (Bonferroni) normal interval of those shares. It ignores the model's errors, so it is
    biased whenever the priors differ from the validation data's: the reference to beat."""
    counts = np.asarray(predicted_counts, dtype=np.float64)
    n = float(counts.sum())
    if n <= 0:
        raise ValueError("the window holds no predictions")
    mu = counts / n
    cov = (np.diag(mu) - np.outer(mu, mu)) / n
    z = norm_ppf(1 - (1 - confidence) / (2 * mu.shape[0]))
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    lo, hi = np.clip(mu - z * sd, 0.0, 1.0), np.clip(mu + z * sd, 0.0, 1.0)
    return PriorEstimate("naive", mu, mu.copy(), cov, lo, hi, confidence, round(n))


def prior_estimates(
    probabilities: npt.ArrayLike,
    predicted_counts: npt.ArrayLike,
    *,
    confusion: npt.ArrayLike | None,
    source_priors: npt.ArrayLike,
    confidence: float = 0.95,
    weights: npt.ArrayLike | None = None,
) -> dict[str, PriorEstimate]:
    """Naive, BBSE (with ``confusion`` ``[predicted, true]``, when given) and EM (with the
    model's training priors ``source_priors``) estimates of a window's class priors.

    ``probabilities`` are the window's (n, 3) rows, each standing for ``weights`` reviews
    (default one each)."""
    out = {"naive": naive_priors(predicted_counts, confidence=confidence)}
    if confusion is not None:
        out["bbse"] = bbse(confusion, predicted_counts, confidence=confidence)
    out["em"] = em_priors(probabilities, source_priors, weights=weights, confidence=confidence)
    return out
