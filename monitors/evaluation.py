"""Per-window accumulation and the window tests (drift, priors, accuracy, bias, and the
accuracy estimated without labels).

A :class:`WindowAccumulator` collects, for one tumbling window after the baseline, what the
tests need: per-feature histograms split by predicted class, the predicted probabilities for
the EM prior estimate (as counts on a grid of step ``1 / PROB_GRID`` over the simplex, so memory
and state stay bounded whatever the window holds; the rounding moves an estimate by far less
than its interval), the predicted-class counts and the confusion matrix of labelled reviews,
overall and per category. :func:`evaluate_window` runs every test on it.

The accuracy and macro-F1 estimated without labels (:mod:`monitors.performance`) come from the
same probability grid: plain CBPE (``unweighted``) and CBPE reweighted to the window's EM prior
estimate (``prior_weighted``, with the estimate's covariance in its interval); the predicted
class of a grid cell is its most probable class. The latter is tested against the baseline
accuracy (EstimatedAccuracyDrop); while the window shows data drift, which breaks the
label-shift assumption, the former is (as PriorShift is withheld then).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from monitors._stats import FloatArray, IntArray
from monitors.baseline import Baseline
from monitors.bias import FacetCounts, clarify_analysis
from monitors.drift import (
    AccuracyDrift,
    DistributionDrift,
    FeatureDrift,
    accuracy_drift,
    distribution_drift,
    feature_drift,
)
from monitors.features import BatchFeatures
from monitors.performance import (
    EstimatedDrop,
    PerformanceEstimate,
    estimate_performance,
    estimated_accuracy_drop,
)
from monitors.priors import PriorEstimate, PriorShift, bbse, em_priors, prior_shift

__all__ = [
    "PROB_GRID",
    "REPORT_ONLY",
    "WindowAccumulator",
    "WindowReport",
    "WindowTests",
    "evaluate_window",
    "grid_rows",
]

#: Features whose drift is reported but never alerted as DataDrift: a rating is the ground
#: truth, so its drift is label drift (LabelDrift), not data drift.
REPORT_ONLY = frozenset({"rating"})

#: Resolution of the probability grid of the EM estimate (steps per unit).
PROB_GRID = 50
_CELLS = (PROB_GRID + 1) ** 2


def _grid_codes(p: FloatArray) -> IntArray:
    """Cell of each (n, 3) probability row: rounded p_negative and p_neutral."""
    ij = np.clip(np.rint(p[:, :2] * PROB_GRID), 0, PROB_GRID).astype(np.int64)
    i, j = ij[:, 0], np.minimum(ij[:, 1], PROB_GRID - ij[:, 0])
    out: IntArray = i * (PROB_GRID + 1) + j
    return out


def grid_rows(codes: IntArray) -> FloatArray:
    """Probability rows of grid cells (the inverse of :func:`_grid_codes`)."""
    i, j = np.divmod(codes, PROB_GRID + 1)
    rows = np.stack([i, j, PROB_GRID - i - j], axis=1).astype(np.float64) / PROB_GRID
    return rows


class WindowAccumulator:
    """What the window tests need from one window's events (bounded, JSON-able)."""

    def __init__(self, baseline: Baseline, groups: int, start_us: int, end_us: int) -> None:
        self.start_us = start_us
        self.end_us = end_us
        self.first_event: int | None = None
        self.last_event: int | None = None
        self.n = 0
        self.hists: dict[str, IntArray] = {
            name: np.zeros((3, ref.bins), dtype=np.int64) for name, ref in baseline.features.items()
        }
        self.prob_cells = np.zeros((groups, _CELLS), dtype=np.int64)
        self.group_predicted = np.zeros((groups, 3), dtype=np.int64)
        self.group_confusion = np.zeros((groups, 3, 3), dtype=np.int64)

    @property
    def predicted(self) -> IntArray:
        out: IntArray = self.group_predicted.sum(axis=0)
        return out

    @property
    def confusion(self) -> IntArray:
        out: IntArray = self.group_confusion.sum(axis=0)
        return out

    def add(self, f: BatchFeatures, group: IntArray, baseline: Baseline) -> None:
        if not len(f):
            return
        self.n += len(f)
        lo, hi = int(f.t_us.min()), int(f.t_us.max())
        self.first_event = lo if self.first_event is None else min(self.first_event, lo)
        self.last_event = hi if self.last_event is None else max(self.last_event, hi)
        pred = f.predicted
        for name, ref in baseline.features.items():
            h = self.hists[name]
            if ref.kind == "numeric":
                x = f.numeric(name)
                ok = np.isfinite(x)
                np.add.at(h, (pred[ok], ref.bin_numeric(x[ok])), 1)
            else:
                np.add.at(h, (pred, ref.bin_categorical(f.categorical(name))), 1)
        np.add.at(self.prob_cells, (group, _grid_codes(f.probabilities)), 1)
        np.add.at(self.group_predicted, (group, pred), 1)
        lab = f.true >= 0
        if lab.any():
            np.add.at(self.group_confusion, (group[lab], pred[lab], f.true[lab]), 1)

    def merge(self, other: WindowAccumulator) -> None:
        """Fold ``other`` (a later window) into this one."""
        self.start_us = min(self.start_us, other.start_us)
        self.end_us = max(self.end_us, other.end_us)
        for attr in ("first_event",):
            a, b = self.first_event, other.first_event
            setattr(self, attr, b if a is None else (a if b is None else min(a, b)))
        a2, b2 = self.last_event, other.last_event
        self.last_event = b2 if a2 is None else (a2 if b2 is None else max(a2, b2))
        self.n += other.n
        for name, h in other.hists.items():
            self.hists[name] += h
        self.prob_cells += other.prob_cells
        self.group_predicted += other.group_predicted
        self.group_confusion += other.group_confusion

    def probabilities(self, exclude: int | None = None) -> tuple[FloatArray, FloatArray]:
        """Distinct (gridded) probability rows and how many reviews had each, over every
        group or every group but ``exclude``."""
        cells = self.prob_cells.sum(axis=0)
        if exclude is not None:
            cells = cells - self.prob_cells[exclude]
        codes = np.flatnonzero(cells)
        return grid_rows(codes), cells[codes].astype(np.float64)

    def state(self) -> dict[str, Any]:
        return {
            "start_us": self.start_us,
            "end_us": self.end_us,
            "first_event": self.first_event,
            "last_event": self.last_event,
            "n": self.n,
            "hists": {k: v.tolist() for k, v in self.hists.items()},
            "prob_cells": [
                [int(g), int(c), int(self.prob_cells[g, c])]
                for g, c in zip(*np.nonzero(self.prob_cells), strict=True)
            ],
            "group_predicted": self.group_predicted.tolist(),
            "group_confusion": self.group_confusion.tolist(),
        }

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], baseline: Baseline, groups: int
    ) -> WindowAccumulator:
        acc = cls(baseline, groups, int(state["start_us"]), int(state["end_us"]))
        acc.first_event = state["first_event"]
        acc.last_event = state["last_event"]
        acc.n = int(state["n"])
        for k, v in state["hists"].items():
            if k in acc.hists:
                acc.hists[k] = np.asarray(v, dtype=np.int64).reshape(acc.hists[k].shape)
        for g, code, count in state["prob_cells"]:
            acc.prob_cells[int(g), int(code)] = int(count)
        acc.group_predicted = np.asarray(state["group_predicted"], dtype=np.int64).reshape(
            groups, 3
        )
        acc.group_confusion = np.asarray(state["group_confusion"], dtype=np.int64).reshape(
            groups, 3, 3
        )
        return acc


