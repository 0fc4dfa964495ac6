"""The model's accuracy and macro-F1 on a window without labels, corrected for label shift.

Confidence-based performance estimation (CBPE, the idea behind NannyML's estimator): with
calibrated probabilities ``p(y | x)``, a review predicted ``i`` is of true class ``j`` with
probability ``p(j | x)``, so the window's *expected confusion matrix* is
``C[i, j] = sum over reviews predicted i of p(j | x)`` and accuracy and macro-F1 follow from
it (:func:`monitors.baseline.classification_scores`, the same definition as on labels).

Plain CBPE assumes the window's ``p(y | x)`` is the model's. Under label shift the priors move
from the source's ``p(y)`` to ``q(y)`` while ``p(x | y)`` stays, and Bayes' rule gives the
window's posteriors: ``p'(y | x) ∝ w_y p(y | x)`` with importance weights
``w_y = q(y) / p(y)``. :func:`estimate_performance` takes estimated target priors (EM on the
same calibrated probabilities, :func:`monitors.priors.em_priors`, whose final posteriors are
exactly these) and builds the expected confusion matrix from the reweighted posteriors.

Interval (normal approximation, two-sided at ``confidence``): the target is the window's
*realised* accuracy (macro-F1), i.e. the score its unknown true labels would give. Given the
posteriors, each review's true class is an independent categorical draw, so the rows of the
confusion matrix have the multinomial covariance
``S_i = sum over reviews predicted i of diag(p') - p' p'^T``; accuracy's variance is the
sum of the Bernoulli variances ``p'(predicted | x) (1 - p'(predicted | x))`` over ``n^2``,
macro-F1's comes from its gradient in ``C`` (delta method). The estimated priors' own
covariance (from EM) is carried through the delta method as well: ``d p'_l / d q_j =
p'_l (δ_lj - p'_j) / q_j``, so ``d C_i / d q = S_i diag(1 / q)``. Calibration error is not in
the interval: it rests on the calibration being right.

:func:`estimated_accuracy_drop` tests an estimate against the baseline accuracy (one-sided
normal test, the baseline's own binomial error included), as EstimatedAccuracyDrop uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitors._stats import FloatArray, IntArray, norm_cdf, norm_ppf
from monitors.baseline import classification_scores

__all__ = [
    "EstimatedDrop",
    "PerformanceEstimate",
    "estimate_performance",
    "estimated_accuracy_drop",
    "expected_confusion",
    "reweight_posteriors",
]

#: Floor of a target prior in the derivative ``1 / q`` (a class estimated absent).
_Q_FLOOR = 1e-12


def reweight_posteriors(
    probabilities: npt.ArrayLike, source_priors: npt.ArrayLike, target_priors: npt.ArrayLike
) -> FloatArray:
    """Posteriors under label shift: ``p'(y | x) ∝ (q_y / p_y) p(y | x)``, rows (n, k)."""
    p = np.asarray(probabilities, dtype=np.float64)
    src = np.asarray(source_priors, dtype=np.float64)
    q = np.asarray(target_priors, dtype=np.float64)
    if p.ndim != 2 or src.shape != (p.shape[1],) or q.shape != src.shape:
        raise ValueError("probabilities must be (n, k) with k source and k target priors")
    if np.any(src <= 0) or np.any(q < 0) or q.sum() <= 0:
        raise ValueError("source priors must be > 0 and target priors >= 0, not all 0")
    out = p * (q / src)
    sums = out.sum(axis=1, keepdims=True)
    if np.any(sums <= 0):
        raise ValueError("a row has no probability left on the classes the target keeps")
    out /= sums
    return out


def expected_confusion(
    posteriors: npt.ArrayLike, predicted: npt.ArrayLike, weights: npt.ArrayLike | None = None
) -> FloatArray:
    """Expected counts ``[predicted, true]``: row ``i`` sums the posteriors of the reviews
    predicted ``i`` (each row standing for ``weights`` reviews, default one)."""
    p = np.asarray(posteriors, dtype=np.float64)
    pred = np.asarray(predicted, dtype=np.int64)
    n, k = p.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if pred.shape != (n,) or w.shape != (n,):
        raise ValueError("predicted and weights need one value per row")
    c = np.zeros((k, k))
    np.add.at(c, pred, p * w[:, None])
    return c


