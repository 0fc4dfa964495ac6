"""The reference the monitors compare every window against.

A :class:`Baseline` holds the class priors, the model's validation confusion matrix (when
known), its accuracy and macro-F1, the predicted-class mix overall and per product category,
the mean predicted probabilities, reference histograms of every monitored feature (split by
predicted class, so drift tests can allow for a change of class mix), and term counts and, per
category, the predicted negatives' summed contributions to the model's negative score
(:mod:`monitors.contributions`) for alert evidence. Build one from scored reviews
(:meth:`Baseline.from_reviews`, e.g. the first N events of a stream) or from plain arrays
(:meth:`Baseline.from_values`, e.g. a scored CSV); save it with :func:`dumps_baseline` /
:func:`baseline_to_dict` and load it with :func:`loads_baseline` / :func:`baseline_from_dict`.
File I/O stays with the caller.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from monitors._stats import FloatArray, IntArray, project_to_simplex
from monitors.contributions import ContributionSums
from monitors.features import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    BatchFeatures,
    concat,
    extract,
    features_from_state,
    features_state,
    text_features,
    true_classes,
)
from monitors.terms import content_words, tokenize
from stream.events import CHANNELS, ScoredReview

__all__ = [
    "Baseline",
    "BaselineBuilder",
    "FeatureReference",
    "baseline_from_dict",
    "baseline_to_dict",
    "classification_scores",
    "dumps_baseline",
    "loads_baseline",
]

_FORMAT = 1
#: Rating bins: 1 | 2 | 3 | 4 | 5.
_RATING_EDGES = (1.5, 2.5, 3.5, 4.5)


@dataclass(frozen=True)
class FeatureReference:
    """Reference histogram of one feature, one row per predicted class.

    Numeric features are binned at ``edges`` (inner edges, ``len(edges) + 1`` bins, values on
    an edge go right); categorical ones by ``values`` plus a last bin for anything unseen.
    """

    name: str
    kind: Literal["numeric", "categorical"]
    counts: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    edges: tuple[float, ...] = ()
    values: tuple[str, ...] = ()

    @property
    def bins(self) -> int:
        return len(self.edges) + 1 if self.kind == "numeric" else len(self.values) + 1

    @property
    def matrix(self) -> IntArray:
        """Counts as a (3, bins) array."""
        return np.asarray(self.counts, dtype=np.int64).reshape(3, self.bins)

    @property
    def total(self) -> int:
        return int(self.matrix.sum())

    def bin_numeric(self, x: FloatArray) -> IntArray:
        out: IntArray = np.searchsorted(np.asarray(self.edges), x, side="right").astype(np.int64)
        return out

    def bin_categorical(self, xs: Sequence[str]) -> IntArray:
        index = {v: i for i, v in enumerate(self.values)}
        unseen = len(self.values)
        return np.fromiter((index.get(x, unseen) for x in xs), dtype=np.int64, count=len(xs))


def classification_scores(confusion: npt.ArrayLike) -> tuple[float, float]:
    """Accuracy and macro-F1 of a confusion matrix of counts ``[predicted, true]``.

    Macro-F1 averages the per-class F1 over classes that occur (as truth or prediction), F1 of
    a class being ``2 tp / (2 tp + fp + fn)``."""
    c = np.asarray(confusion, dtype=np.float64)
    total = c.sum()
    if total <= 0:
        return float("nan"), float("nan")
    tp = np.diag(c)
    fp = c.sum(axis=1) - tp
    fn = c.sum(axis=0) - tp
    denom = 2 * tp + fp + fn
    present = denom > 0
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=present)
    return float(tp.sum() / total), float(f1[present].mean())


@dataclass(frozen=True)
class Baseline:
    """Reference statistics; see the module docstring. Class order is (negative, neutral,
    positive) everywhere. ``confusion[i][j]`` counts reviews predicted ``i`` with true class
    ``j`` (validation data, or the labelled part of the baseline events)."""

    n: int
    predicted_counts: tuple[int, int, int]
    category_predicted: Mapping[str, tuple[int, int, int]]
    mean_probabilities: tuple[float, float, float]
    priors: tuple[float, float, float]
    features: Mapping[str, FeatureReference]
    confusion: tuple[tuple[int, int, int], ...] | None = None
    true_counts: tuple[int, int, int] | None = None
    terms: Mapping[str, int] = field(default_factory=dict)
    negative_terms: Mapping[str, int] = field(default_factory=dict)
    #: per product category, its predicted negatives' contributions (empty: not explained)
    negative_contributions: Mapping[str, ContributionSums] = field(default_factory=dict)

    # -- derived ---------------------------------------------------------------------------

    @property
    def predicted_shares(self) -> FloatArray:
        c = np.asarray(self.predicted_counts, dtype=np.float64)
        out: FloatArray = c / max(c.sum(), 1.0)
        return out

    @property
    def negative_share(self) -> float:
        return float(self.predicted_shares[0])

    @property
    def confusion_matrix(self) -> IntArray | None:
        return None if self.confusion is None else np.asarray(self.confusion, dtype=np.int64)

    @property
    def accuracy(self) -> float | None:
        return None if self.confusion is None else classification_scores(self.confusion)[0]

    @property
    def macro_f1(self) -> float | None:
        return None if self.confusion is None else classification_scores(self.confusion)[1]

    # -- builders --------------------------------------------------------------------------

    @classmethod
    def from_reviews(
        cls,
        reviews: Sequence[ScoredReview],
        *,
        vocabulary: Collection[str] | None = None,
        confusion: npt.ArrayLike | None = None,
        bins: int = 20,
        max_terms: int = 5000,
    ) -> Baseline:
        """From scored reviews (ratings, where present, give the true labels).

        ``confusion`` is the model's validation confusion matrix ``[predicted, true]``;
        without it, the labelled reviews among ``reviews`` provide one (if any)."""
        if not reviews:
            raise ValueError("a baseline needs at least one review")
        return cls.from_features(
            extract(reviews, vocabulary), confusion=confusion, bins=bins, max_terms=max_terms
        )

    @classmethod
    def from_values(
        cls,
        *,
        texts: Sequence[str],
        categories: Sequence[str],
        predicted: npt.ArrayLike,
        probabilities: npt.ArrayLike,
        true: npt.ArrayLike | None = None,
        ratings: Sequence[int | None] | None = None,
        channels: Sequence[str] | None = None,
        vocabulary: Collection[str] | None = None,
        confusion: npt.ArrayLike | None = None,
        bins: int = 20,
        max_terms: int = 5000,
        contributions: Sequence[Mapping[str, float]] | None = None,
    ) -> Baseline:
        """From plain columns: ``predicted`` and ``true`` are sentiments (-1/0/1, ``true``
        -2 or NaN where unknown), ``probabilities`` an (n, 3) array in class order;
        ``contributions``: per text, its terms' contributions to the negative score (only the
        predicted negatives' are used)."""
        n = len(texts)
        pred = np.asarray(predicted, dtype=np.int64) + 1
        probs = np.asarray(probabilities, dtype=np.float64).reshape(n, 3)
        if len(categories) != n or pred.shape != (n,):
            raise ValueError("texts, categories, predicted and probabilities differ in length")
        rating = np.array(
            [np.nan if r is None else float(r) for r in (ratings or [None] * n)], dtype=np.float64
        )
        if true is not None:
            t = np.asarray(true, dtype=np.float64)
            y = np.where(np.isfinite(t) & (t >= -1), t + 1, -1).astype(np.int64)
        else:
            y = true_classes(rating)
        text = text_features(texts, vocabulary)
        feats = BatchFeatures(
            review_ids=[str(i) for i in range(n)],
            t_us=np.zeros(n, dtype=np.int64),
            category=list(categories),
            channel=list(channels) if channels is not None else ["web"] * n,
            predicted=pred,
            true=y,
            probabilities=probs,
            review_words=text.words,
            review_chars=text.chars,
            rating=rating,
            oov_rate=text.oov,
            confidence=probs.max(axis=1),
            tokens=[tokenize(t) for t in texts],
            texts=list(texts),
            contributions=list(contributions) if contributions is not None else [],
        )
        return cls.from_features(
            feats,
            confusion=confusion,
            bins=bins,
            max_terms=max_terms,
            monitor_channel=channels is not None,
        )

    @classmethod
    def from_features(
        cls,
        f: BatchFeatures,
        *,
        confusion: npt.ArrayLike | None = None,
        bins: int = 20,
        max_terms: int = 5000,
        monitor_channel: bool = True,
        terms: Mapping[str, int] | None = None,
        negative_terms: Mapping[str, int] | None = None,
        negative_contributions: Mapping[str, ContributionSums] | None = None,
    ) -> Baseline:
        """From the column view of the baseline events (see :mod:`monitors.features`).

        ``terms`` / ``negative_terms`` (all reviews / predicted negatives) replace the counts
        from ``f.tokens`` when given, ``negative_contributions`` the sums from
        ``f.contributions``."""
        n = len(f)
        if n == 0:
            raise ValueError("a baseline needs at least one review")
        if bins < 2:
            raise ValueError("bins must be >= 2")
        pred_counts = np.bincount(f.predicted, minlength=3)
        per_cat: dict[str, IntArray] = {}
        for cat in sorted(set(f.category)):
            sel = np.array([c == cat for c in f.category])
            per_cat[cat] = np.bincount(f.predicted[sel], minlength=3)
        labelled = f.true >= 0
        true_counts = np.bincount(f.true[labelled], minlength=3) if labelled.any() else None
        conf = _confusion(f, confusion)
        priors = _priors(pred_counts / n, true_counts, conf)
        features = _feature_references(f, bins, monitor_channel)
        all_terms, neg_terms = _term_counts(f, terms, negative_terms)
        return cls(
            n=n,
            predicted_counts=_triple(pred_counts),
            category_predicted={k: _triple(v) for k, v in per_cat.items()},
            mean_probabilities=_ftriple(f.probabilities.mean(axis=0)),
            priors=_ftriple(priors),
            features=features,
            confusion=None if conf is None else tuple(_triple(row) for row in conf),
            true_counts=None if true_counts is None else _triple(true_counts),
            terms=dict(all_terms.most_common(max_terms)),
            negative_terms=dict(neg_terms.most_common(max_terms)),
            negative_contributions=(
                dict(negative_contributions)
                if negative_contributions is not None
                else _category_contributions(f)
            ),
        )