@dataclass(frozen=True, slots=True)
class WindowTests:
    """Levels and floors of the window tests (the suite derives them from its config)."""

    alpha: float
    min_count: int
    min_psi: float
    min_share_change: float
    min_accuracy_drop: float
    confidence: float
    resolve_alpha: float = 0.05


@dataclass(frozen=True)
class WindowReport:
    """Every test result of one evaluated window. ``None``: not enough data for a verdict."""

    start_us: int
    end_us: int
    count: int
    labelled: int
    features: dict[str, FeatureDrift]
    features_clean: dict[str, bool]
    prediction: DistributionDrift | None
    prediction_clean: bool
    label: DistributionDrift | None
    label_clean: bool
    accuracy: AccuracyDrift | None
    accuracy_clean: bool
    priors: dict[str, PriorShift] = field(default_factory=dict)
    priors_clean: bool = True
    #: the PriorShift verdict: every estimator flags a broad-based shift and the window shows
    #: no data drift (which would break the label-shift assumption both estimators rest on)
    prior_shift: bool = False
    prior_withheld: str | None = None
    bias: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: accuracy and macro-F1 estimated without labels: ``unweighted`` (plain CBPE) and
    #: ``prior_weighted`` (reweighted to the EM prior estimate)
    performance: dict[str, PerformanceEstimate] = field(default_factory=dict)
    #: the EstimatedAccuracyDrop verdict (None: no baseline accuracy or no estimate)
    estimated_drop: EstimatedDrop | None = None
    estimated_clean: bool = True


