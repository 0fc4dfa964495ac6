"""Probability calibration: temperature scaling with class biases, and how well it calibrates.

Both methods of Alexandari, Kundaje and Shrikumar 2020 ("Maximum likelihood with
bias-corrected calibration is hard-to-beat at label shift adaptation") map a classifier's
linear scores ``s`` (logits) to ``softmax(s / T + b)`` with one bias per class, fitted by
minimising the mean negative log-likelihood of the true classes on reviews the model was not
fitted on:

* bias-corrected temperature scaling (BCTS, ``method="bcts"``): one temperature ``T > 0`` for
  the whole model;
* vector scaling (VS, ``method="vector"``, the shipped default): one temperature per class
  (``T`` is a vector, dividing column by column), which also corrects a model that is sharper
  on one class than on another -- ours is over-confident on "neutral" and under-confident on
  the other two, which a single temperature cannot undo and which biases both EM's priors and
  the label-free accuracy estimate.

``T < 1`` sharpens an under-confident model, ``T > 1`` softens an over-confident one; the
biases correct the class-wise offsets plain temperature scaling leaves, which is what
maximum-likelihood label-shift estimation (EM) needs. At the NLL optimum the mean calibrated
probabilities equal the class shares of the fitting data (the gradient in ``b`` is their
difference).

Applying a calibration is :func:`endpoint.model.calibrated_softmax` (numpy only, it runs in
the SageMaker archive); this module fits and judges one (scipy is imported only to fit).

Class labels here are column indices ``0..k-1`` of the score matrix.

Public API::

    Calibration(temperature=1.0, bias=(0.0, 0.0, 0.0))   .apply(scores) -> probabilities
        .method -> "bias_corrected_temperature_scaling" | "vector_scaling"   # float T | tuple
        .to_json() -> dict;  Calibration.from_json(doc)
    fit_scaling(scores, labels, method="vector") -> Calibration   # NLL-optimal T(s) and biases
    fit_bcts(scores, labels) -> Calibration              # fit_scaling(..., method="bcts")
    fit_choice(scores, labels, "auto", folds=5, seed=0) -> ScalingChoice  # the method of the
        # smaller cross-validated log loss (or the one named), fitted on every row
    best_method({"bcts": loss, "vector": loss}) -> "bcts" | "vector"   # BCTS on a tie
    cross_validated_log_loss(scores, labels, method, folds) -> float
    stratified_folds(labels, folds, seed) -> [(fit rows, held rows), ...]
    negative_log_likelihood(probabilities, labels) -> float      # mean, natural log
    expected_calibration_error(probabilities, labels, bins=15) -> float
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from .model import calibrated_softmax, temperatures

__all__ = [
    "CHOICES",
    "ECE_BINS",
    "METHODS",
    "METHOD_NAMES",
    "Calibration",
    "ScalingChoice",
    "best_method",
    "cross_validated_log_loss",
    "expected_calibration_error",
    "fit_bcts",
    "fit_choice",
    "fit_scaling",
    "negative_log_likelihood",
    "stratified_folds",
]

#: Equal-width confidence bins of :func:`expected_calibration_error` (Guo et al. 2017).
ECE_BINS = 15
#: ``method`` written with a calibration in ``model.json``: one temperature or one per class.
METHOD_NAMES = {"bcts": "bias_corrected_temperature_scaling", "vector": "vector_scaling"}
Method = Literal["bcts", "vector"]
#: What a trainer may ask for: a method, or ``"auto"``, the method whose calibration
#: generalises better on the fitting reviews themselves (:func:`fit_choice`).
Choice = Literal["auto", "bcts", "vector"]
CHOICES: tuple[Choice, ...] = ("auto", "bcts", "vector")
#: The methods ``"auto"`` compares, fewer parameters first (:func:`best_method`).
METHODS: tuple[Method, ...] = ("bcts", "vector")
#: Folds of :func:`fit_choice`'s cross-validation.
CHOICE_FOLDS = 5

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Calibration:
    """``softmax(scores / temperature + bias)``; the defaults leave probabilities as they are.
    ``temperature`` is one float (BCTS) or a tuple of one per class (vector scaling)."""

    temperature: float | tuple[float, ...] = 1.0
    bias: tuple[float, ...] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        # one float, or a tuple of floats (a list or an array given is normalised to it)
        object.__setattr__(self, "temperature", temperatures(self.temperature, len(self.bias)))
        object.__setattr__(self, "bias", tuple(float(b) for b in self.bias))
        if not all(np.isfinite(b) for b in self.bias):
            raise ValueError(f"biases must be finite, got {self.bias!r}")

    @property
    def method(self) -> str:
        """What ``model.json`` calls it: one temperature or one per class."""
        return METHOD_NAMES["vector" if isinstance(self.temperature, tuple) else "bcts"]

    def apply(self, scores: npt.ArrayLike) -> FloatArray:
        """Calibrated probabilities of linear scores (n, k)."""
        z = np.asarray(scores, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != len(self.bias):
            raise ValueError(f"scores must be (n, {len(self.bias)}), got {z.shape}")
        return calibrated_softmax(z, self.temperature, self.bias)

    def to_json(self) -> dict[str, Any]:
        """What ``model.json`` stores under ``calibration`` (read by the model itself)."""
        t = self.temperature
        return {
            "method": self.method,
            "temperature": list(t) if isinstance(t, tuple) else t,
            "bias": list(self.bias),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Calibration:
        return cls(doc["temperature"], tuple(doc["bias"]))


def _labels(labels: npt.ArrayLike, n: int, k: int) -> IntArray:
    y = np.asarray(labels)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be {n} integer class indices")
    if n and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels must be class indices in [0, {k})")
    return y.astype(np.int64)


def _probabilities(probabilities: npt.ArrayLike) -> FloatArray:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probabilities must be (n, k) with k >= 2, got {p.shape}")
    if p.shape[0] == 0:
        raise ValueError("no rows")
    return p


def negative_log_likelihood(probabilities: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Mean ``-log p(true class)`` (natural log) of (n, k) probabilities."""
    p = _probabilities(probabilities)
    y = _labels(labels, *p.shape)
    picked = p[np.arange(p.shape[0]), y]
    return float(-np.mean(np.log(np.maximum(picked, np.finfo(np.float64).tiny))))