def _category_contributions(
    f: BatchFeatures, sums: dict[str, ContributionSums] | None = None
) -> dict[str, ContributionSums]:
    """Per category, the summed contributions of the predicted negatives of ``f`` (added to
    ``sums`` when given); nothing when ``f`` was not explained."""
    out = {} if sums is None else sums
    if len(f.contributions) != len(f):
        return out
    for cat, p, row in zip(f.category, f.predicted.tolist(), f.contributions, strict=True):
        if p == 0:
            if cat not in out:
                out[cat] = ContributionSums()
            out[cat].update([row])
    return out


def _confusion(f: BatchFeatures, confusion: npt.ArrayLike | None) -> IntArray | None:
    """The given confusion matrix, else the labelled reviews' own (None without labels)."""
    if confusion is not None:
        given: IntArray = np.asarray(confusion, dtype=np.int64).reshape(3, 3)
        return given
    labelled = f.true >= 0
    if not labelled.any():
        return None
    conf = np.zeros((3, 3), dtype=np.int64)
    np.add.at(conf, (f.predicted[labelled], f.true[labelled]), 1)
    return conf


def _priors(shares: FloatArray, true_counts: IntArray | None, conf: IntArray | None) -> FloatArray:
    """Label shares, else the BBSE-style solve of the confusion matrix, else the predictions."""
    if true_counts is not None:
        out: FloatArray = true_counts / true_counts.sum()
        return out
    if conf is not None:
        m = conf / np.maximum(conf.sum(axis=0, keepdims=True), 1)
        return project_to_simplex(np.linalg.lstsq(m, shares, rcond=None)[0])
    return shares