def _bias(groups: Sequence[str], counts: IntArray, min_count: int) -> dict[str, Any] | None:
    """Clarify analysis of per-group class counts (positive = class index 2)."""
    facets = {
        g: FacetCounts(int(counts[i].sum()), int(counts[i, 2]))
        for i, g in enumerate(groups)
        if counts[i].sum() > 0
    }
    if len(facets) < 2 or sum(f.total for f in facets.values()) < min_count:
        return None
    return clarify_analysis(facets)


def _feature_tests(
    acc: WindowAccumulator, baseline: Baseline, tests: WindowTests
) -> tuple[dict[str, FeatureDrift], dict[str, bool]]:
    """Drift of every feature with enough data (DataDrift's level split over the features it
    alerts on), and whether each is clean enough to resolve an episode."""
    features: dict[str, FeatureDrift] = {}
    clean: dict[str, bool] = {}
    tested = [name for name in baseline.features if name not in REPORT_ONLY]
    per_feature = tests.alpha / max(1, len(tested))
    for name, ref in baseline.features.items():
        h = acc.hists[name]
        if h.sum() < tests.min_count:
            continue
        level = per_feature if name in tested else 0.0
        r = feature_drift(ref, h, alpha=level, min_psi=tests.min_psi)
        features[name] = r
        clean[name] = r.p_value >= tests.resolve_alpha or r.psi < tests.min_psi / 2
    return features, clean


def _mix_test(
    reference: npt.ArrayLike, counts: npt.ArrayLike, tests: WindowTests
) -> tuple[DistributionDrift, bool]:
    d = distribution_drift(reference, counts, alpha=tests.alpha, min_change=tests.min_share_change)
    return d, d.p_value >= tests.resolve_alpha or d.tvd < tests.min_share_change / 2


def _accuracy_test(
    baseline_confusion: npt.ArrayLike, conf: IntArray, tests: WindowTests
) -> tuple[AccuracyDrift, bool]:
    a = accuracy_drift(
        baseline_confusion, conf, alpha=tests.alpha, min_drop=tests.min_accuracy_drop
    )
    clean = (
        a.p_value >= tests.resolve_alpha
        or a.baseline_accuracy - a.accuracy < tests.min_accuracy_drop / 2
    )
    return a, clean