def expected_calibration_error(
    probabilities: npt.ArrayLike, labels: npt.ArrayLike, bins: int = ECE_BINS
) -> float:
    """Top-label expected calibration error (Guo et al. 2017): the confidences (largest
    probability of each row) fall into ``bins`` equal-width bins ``(i/bins, (i+1)/bins]``
    (the first also takes 0); ECE is the sum over bins of ``|accuracy - mean confidence|``
    weighted by the bin's share of rows. The predicted class is the first largest column."""
    if bins < 1:
        raise ValueError("bins must be >= 1")
    p = _probabilities(probabilities)
    y = _labels(labels, *p.shape)
    confidence = p.max(axis=1)
    correct = (np.argmax(p, axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    gap = np.bincount(which, weights=correct - confidence, minlength=bins)
    return float(np.abs(gap).sum() / len(p))


def fit_bcts(scores: npt.ArrayLike, labels: npt.ArrayLike) -> Calibration:
    """Bias-corrected temperature scaling: :func:`fit_scaling` with one temperature."""
    return fit_scaling(scores, labels, method="bcts")


#: The range a fitted temperature is kept in, and the largest bias (see :func:`fit_scaling`).
MIN_TEMPERATURE, MAX_TEMPERATURE, MAX_BIAS = 0.05, 20.0, 10.0


def fit_scaling(
    scores: npt.ArrayLike, labels: npt.ArrayLike, method: Method = "vector"
) -> Calibration:
    """The temperature(s) and per-class biases minimising the mean NLL of ``softmax(scores /
    T + b)`` on (n, k) scores with true class indices ``labels`` (L-BFGS on ``log T`` and
    ``b`` with the exact gradient): one ``T`` with ``method="bcts"``, one per class with
    ``"vector"``. Biases are shifted to sum to zero (softmax ignores a common shift).

    ``T`` stays in [:data:`MIN_TEMPERATURE`, :data:`MAX_TEMPERATURE`] and each bias within
    :data:`MAX_BIAS`: on scores that separate the classes (a few reviews, a model that fits
    them all) the likelihood has no maximum and would push ``T`` to 0 and the biases apart
    without end; the bounds keep that fit finite and never bind on a usual one."""
    from scipy.optimize import minimize

    if method not in METHOD_NAMES:
        raise ValueError(f"method must be one of {sorted(METHOD_NAMES)}, got {method!r}")
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] == 0 or s.shape[1] < 2:
        raise ValueError(f"scores must be (n, k) with n >= 1 and k >= 2, got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    n, k = s.shape
    y = _labels(labels, n, k)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0
    m = k if method == "vector" else 1  # how many temperatures

    def objective(theta: FloatArray) -> tuple[float, FloatArray]:
        t = np.exp(theta[:m])
        z = s / t + theta[m:]
        z -= z.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(z).sum(axis=1))
        nll = float(np.mean(log_norm - z[np.arange(n), y]))
        g = (np.exp(z - log_norm[:, None]) - onehot) / n  # d NLL / d z
        d_log_t = g * (-s / t)  # d z / d log T = -s / T, column by column
        grad = np.empty(m + k)
        grad[:m] = d_log_t.sum(axis=0) if m == k else d_log_t.sum()
        grad[m:] = g.sum(axis=0)
        return nll, grad

    bounds = [(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE))] * m + [(-MAX_BIAS, MAX_BIAS)] * k
    res = minimize(
        objective,
        np.zeros(m + k),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 1000, "ftol": 1e-15, "gtol": 1e-10},
    )
    if not np.all(np.isfinite(res.x)):
        raise RuntimeError(f"calibration fit failed: {res.message}")
    t = np.exp(res.x[:m])
    bias = tuple(float(b) for b in res.x[m:] - res.x[m:].mean())
    return Calibration(tuple(float(x) for x in t) if m == k else float(t[0]), bias)


