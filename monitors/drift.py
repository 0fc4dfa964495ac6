"""Drift statistics of one window against the baseline.

Every test reports an effect size (PSI, Jensen-Shannon distance, total variation distance,
accuracy drop) and a p-value from a test that accounts for both sample sizes (the baseline's and
the window's): Pearson chi-square on a contingency table for categorical variables, two-sample
Kolmogorov-Smirnov for numeric ones (scipy). A finding needs both: ``p < alpha`` (so the
false-alarm rate holds at any window size; a fixed PSI cut-off alarms on pure noise in small
windows and misses nothing in large ones only because everything is "significant" there) and an
effect of at least the configured floor (so a huge window does not alarm on a negligible
change).

Data drift is tested *within predicted class*: the window's histogram of a feature among the
reviews predicted negative is compared with the baseline's histogram among the reviews predicted
negative, and so on (chi-square statistics and degrees of freedom summed over the strata; KS
p-values Bonferroni-combined over the strata), and PSI / JS compare the window with the
baseline re-weighted to the window's predicted-class mix. A change of sentiment mix alone
(prior shift, a surge of negative reviews) therefore does not read as data drift of review
length or model confidence; a change of ``p(feature | class)`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitors._stats import (
    FloatArray,
    chi2_homogeneity,
    chi2_sf,
    fisher_greater,
    js_distance,
    ks_binned,
    psi,
)
from monitors.baseline import FeatureReference, classification_scores

__all__ = [
    "AccuracyDrift",
    "DistributionDrift",
    "FeatureDrift",
    "accuracy_drift",
    "distribution_drift",
    "feature_drift",
    "mix_adjusted_reference",
]


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """Drift of one feature in one window (see module doc)."""

    feature: str
    test: str
    statistic: float
    p_value: float
    psi: float
    js_distance: float
    count: int
    drifted: bool

    def to_json(self) -> dict[str, object]:
        return {
            "feature": self.feature,
            "test": self.test,
            "statistic": round(self.statistic, 6),
            "p_value": float(f"{self.p_value:.6g}"),
            "psi": round(self.psi, 6),
            "js_distance": round(self.js_distance, 6),
            "count": self.count,
        }


def mix_adjusted_reference(ref: FeatureReference, class_counts: npt.ArrayLike) -> FloatArray:
    """The baseline histogram of ``ref`` re-weighted to a window's predicted-class mix
    (shares summing to 1). A class the baseline never predicted uses the pooled histogram."""
    m = ref.matrix.astype(np.float64)
    pooled = m.sum(axis=0) / max(m.sum(), 1.0)
    rows = m.sum(axis=1, keepdims=True)
    cond = np.where(rows > 0, m / np.maximum(rows, 1.0), pooled)
    w = np.asarray(class_counts, dtype=np.float64)
    w = w / max(w.sum(), 1.0)
    out: FloatArray = w @ cond
    return out


def feature_drift(
    ref: FeatureReference,
    window: npt.ArrayLike,
    *,
    alpha: float,
    min_psi: float = 0.0,
) -> FeatureDrift:
    """Compare the window's (3, bins) counts of feature ``ref.name`` with the baseline."""
    win = np.asarray(window, dtype=np.float64).reshape(3, ref.bins)
    base = ref.matrix.astype(np.float64)
    n = int(win.sum())
    expected = mix_adjusted_reference(ref, win.sum(axis=1))
    current = win.sum(axis=0)
    if n == 0:
        return FeatureDrift(ref.name, "none", 0.0, 1.0, 0.0, 0.0, 0, False)
    effect = psi(expected * max(base.sum(), 1.0), current)
    jsd = js_distance(expected, current)
    strata = [k for k in range(3) if win[k].sum() > 0 and base[k].sum() > 0]
    if ref.kind == "categorical":
        chi = [chi2_homogeneity(base[k], win[k]) for k in strata]
        stat = float(sum(r.statistic for r in chi))
        dof = float(sum(r.dof for r in chi))
        p = chi2_sf(stat, dof) if dof > 0 else 1.0
        test = "chi2"
    else:
        ks = [ks_binned(base[k], win[k]) for k in strata]
        stat = max((r.statistic for r in ks), default=0.0)
        p = min(1.0, len(ks) * min((r.p_value for r in ks), default=1.0))
        test = "ks"
    return FeatureDrift(ref.name, test, stat, p, effect, jsd, n, p < alpha and effect >= min_psi)