def _bias_reports(
    acc: WindowAccumulator, groups: Sequence[str], min_count: int
) -> dict[str, dict[str, Any]]:
    """Clarify analyses on predicted and on true classes (where there is enough of each)."""
    bias: dict[str, dict[str, Any]] = {}
    pred_bias = _bias(groups, acc.group_predicted, min_count)
    if pred_bias is not None:
        pred_bias["pre_training_bias_metrics"]["label"] = "predicted_sentiment"
        bias["predicted"] = pred_bias
    true_bias = _bias(groups, acc.group_confusion.sum(axis=1), min_count)
    if true_bias is not None:
        bias["true"] = true_bias
    return bias


def evaluate_window(
    acc: WindowAccumulator,
    baseline: Baseline,
    groups: Sequence[str],
    tests: WindowTests,
) -> WindowReport:
    """Run every window test on ``acc`` against ``baseline``."""
    conf = acc.confusion
    labelled = int(conf.sum())
    out = WindowReport(
        start_us=acc.start_us,
        end_us=acc.end_us,
        count=acc.n,
        labelled=labelled,
        features={},
        features_clean={},
        prediction=None,
        prediction_clean=True,
        label=None,
        label_clean=True,
        accuracy=None,
        accuracy_clean=True,
    )
    if labelled >= tests.min_count and baseline.true_counts is not None:
        label, label_clean = _mix_test(baseline.true_counts, conf.sum(axis=0), tests)
        out = replace(out, label=label, label_clean=label_clean)
    if labelled >= tests.min_count and baseline.confusion is not None:
        accuracy, accuracy_clean = _accuracy_test(baseline.confusion, conf, tests)
        out = replace(out, accuracy=accuracy, accuracy_clean=accuracy_clean)
    if acc.n < tests.min_count:
        return out
    features, clean = _feature_tests(acc, baseline, tests)
    prediction, prediction_clean = _mix_test(baseline.predicted_counts, acc.predicted, tests)
    priors, priors_clean = _priors(acc, baseline, groups, tests)
    shifted = bool(priors) and all(p.shifted for p in priors.values())
    drifted = sorted(name for name, r in features.items() if r.drifted)
    withheld = None
    if shifted and drifted:
        shifted = False
        withheld = f"data drift in {', '.join(drifted)} breaks the label-shift assumption"
    performance = _performance(acc, baseline, priors, tests)
    drop, drop_clean = _estimated_drop(performance, baseline, tests, drifted=bool(drifted))
    return replace(
        out,
        features=features,
        features_clean=clean,
        prediction=prediction,
        prediction_clean=prediction_clean,
        priors=priors,
        priors_clean=priors_clean,
        prior_shift=shifted,
        prior_withheld=withheld,
        bias=_bias_reports(acc, groups, tests.min_count),
        performance=performance,
        estimated_drop=drop,
        estimated_clean=drop_clean,
    )


def _performance(
    acc: WindowAccumulator, baseline: Baseline, priors: Mapping[str, PriorShift], tests: WindowTests
) -> dict[str, PerformanceEstimate]:
    """Plain and prior-weighted CBPE on the window's probability grid (the source priors are
    the baseline's mean probabilities, as for EM)."""
    src = np.asarray(baseline.mean_probabilities, dtype=np.float64)
    rows, weights = acc.probabilities()
    if not rows.size or np.any(src <= 0):
        return {}
    predicted = np.argmax(rows, axis=1)
    common: dict[str, Any] = {
        "weights": weights,
        "predicted": predicted,
        "source_priors": src,
        "confidence": tests.confidence,
    }
    out = {"unweighted": estimate_performance(rows, **common)}
    em = priors.get("em")
    if em is not None:
        # refused only when a grid cell keeps no mass on the classes EM leaves present
        with contextlib.suppress(ValueError):
            out["prior_weighted"] = estimate_performance(
                rows,
                target_priors=em.estimate.priors,
                target_covariance=em.estimate.covariance,
                **common,
            )
    return out