def _feature_references(
    f: BatchFeatures, bins: int, monitor_channel: bool
) -> dict[str, FeatureReference]:
    """Reference histograms of every monitored feature the events carry."""
    features: dict[str, FeatureReference] = {}
    for name in NUMERIC_FEATURES:
        x = f.numeric(name)
        ok = np.isfinite(x)
        if not ok.any():
            continue
        edges: tuple[float, ...]
        if name == "rating":
            edges = _RATING_EDGES
        else:
            qs = np.quantile(x[ok], np.linspace(0, 1, bins + 1)[1:-1])
            edges = tuple(float(e) for e in np.unique(qs))
        ref = FeatureReference(name, "numeric", _zero_counts(len(edges) + 1), edges=edges)
        features[name] = _with_counts(ref, f.predicted[ok], ref.bin_numeric(x[ok]))
    for name in CATEGORICAL_FEATURES:
        if name == "channel" and not monitor_channel:
            continue
        xs = f.categorical(name)
        values = tuple(CHANNELS) if name == "channel" else tuple(sorted(set(xs)))
        ref = FeatureReference(name, "categorical", _zero_counts(len(values) + 1), values=values)
        features[name] = _with_counts(ref, f.predicted, ref.bin_categorical(xs))
    return features


def _term_counts(
    f: BatchFeatures,
    terms: Mapping[str, int] | None,
    negative_terms: Mapping[str, int] | None,
) -> tuple[Counter[str], Counter[str]]:
    """Term counts of all reviews and of predicted negatives (given, or from ``f.tokens``)."""
    all_terms: Counter[str] = Counter(terms or {})
    neg_terms: Counter[str] = Counter(negative_terms or {})
    if terms is None:
        for tok, p in zip(f.tokens, f.predicted.tolist(), strict=True):
            words = content_words(tok)
            all_terms.update(words)
            if p == 0:
                neg_terms.update(words)
    return all_terms, neg_terms