@dataclass(frozen=True, slots=True)
class DistributionDrift:
    """A window's class mix (predicted or true labels) against the baseline's."""

    reference: FloatArray
    current: FloatArray
    statistic: float
    p_value: float
    tvd: float
    psi: float
    js_distance: float
    count: int
    drifted: bool

    def to_json(self) -> dict[str, object]:
        return {
            "baseline_shares": [round(float(v), 6) for v in self.reference],
            "current_shares": [round(float(v), 6) for v in self.current],
            "chi2": round(self.statistic, 6),
            "p_value": float(f"{self.p_value:.6g}"),
            "total_variation_distance": round(self.tvd, 6),
            "psi": round(self.psi, 6),
            "js_distance": round(self.js_distance, 6),
            "count": self.count,
        }


def distribution_drift(
    reference_counts: npt.ArrayLike,
    window_counts: npt.ArrayLike,
    *,
    alpha: float,
    min_change: float = 0.0,
) -> DistributionDrift:
    """Chi-square test of homogeneity of two class-count vectors, with the total variation
    distance as the effect size (a finding needs ``p < alpha`` and ``tvd >= min_change``)."""
    ref = np.asarray(reference_counts, dtype=np.float64)
    win = np.asarray(window_counts, dtype=np.float64)
    n = int(win.sum())
    if n == 0 or ref.sum() <= 0:
        z = np.zeros_like(ref)
        return DistributionDrift(z, z, 0.0, 1.0, 0.0, 0.0, 0.0, n, False)
    p_ref, p_win = ref / ref.sum(), win / win.sum()
    test = chi2_homogeneity(ref, win)
    tvd = 0.5 * float(np.abs(p_ref - p_win).sum())
    return DistributionDrift(
        p_ref,
        p_win,
        test.statistic,
        test.p_value,
        tvd,
        psi(ref, win),
        js_distance(ref, win),
        n,
        test.p_value < alpha and tvd >= min_change,
    )


@dataclass(frozen=True, slots=True)
class AccuracyDrift:
    """Rolling accuracy and macro-F1 on labelled reviews against the baseline's."""

    baseline_accuracy: float
    accuracy: float
    baseline_macro_f1: float
    macro_f1: float
    p_value: float
    count: int
    dropped: bool

    def to_json(self) -> dict[str, object]:
        return {
            "baseline_accuracy": round(self.baseline_accuracy, 6),
            "accuracy": round(self.accuracy, 6),
            "baseline_macro_f1": round(self.baseline_macro_f1, 6),
            "macro_f1": round(self.macro_f1, 6),
            "p_value": float(f"{self.p_value:.6g}"),
            "count": self.count,
        }


def accuracy_drift(
    reference_confusion: npt.ArrayLike,
    window_confusion: npt.ArrayLike,
    *,
    alpha: float,
    min_drop: float = 0.0,
) -> AccuracyDrift:
    """One-sided Fisher exact test that the window's accuracy is below the baseline's
    (confusion matrices of counts ``[predicted, true]``); a finding needs ``p < alpha`` and a
    drop of at least ``min_drop``."""
    ref = np.asarray(reference_confusion, dtype=np.int64)
    win = np.asarray(window_confusion, dtype=np.int64)
    n_ref, n_win = int(ref.sum()), int(win.sum())
    acc_ref, f1_ref = classification_scores(ref)
    acc_win, f1_win = classification_scores(win)
    if n_ref == 0 or n_win == 0:
        return AccuracyDrift(acc_ref, acc_win, f1_ref, f1_win, 1.0, n_win, False)
    right_ref, right_win = int(np.trace(ref)), int(np.trace(win))
    table = [[right_ref, n_ref - right_ref], [right_win, n_win - right_win]]
    p = fisher_greater(table)
    return AccuracyDrift(
        acc_ref, acc_win, f1_ref, f1_win, p, n_win, p < alpha and acc_ref - acc_win >= min_drop
    )
