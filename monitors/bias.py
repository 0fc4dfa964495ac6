"""SageMaker Clarify pre-training bias metrics for the product-category facet.

For each category ``d`` (the facet value) against all other reviews ``a``, with the label
binarised to "positive" (sentiment 1) versus anything else, exactly as Clarify's report
(``smclarify.bias.report``) feeds its metrics: it passes the *positive-label index* as the
label, so every distribution below is over the two values {not positive, positive}.

=====  ===========================================  =========================================
name   Clarify definition                           here (same values as Clarify)
=====  ===========================================  =========================================
CI     (n_a - n_d) / (n_a + n_d)                    same
DPL    q_a - q_d, q = positives / n                 same
KL     sum_y P_a(y) ln(P_a(y) / P_d(y))             same, natural log, over common support
JS     0.5 [KL(P_a, P) + KL(P_d, P)], P = mean      same, natural log (divergence, not distance)
LP     ||P_a - P_d||_2                              same
TVD    0.5 ||P_a - P_d||_1                          same
KS     max_y |P_a(y) - P_d(y)|                      same (a max over the pmf, not a CDF)
=====  ===========================================  =========================================

Quirks of Clarify's definitions, kept so that our numbers match a Clarify job (see
``monitors/CLARIFY.md`` for the discussion):

* KL, JS, LP, TVD and KS drop every label value that has zero share in *either* facet before
  computing (``pdfs_aligned_nonzero``), without renormalising. When a facet has no positive (or
  no non-positive) labels the metrics are computed on the one remaining value: KL can then be
  negative and is never infinite, LP/TVD/KS understate the gap. When no value is common,
  Clarify raises; we report ``value: None`` with an ``error``, as its report does.
* With binary labels TVD = KS = |DPL| and LP = sqrt(2) |DPL|: four of the seven numbers carry
  one piece of information.
* CI is positive when the facet is *under*-represented; with many categories one-vs-rest, CI
  is close to 1 for every category (a category is a small share of all reviews).
* DPL is positive when the facet has *fewer* positive labels than the rest.
* The description of KL reads "Kullback-Liebler" in Clarify; we reproduce the descriptions
  verbatim so a dashboard built on Clarify's output matches.
* An empty facet (or empty rest) is an error in Clarify; likewise here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitors._stats import FloatArray

__all__ = [
    "DESCRIPTIONS",
    "METRICS",
    "FacetCounts",
    "bias_report",
    "clarify_analysis",
    "facet_metrics",
]

#: Metric names in Clarify's report order (alphabetical).
METRICS: tuple[str, ...] = ("CI", "DPL", "JS", "KL", "KS", "LP", "TVD")
#: Clarify's descriptions (first docstring line of each metric), verbatim.
DESCRIPTIONS: Mapping[str, str] = {
    "CI": "Class Imbalance (CI)",
    "DPL": "Difference in Positive Proportions in Labels (DPL)",
    "JS": "Jensen-Shannon Divergence (JS)",
    "KL": "Kullback-Liebler Divergence (KL)",
    "KS": "Kolmogorov-Smirnov Distance (KS)",
    "LP": "L-p Norm (LP)",
    "TVD": "Total Variation Distance (TVD)",
}


@dataclass(frozen=True, slots=True)
class FacetCounts:
    """Reviews of one facet value and how many of them carry the positive label."""

    total: int
    positive: int

    def __post_init__(self) -> None:
        if self.total < 0 or not 0 <= self.positive <= self.total:
            raise ValueError("need 0 <= positive <= total")


def _aligned_nonzero(pa: FloatArray, pd: FloatArray) -> tuple[FloatArray, FloatArray]:
    keep = (pa > 0) & (pd > 0)
    return pa[keep], pd[keep]


def facet_metrics(d: FacetCounts, a: FacetCounts) -> dict[str, float | str]:
    """Clarify's seven pre-training metrics of facet ``d`` against the rest ``a``; a metric
    that Clarify cannot compute maps to an error message (``str``)."""
    out: dict[str, float | str] = {}
    if d.total == 0 or a.total == 0:
        msg = "Facet set is empty." if d.total == 0 else "Negative facet set is empty."
        return dict.fromkeys(METRICS, msg)
    out["CI"] = (a.total - d.total) / (a.total + d.total)
    qa, qd = a.positive / a.total, d.positive / d.total
    out["DPL"] = qa - qd
    pa_all = np.array([1 - qa, qa])
    pd_all = np.array([1 - qd, qd])
    pa, pd = _aligned_nonzero(pa_all, pd_all)
    if pa.size == 0:
        msg = "No instance of common facet found, dataset may be too small"
        for name in ("JS", "KL", "KS", "LP", "TVD"):
            out[name] = msg
        return out
    m = 0.5 * (pa + pd)
    out["KL"] = float(np.sum(pa * np.log(pa / pd)))
    out["JS"] = float(0.5 * (np.sum(pa * np.log(pa / m)) + np.sum(pd * np.log(pd / m))))
    out["LP"] = float(np.linalg.norm(pa - pd, 2))
    out["TVD"] = float(0.5 * np.linalg.norm(pa - pd, 1))
    out["KS"] = float(np.linalg.norm(pa - pd, np.inf))
    return out


def _metric_entry(name: str, value: float | str) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "description": DESCRIPTIONS[name]}
    if isinstance(value, str):
        entry["value"] = None
        entry["error"] = value
    elif math.isinf(value):
        entry["value"] = "Infinity" if value > 0 else "-Infinity"
    else:
        entry["value"] = value
    return entry


def clarify_analysis(
    facets: Mapping[str, FacetCounts],
    *,
    label: str = "sentiment",
    facet_name: str = "product_category",
    positive_label: str = "1",
) -> dict[str, Any]:
    """A dict shaped like Clarify's ``analysis.json`` pre-training section, one facet value
    per entry of ``facets`` (each against the sum of all the others)."""
    total = sum(f.total for f in facets.values())
    positive = sum(f.positive for f in facets.values())
    reports = []
    for value, d in facets.items():
        a = FacetCounts(total - d.total, positive - d.positive)
        metrics = facet_metrics(d, a)
        reports.append(
            {
                "value_or_threshold": value,
                "metrics": [_metric_entry(name, metrics[name]) for name in METRICS],
            }
        )
    return {
        "version": "1.0",
        "pre_training_bias_metrics": {
            "label": label,
            "label_value_or_threshold": positive_label,
            "facets": {facet_name: reports},
        },
    }


def _same_value(value: str, positive: str) -> bool:
    a, b = value.strip(), positive.strip()
    if a == b:
        return True
    try:
        return math.isclose(float(a), float(b))
    except ValueError:
        return False


def bias_report(
    facet_values: Sequence[str],
    labels: Sequence[str],
    *,
    facet: str,
    label: str,
    positive: str,
) -> dict[str, Any]:
    """Clarify's pre-training bias metrics of each facet value against all other rows, as
    ``analysis.json``'s ``pre_training_bias_metrics`` section. A label counts as positive when
    it equals ``positive`` (as text, or as a number: ``1`` matches ``1.0``); rows with an
    empty facet value or label are left out. Facet values are reported in sorted order."""
    if len(facet_values) != len(labels):
        raise ValueError("facet values and labels differ in length")
    totals: dict[str, int] = {}
    positives: dict[str, int] = {}
    for value, y in zip(facet_values, labels, strict=True):
        value, y = value.strip(), y.strip()
        if not value or not y:
            continue
        totals[value] = totals.get(value, 0) + 1
        positives[value] = positives.get(value, 0) + int(_same_value(y, positive))
    if not totals:
        raise ValueError(f"no row has both a {facet} value and a {label}")
    facets = {v: FacetCounts(totals[v], positives[v]) for v in sorted(totals)}
    return clarify_analysis(facets, label=label, facet_name=facet, positive_label=positive)