@dataclass(frozen=True, slots=True)
class PerformanceEstimate:
    """Estimated accuracy and macro-F1 of one window, with standard errors and two-sided
    ``confidence`` intervals (clipped to [0, 1]); ``priors`` are the target priors the
    posteriors were reweighted to (the source priors for plain CBPE)."""

    method: str
    accuracy: float
    accuracy_sd: float
    accuracy_lower: float
    accuracy_upper: float
    macro_f1: float
    macro_f1_sd: float
    macro_f1_lower: float
    macro_f1_upper: float
    confusion: FloatArray
    priors: FloatArray
    confidence: float
    n: int

    def to_json(self) -> dict[str, object]:
        def r(v: float) -> float:
            return round(float(v), 6)

        return {
            "method": self.method,
            "accuracy": r(self.accuracy),
            "accuracy_interval": [r(self.accuracy_lower), r(self.accuracy_upper)],
            "macro_f1": r(self.macro_f1),
            "macro_f1_interval": [r(self.macro_f1_lower), r(self.macro_f1_upper)],
            "priors": [r(v) for v in self.priors],
            "confidence_level": self.confidence,
            "count": self.n,
        }


def _macro_f1_gradient(c: FloatArray) -> FloatArray:
    """d macro-F1 / d C for counts ``[predicted, true]`` (macro over the classes that occur,
    F1_j = 2 C_jj / (R_j + T_j) with row and column sums R, T)."""
    k = c.shape[0]
    d = c.sum(axis=1) + c.sum(axis=0)
    present = np.flatnonzero(d > 0)
    g = np.zeros((k, k))
    for j in present.tolist():
        g[j, j] += 2.0 / d[j]
        common = 2.0 * c[j, j] / d[j] ** 2
        g[j, :] -= common
        g[:, j] -= common
    out: FloatArray = g / max(len(present), 1)
    return out


def _row_covariances(post: FloatArray, pred: IntArray, w: FloatArray) -> FloatArray:
    """``S[i] = sum over rows predicted i of w (diag(p') - p' p'^T)``, shape (k, k, k)."""
    k = post.shape[1]
    s = np.zeros((k, k, k))
    for i in range(k):
        rows = pred == i
        pw = post[rows] * w[rows, None]
        s[i] = np.diag(pw.sum(axis=0)) - pw.T @ post[rows]
    return s