def stratified_folds(
    labels: npt.ArrayLike, folds: int, seed: int
) -> list[tuple[IntArray, IntArray]]:
    """``folds`` stratified, shuffled (seeded) ``(fit rows, held rows)`` pairs of ``labels``;
    each row is held once."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(labels)
    splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(y, y)
    return [(np.asarray(a, np.int64), np.asarray(b, np.int64)) for a, b in splits]


def cross_validated_log_loss(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    method: Method,
    folds: Sequence[tuple[IntArray, IntArray]],
) -> float:
    """The mean NLL of ``method`` on rows it was not fitted on: per ``(fit, held)`` pair of
    ``folds`` (:func:`stratified_folds`), the calibration fitted on the fit rows and judged on
    the held ones, weighted by their number."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    total, count = 0.0, 0
    for fit, held in folds:
        cal = fit_scaling(s[fit], y[fit], method)
        total += negative_log_likelihood(cal.apply(s[held]), y[held]) * len(held)
        count += len(held)
    if not count:
        raise ValueError("no held rows in folds")
    return total / count


@dataclass(frozen=True, slots=True)
class ScalingChoice:
    """A fitted calibration and, when it was chosen (``"auto"``), every method's
    cross-validated log loss that chose it (empty when the method was given, or when the
    rarest class has fewer than two rows to cross-validate on)."""

    calibration: Calibration
    log_loss: Mapping[Method, float]

    def to_json(self) -> dict[str, Any]:
        """``model.json``'s record of the choice (empty when nothing was chosen)."""
        if not self.log_loss:
            return {}
        return {
            "chosen_by": "the smaller cross-validated log loss on the fitting reviews",
            "cross_validated_log_loss": {
                METHOD_NAMES[m]: round(v, 6) for m, v in self.log_loss.items()
            },
        }


def fit_choice(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    choice: Choice,
    *,
    folds: int = CHOICE_FOLDS,
    seed: int = 0,
) -> ScalingChoice:
    """``choice`` fitted on every row. ``"auto"`` first compares the methods'
    :func:`cross_validated_log_loss` on ``folds`` stratified folds (fewer when the rarest
    class present has fewer rows; BCTS without any when it has one) and fits the one with
    the smaller loss, BCTS on a tie (fewer parameters)."""
    if choice not in CHOICES:
        raise ValueError(f"calibration must be one of {list(CHOICES)}, got {choice!r}")
    if choice != "auto":
        return ScalingChoice(fit_scaling(scores, labels, choice), {})
    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y)
    k = min(folds, int(counts[counts > 0].min(initial=len(y))))
    if k < 2:
        return ScalingChoice(fit_scaling(scores, labels, "bcts"), {})
    split = stratified_folds(y, k, seed)
    loss = {m: cross_validated_log_loss(scores, y, m, split) for m in METHODS}
    return ScalingChoice(fit_scaling(scores, labels, best_method(loss)), loss)


def best_method(losses: Mapping[Method, float]) -> Method:
    """The method of the smallest loss; on a tie the one of fewer parameters (BCTS)."""
    return min((m for m in METHODS if m in losses), key=lambda m: losses[m])