def _zero_counts(bins: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    z = (0,) * bins
    return (z, z, z)


def _with_counts(ref: FeatureReference, predicted: IntArray, binned: IntArray) -> FeatureReference:
    m = np.zeros((3, ref.bins), dtype=np.int64)
    np.add.at(m, (predicted, binned), 1)
    rows = tuple(tuple(int(v) for v in row) for row in m)
    return FeatureReference(ref.name, ref.kind, (rows[0], rows[1], rows[2]), ref.edges, ref.values)


def _triple(a: npt.ArrayLike) -> tuple[int, int, int]:
    v = [int(x) for x in np.asarray(a).ravel()]
    return (v[0], v[1], v[2])


def _ftriple(a: npt.ArrayLike) -> tuple[float, float, float]:
    v = [float(x) for x in np.asarray(a, dtype=np.float64).ravel()]
    return (v[0], v[1], v[2])


# -- serialisation ---------------------------------------------------------------------------


def baseline_to_dict(b: Baseline) -> dict[str, Any]:
    """A JSON-able dict of ``b`` (see :func:`baseline_from_dict`)."""
    return {
        "format": _FORMAT,
        "n": b.n,
        "predicted_counts": list(b.predicted_counts),
        "category_predicted": {k: list(v) for k, v in b.category_predicted.items()},
        "mean_probabilities": list(b.mean_probabilities),
        "priors": list(b.priors),
        "confusion": None if b.confusion is None else [list(r) for r in b.confusion],
        "true_counts": None if b.true_counts is None else list(b.true_counts),
        "features": {
            name: {
                "kind": ref.kind,
                "counts": [list(r) for r in ref.counts],
                "edges": list(ref.edges),
                "values": list(ref.values),
            }
            for name, ref in b.features.items()
        },
        "terms": dict(b.terms),
        "negative_terms": dict(b.negative_terms),
        "negative_contributions": {k: v.state() for k, v in b.negative_contributions.items()},
    }


def baseline_from_dict(d: Mapping[str, Any]) -> Baseline:
    """The inverse of :func:`baseline_to_dict`; raises ``ValueError`` on another format."""
    if d.get("format") != _FORMAT:
        raise ValueError(f"unsupported baseline format {d.get('format')!r}, expected {_FORMAT}")
    features: dict[str, FeatureReference] = {}
    for name, f in d["features"].items():
        rows = tuple(tuple(int(v) for v in r) for r in f["counts"])
        if len(rows) != 3:
            raise ValueError(f"feature {name}: counts need 3 rows")
        features[name] = FeatureReference(
            name=name,
            kind="numeric" if f["kind"] == "numeric" else "categorical",
            counts=(rows[0], rows[1], rows[2]),
            edges=tuple(float(e) for e in f["edges"]),
            values=tuple(str(v) for v in f["values"]),
        )
    conf = d.get("confusion")
    true_counts = d.get("true_counts")
    return Baseline(
        n=int(d["n"]),
        predicted_counts=_triple(d["predicted_counts"]),
        category_predicted={k: _triple(v) for k, v in d["category_predicted"].items()},
        mean_probabilities=_ftriple(d["mean_probabilities"]),
        priors=_ftriple(d["priors"]),
        features=features,
        confusion=None if conf is None else tuple(_triple(r) for r in conf),
        true_counts=None if true_counts is None else _triple(true_counts),
        terms={str(k): int(v) for k, v in d.get("terms", {}).items()},
        negative_terms={str(k): int(v) for k, v in d.get("negative_terms", {}).items()},
        negative_contributions={
            str(k): ContributionSums.from_state(v)
            for k, v in d.get("negative_contributions", {}).items()
        },
    )


def dumps_baseline(b: Baseline) -> str:
    """``b`` as a JSON string."""
    return json.dumps(baseline_to_dict(b), sort_keys=True)


def loads_baseline(text: str) -> Baseline:
    """A baseline from :func:`dumps_baseline`'s output."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise TypeError("a baseline is a JSON object")
    return baseline_from_dict(data)


class BaselineBuilder:
    """Learns a :class:`Baseline` from the first ``target`` events of a stream.

    Memory is bounded by ``target`` events' columns plus the term counts; the state is a
    JSON-able dict (:meth:`state`), so a restart resumes collecting where it stopped."""

    def __init__(
        self,
        target: int,
        *,
        confusion: npt.ArrayLike | None = None,
        bins: int = 20,
        max_terms: int = 5000,
    ) -> None:
        if target < 1:
            raise ValueError("target must be >= 1")
        self.target = target
        self._confusion = None if confusion is None else np.asarray(confusion, dtype=np.int64)
        self._bins = bins
        self._max_terms = max_terms
        self.reset()

    def reset(self) -> None:
        self._parts: list[BatchFeatures] = []
        self.count = 0
        self._terms: Counter[str] = Counter()
        self._negative_terms: Counter[str] = Counter()
        self._contributions: dict[str, ContributionSums] = {}

    @property
    def done(self) -> bool:
        return self.count >= self.target

    def add(self, f: BatchFeatures) -> BatchFeatures:
        """Take events of ``f`` until the target is reached; returns those not taken."""
        take = min(self.target - self.count, len(f))
        if take <= 0:
            return f
        head = f if take == len(f) else f.take(np.arange(len(f)) < take)
        for tok, p in zip(head.tokens, head.predicted.tolist(), strict=True):
            words = content_words(tok)
            self._terms.update(words)
            if p == 0:
                self._negative_terms.update(words)
        _category_contributions(head, self._contributions)
        self._parts.append(features_from_state(features_state(head)))
        self.count += take
        return f.take(np.arange(len(f)) >= take)

    def build(self) -> Baseline:
        if not self.count:
            raise ValueError("no events collected yet")
        return Baseline.from_features(
            concat(self._parts),
            confusion=self._confusion,
            bins=self._bins,
            max_terms=self._max_terms,
            terms=self._terms,
            negative_terms=self._negative_terms,
            negative_contributions=self._contributions,
        )

    def state(self) -> dict[str, Any]:
        merged = concat(self._parts) if self._parts else None
        return {
            "count": self.count,
            "columns": None if merged is None else features_state(merged),
            "terms": dict(self._terms),
            "negative_terms": dict(self._negative_terms),
            "negative_contributions": {k: v.state() for k, v in self._contributions.items()},
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.reset()
        self.count = int(state["count"])
        if state["columns"] is not None:
            self._parts = [features_from_state(state["columns"])]
        self._terms = Counter({str(k): int(v) for k, v in state["terms"].items()})
        self._negative_terms = Counter({str(k): int(v) for k, v in state["negative_terms"].items()})
        self._contributions = {
            str(k): ContributionSums.from_state(v)
            for k, v in state.get("negative_contributions", {}).items()
        }
