"""Exact explanations of the linear sentiment model (numpy only, like ``model.py``).

The model's scores are linear: ``z_k(x) = intercept_k + sum_j coef[k, j] * x_j`` with ``x``
the TF-IDF features of a text and ``k`` the class (negative, neutral, positive). For a linear
model the interventional SHAP value of feature ``j`` against a background distribution ``B``
is exact and closed-form (Lundberg and Lee 2017; ``shap.LinearExplainer`` with an independent
masker)::

    phi_kj(x) = coef[k, j] * (x_j - E_B[x_j])        base_k = intercept_k + coef_k . E_B[x]
    z_k(x) = base_k + sum_j phi_kj(x)                 (additivity, exact)

What this module returns, per text and class (:func:`explain`, :func:`contributions`):
**the background is the empty review** (every feature 0, the review that says nothing), so
``phi_kj = coef[k, j] * x_j`` -- coefficient times TF-IDF value -- and ``base_k`` is the
intercept. The explanation is then sparse (only the terms of the text contribute) and the same
whatever data the model later sees. :func:`shap_values` also takes any other background mean
(e.g. of the training reviews) for the dense textbook values. Contributions explain the
linear scores (logits); the probabilities are their softmax, so a positive contribution to
class ``k`` raises ``p_k`` against the classes it contributes less to.

Global importance (:func:`global_importance`) over a reference set of texts: per term and
class the mean absolute contribution ``mean_i |phi_kj(x_i)| = |coef[k, j]| * mean_i x_ij``
(equal because TF-IDF values are >= 0) and the signed mean ``coef[k, j] * mean_i x_ij``.

Loaded from beside ``inference.py`` inside the SageMaker archive; it imports nothing of the
project at run time (the model is passed in).

Public API::

    term_names(model) -> tuple[str, ...]                  # feature names, column order
    contributions(model, texts) -> (SparseRows, ndarray (nnz, 3))    # phi at the non-zeros
    explain(model, texts, top_k=None) -> list[Explanation]
    negative_contributions(model, texts) -> list[dict[str, float]]   # term -> phi_negative
    shap_values(model, texts, background_mean=None) -> ndarray (n, n_features, 3)
    background_mean(model, texts) -> ndarray (n_features,)
    global_importance(model, texts, top=None) -> list[TermImportance]
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .model import SentimentModel, SparseRows

__all__ = [
    "Explanation",
    "TermContribution",
    "TermImportance",
    "background_mean",
    "contributions",
    "explain",
    "global_importance",
    "negative_contributions",
    "shap_values",
    "term_names",
]

FloatArray = npt.NDArray[np.float64]
#: Class names in column order (the model's ``LABELS``; repeated here so that this module
#: needs nothing but numpy at run time).
_LABELS = ("negative", "neutral", "positive")


@dataclass(frozen=True, slots=True)
class TermContribution:
    """One term of one text: its TF-IDF ``value`` and its contribution to each class score
    (``coef[k, j] * value``), class order (negative, neutral, positive)."""

    term: str
    value: float
    contributions: tuple[float, float, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "term": self.term,
            "value": self.value,
            **dict(zip(_LABELS, self.contributions, strict=True)),
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """The exact decomposition of one text's class scores: ``logits = base + sum of every
    term's contributions``; ``terms`` holds the ``top_k`` largest by absolute contribution to
    the predicted class (ties: by term) and ``remainder`` the sum of the others' (zero when
    all are listed), so ``logits == base + sum(terms) + remainder`` up to rounding."""

    label: int
    base: tuple[float, float, float]
    logits: tuple[float, float, float]
    terms: tuple[TermContribution, ...]
    remainder: tuple[float, float, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "predicted": _LABELS[self.label + 1],
            "base": dict(zip(_LABELS, self.base, strict=True)),
            "logits": dict(zip(_LABELS, self.logits, strict=True)),
            "terms": [t.to_json() for t in self.terms],
            "remainder": dict(zip(_LABELS, self.remainder, strict=True)),
        }


@dataclass(frozen=True, slots=True)
class TermImportance:
    """A row of the global importance table (see module doc): the share of reference texts
    that hold the term, its mean TF-IDF value, and per class the mean absolute and the mean
    signed contribution."""

    term: str
    document_frequency: float
    mean_value: float
    mean_abs: tuple[float, float, float]
    mean: tuple[float, float, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "term": self.term,
            "document_frequency": self.document_frequency,
            "mean_value": self.mean_value,
            "mean_abs": dict(zip(_LABELS, self.mean_abs, strict=True)),
            "mean": dict(zip(_LABELS, self.mean, strict=True)),
        }


def _triple(values: Any) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return (a, b, c)


#: per model, its feature names as an object array (built once; fancy indexing is fast)
_NAMES: weakref.WeakKeyDictionary[SentimentModel, npt.NDArray[np.object_]] = (
    weakref.WeakKeyDictionary()
)


def _name_array(model: SentimentModel) -> npt.NDArray[np.object_]:
    names = _NAMES.get(model)
    if names is None:
        names = np.array([t for b in model.blocks for t in b.terms], dtype=object)
        _NAMES[model] = names
    return names


def term_names(model: SentimentModel) -> tuple[str, ...]:
    """Every feature's term, in column order (blocks concatenated)."""
    return tuple(_name_array(model).tolist())