def _estimated_drop(
    performance: Mapping[str, PerformanceEstimate],
    baseline: Baseline,
    tests: WindowTests,
    *,
    drifted: bool,
) -> tuple[EstimatedDrop | None, bool]:
    """The prior-weighted estimate (the unweighted one while the window shows data drift,
    which breaks the label-shift assumption of the reweighting) against the baseline
    accuracy, and whether it is clean enough to resolve an episode."""
    est = performance.get("unweighted" if drifted else "prior_weighted")
    if est is None or baseline.confusion is None or baseline.accuracy is None:
        return None, True
    count = int(np.asarray(baseline.confusion).sum())
    if count <= 0:
        return None, True
    d = estimated_accuracy_drop(
        est, baseline.accuracy, count, alpha=tests.alpha, min_drop=tests.min_accuracy_drop
    )
    return d, d.p_value >= tests.resolve_alpha or d.drop < tests.min_accuracy_drop / 2


_Estimator = tuple[Callable[[int | None], PriorEstimate], FloatArray, FloatArray]


def _estimators(
    acc: WindowAccumulator, baseline: Baseline, tests: WindowTests
) -> dict[str, _Estimator]:
    """Per method: the window's estimate with one group left out (None: none), the baseline's
    priors and their covariance."""
    estimators: dict[str, _Estimator] = {}
    if baseline.confusion is not None:
        confusion = baseline.confusion
        try:
            ref = bbse(confusion, baseline.predicted_counts, confidence=tests.confidence)
        except ValueError:
            ref = None
        if ref is not None:

            def by_bbse(exclude: int | None) -> PriorEstimate:
                counts = acc.predicted
                if exclude is not None:
                    counts = counts - acc.group_predicted[exclude]
                return bbse(confusion, counts, confidence=tests.confidence)

            estimators["bbse"] = (by_bbse, ref.priors, ref.covariance)
    src = np.asarray(baseline.mean_probabilities, dtype=np.float64)
    if np.all(src > 0):

        def by_em(exclude: int | None) -> PriorEstimate:
            rows, weights = acc.probabilities(exclude)
            return em_priors(rows, src, weights=weights, confidence=tests.confidence)

        ref_cov = (np.diag(src) - np.outer(src, src)) / max(baseline.n, 1)
        estimators["em"] = (by_em, src, ref_cov)
    return estimators


def _priors(
    acc: WindowAccumulator, baseline: Baseline, groups: Sequence[str], tests: WindowTests
) -> tuple[dict[str, PriorShift], bool]:
    """BBSE and EM estimates against the baseline's, each at level alpha / 2 (the verdict
    needs both, so the pair keeps the level).

    A prior shift must be broad-based: it is flagged only if it still shows with any one
    product category left out. A surge in one category is that category's SentimentShift;
    it does not also read as a stream-wide prior shift, however large the category."""
    methods = 2 if baseline.confusion is not None else 1
    alpha = tests.alpha / methods
    estimators = _estimators(acc, baseline, tests)
    out: dict[str, PriorShift] = {}
    clean = True
    present = [g for g in range(len(groups)) if acc.group_predicted[g].sum() > 0]
    for method, (estimate, reference, ref_cov) in estimators.items():
        try:
            est = estimate(None)
        except ValueError:
            continue
        result = prior_shift(
            est, reference, ref_cov, alpha=alpha, min_change=tests.min_share_change
        )
        if result.shifted and len(present) > 1:
            for g in present:
                try:
                    loo = estimate(g)
                except ValueError:
                    continue
                if not prior_shift(
                    loo, reference, ref_cov, alpha=alpha, min_change=tests.min_share_change
                ).shifted:
                    result = replace(result, shifted=False, concentrated_in=groups[g])
                    break
        out[method] = result
        clean &= not prior_shift(
            est,
            reference,
            ref_cov,
            alpha=tests.resolve_alpha,
            min_change=tests.min_share_change / 2,
        ).shifted
    return out, clean