def estimate_performance(
    probabilities: npt.ArrayLike,
    *,
    weights: npt.ArrayLike | None = None,
    predicted: npt.ArrayLike | None = None,
    source_priors: npt.ArrayLike | None = None,
    target_priors: npt.ArrayLike | None = None,
    target_covariance: npt.ArrayLike | None = None,
    confidence: float = 0.95,
) -> PerformanceEstimate:
    """Accuracy and macro-F1 of a window from its calibrated (n, k) ``probabilities``.

    ``predicted``: the model's class index per row (default: the most probable column).
    With ``target_priors`` (and ``source_priors``, the priors the model is calibrated to) the
    posteriors are reweighted to them (method ``prior_weighted``), else taken as they are
    (``unweighted``: plain CBPE). ``target_covariance``: the estimated priors' covariance,
    added to the interval by the delta method. ``weights``: reviews per row (default 1)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ValueError(f"probabilities must be (n, k) with n >= 1, got {p.shape}")
    n_rows, k = p.shape
    w = np.ones(n_rows) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n_rows,) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be one non-negative number per row, not all 0")
    pred = (
        np.argmax(p, axis=1) if predicted is None else np.asarray(predicted, dtype=np.int64)
    ).astype(np.int64)
    if pred.shape != (n_rows,) or pred.min() < 0 or pred.max() >= k:
        raise ValueError(f"predicted must be one class index in [0, {k}) per row")
    if target_priors is None:
        method, post = "unweighted", p / p.sum(axis=1, keepdims=True)
        q = np.asarray(
            p.T @ w / w.sum() if source_priors is None else source_priors, dtype=np.float64
        )
    else:
        if source_priors is None:
            raise ValueError("reweighting to target priors needs the source priors")
        method = "prior_weighted"
        q = np.asarray(target_priors, dtype=np.float64)
        post = reweight_posteriors(p, source_priors, q)
    n = float(w.sum())
    c = expected_confusion(post, pred, w)
    accuracy, macro_f1 = classification_scores(c)
    s = _row_covariances(post, pred, w)
    grads = {"accuracy": np.eye(k) / n, "macro_f1": _macro_f1_gradient(c)}
    cov_q = None
    if target_covariance is not None and target_priors is not None:
        cov_q = np.asarray(target_covariance, dtype=np.float64)
        if cov_q.shape != (k, k):
            raise ValueError(f"target_covariance must be {k}x{k}")
    sd: dict[str, float] = {}
    for name, g in grads.items():
        var = float(np.einsum("ij,ijl,il->", g, s, g))
        if cov_q is not None:
            dq = np.einsum("ij,ijl->l", g, s) / np.maximum(q, _Q_FLOOR)
            var += float(dq @ cov_q @ dq)
        sd[name] = float(np.sqrt(max(var, 0.0)))
    z = norm_ppf(0.5 + confidence / 2)

    def lo(v: float, e: float) -> float:
        return float(np.clip(v - z * e, 0.0, 1.0))

    def hi(v: float, e: float) -> float:
        return float(np.clip(v + z * e, 0.0, 1.0))

    return PerformanceEstimate(
        method=method,
        accuracy=accuracy,
        accuracy_sd=sd["accuracy"],
        accuracy_lower=lo(accuracy, sd["accuracy"]),
        accuracy_upper=hi(accuracy, sd["accuracy"]),
        macro_f1=macro_f1,
        macro_f1_sd=sd["macro_f1"],
        macro_f1_lower=lo(macro_f1, sd["macro_f1"]),
        macro_f1_upper=hi(macro_f1, sd["macro_f1"]),
        confusion=c,
        priors=q,
        confidence=confidence,
        n=round(n),
    )


@dataclass(frozen=True, slots=True)
class EstimatedDrop:
    """An estimated accuracy against the baseline's: one-sided normal test of a drop."""

    estimate: PerformanceEstimate
    baseline_accuracy: float
    baseline_count: int
    p_value: float
    dropped: bool

    @property
    def drop(self) -> float:
        return self.baseline_accuracy - self.estimate.accuracy

    def to_json(self) -> dict[str, object]:
        return {
            **self.estimate.to_json(),
            "baseline_accuracy": round(self.baseline_accuracy, 6),
            "baseline_count": self.baseline_count,
            "p_value": float(f"{self.p_value:.6g}"),
            "dropped": self.dropped,
        }


def estimated_accuracy_drop(
    estimate: PerformanceEstimate,
    baseline_accuracy: float,
    baseline_count: int,
    *,
    alpha: float,
    min_drop: float = 0.0,
) -> EstimatedDrop:
    """Is the estimated accuracy below the baseline's? ``z = (estimate - baseline) / sqrt(
    sd^2 + a (1 - a) / n_baseline)``, ``p = Phi(z)``; a finding needs ``p < alpha`` and a drop
    of at least ``min_drop``."""
    if baseline_count <= 0 or not 0.0 <= baseline_accuracy <= 1.0:
        raise ValueError("the baseline accuracy needs labelled reviews")
    var = estimate.accuracy_sd**2 + baseline_accuracy * (1 - baseline_accuracy) / baseline_count
    diff = estimate.accuracy - baseline_accuracy
    p = norm_cdf(float(diff / np.sqrt(var))) if var > 0 else float(diff >= 0)
    dropped = p < alpha and -diff >= min_drop
    return EstimatedDrop(estimate, baseline_accuracy, baseline_count, p, dropped)