def contributions(model: SentimentModel, texts: Sequence[str]) -> tuple[SparseRows, FloatArray]:
    """The features of ``texts`` (CSR) and, at each non-zero, its contribution to each class
    score: ``phi[i] = coef[:, indices[i]] * values[i]``, shape (nnz, 3)."""
    x = model.transform(texts)
    phi: FloatArray = model.coef.T[x.indices] * x.values[:, None]
    return x, phi


def explain(
    model: SentimentModel, texts: Sequence[str], top_k: int | None = None
) -> list[Explanation]:
    """Per text, its :class:`Explanation` with the ``top_k`` terms (None: all)."""
    if top_k is not None and top_k < 0:
        raise ValueError("top_k must be >= 0")
    x, phi = contributions(model, texts)
    names = _name_array(model)
    base = _triple(model.intercept)
    out = []
    for i in range(len(texts)):
        lo, hi = int(x.indptr[i]), int(x.indptr[i + 1])
        p = phi[lo:hi]
        logits = model.intercept + p.sum(axis=0)
        k = int(np.argmax(logits))
        cols = x.indices[lo:hi]
        order = sorted(range(hi - lo), key=lambda j: (-abs(float(p[j, k])), names[cols[j]]))
        keep = order if top_k is None else order[:top_k]
        rest = p[order[len(keep) :]].sum(axis=0) if len(keep) < len(order) else np.zeros(3)
        out.append(
            Explanation(
                label=k - 1,
                base=base,
                logits=_triple(logits),
                terms=tuple(
                    TermContribution(names[cols[j]], float(x.values[lo + j]), _triple(p[j]))
                    for j in keep
                ),
                remainder=_triple(rest),
            )
        )
    return out


def negative_contributions(model: SentimentModel, texts: Sequence[str]) -> list[dict[str, float]]:
    """Per text, term -> its contribution to the negative class score (every term of the
    text the model knows; see module doc). What the monitors aggregate as alert evidence."""
    x = model.transform(texts)
    phi = model.coef[0, x.indices] * x.values
    terms = _name_array(model)[x.indices].tolist()
    values = phi.tolist()
    bounds = x.indptr.tolist()
    return [
        dict(zip(terms[lo:hi], values[lo:hi], strict=True)) for lo, hi in itertools.pairwise(bounds)
    ]


def background_mean(model: SentimentModel, texts: Sequence[str]) -> FloatArray:
    """Mean feature vector of ``texts`` (a background for :func:`shap_values`)."""
    if not texts:
        raise ValueError("a background needs at least one text")
    x = model.transform(texts)
    out: FloatArray = np.bincount(x.indices, weights=x.values, minlength=x.shape[1]) / len(texts)
    return out


def shap_values(
    model: SentimentModel, texts: Sequence[str], background_mean: FloatArray | None = None
) -> FloatArray:
    """Dense interventional SHAP values, shape (n, n_features, 3) (``shap``'s layout for a
    multi-class linear model): ``coef[k, j] * (x_j - background_mean_j)``; the default
    background is the empty review (``background_mean`` 0), as :func:`explain` uses."""
    x = model.transform(texts).toarray()
    if background_mean is not None:
        mu = np.asarray(background_mean, dtype=np.float64)
        if mu.shape != (model.n_features,):
            raise ValueError(f"background_mean must have shape ({model.n_features},)")
        x = x - mu
    out: FloatArray = x[:, :, None] * model.coef.T[None, :, :]
    return out


def global_importance(
    model: SentimentModel, texts: Sequence[str], top: int | None = None
) -> list[TermImportance]:
    """The global importance table over ``texts`` (see module doc): terms held by at least
    one text, ordered by the largest of their per-class mean absolute contributions
    (descending; ties by term), the first ``top`` (None: all)."""
    if not texts:
        raise ValueError("global importance needs at least one text")
    x = model.transform(texts)
    n = len(texts)
    mean_value = np.bincount(x.indices, weights=x.values, minlength=x.shape[1]) / n
    df = np.bincount(x.indices, minlength=x.shape[1]) / n
    seen = np.flatnonzero(df > 0)
    mean = model.coef[:, seen].T * mean_value[seen, None]
    mean_abs = np.abs(mean)
    names = _name_array(model)
    strength = mean_abs.max(axis=1)
    order = sorted(range(seen.size), key=lambda i: (-float(strength[i]), names[seen[i]]))
    if top is not None:
        order = order[:top]
    return [
        TermImportance(
            term=names[seen[i]],
            document_frequency=float(df[seen[i]]),
            mean_value=float(mean_value[seen[i]]),
            mean_abs=_triple(mean_abs[i]),
            mean=_triple(mean[i]),
        )
        for i in order
    ]
