"""Pure, synchronous monitors of the scored review stream (no I/O, no clock, no asyncio).

The pipeline core calls :class:`MonitorSuite` (``observe`` / ``readings`` / ``state`` /
``from_state`` / ``reset``); the pieces below are usable on their own, on plain arrays.

The names are imported on first use, so importing one light module of the package (say
:mod:`monitors.readings`) does not load scipy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitors.baseline import (
        Baseline,
        BaselineBuilder,
        FeatureReference,
        baseline_from_dict,
        baseline_to_dict,
        dumps_baseline,
        loads_baseline,
    )
    from monitors.bias import FacetCounts, bias_report, clarify_analysis, facet_metrics
    from monitors.config import MonitorConfig
    from monitors.contributions import ContributionSums, Explainer, contribution_growth
    from monitors.drift import accuracy_drift, distribution_drift, feature_drift
    from monitors.performance import (
        PerformanceEstimate,
        estimate_performance,
        estimated_accuracy_drop,
    )
    from monitors.priors import (
        PriorEstimate,
        PriorShift,
        bbse,
        em_priors,
        naive_priors,
        prior_estimates,
        prior_shift,
    )
    from monitors.readings import Reading
    from monitors.shift import (
        BernoulliCusum,
        BernoulliMixtureSR,
        SentimentShiftMonitor,
        cusum_threshold,
    )
    from monitors.suite import MonitorSuite
    from monitors.terms import distinctive_terms
    from monitors.windows import EventTimeWindows

__all__ = [
    "Baseline",
    "BaselineBuilder",
    "BernoulliCusum",
    "BernoulliMixtureSR",
    "ContributionSums",
    "EventTimeWindows",
    "Explainer",
    "FacetCounts",
    "FeatureReference",
    "MonitorConfig",
    "MonitorSuite",
    "PerformanceEstimate",
    "PriorEstimate",
    "PriorShift",
    "Reading",
    "SentimentShiftMonitor",
    "accuracy_drift",
    "baseline_from_dict",
    "baseline_to_dict",
    "bbse",
    "bias_report",
    "clarify_analysis",
    "contribution_growth",
    "cusum_threshold",
    "distinctive_terms",
    "distribution_drift",
    "dumps_baseline",
    "em_priors",
    "estimate_performance",
    "estimated_accuracy_drop",
    "facet_metrics",
    "feature_drift",
    "loads_baseline",
    "naive_priors",
    "prior_estimates",
    "prior_shift",
]

_HOME = {
    **dict.fromkeys(
        (
            "Baseline",
            "BaselineBuilder",
            "FeatureReference",
            "baseline_from_dict",
            "baseline_to_dict",
            "dumps_baseline",
            "loads_baseline",
        ),
        "baseline",
    ),
    **dict.fromkeys(("FacetCounts", "bias_report", "clarify_analysis", "facet_metrics"), "bias"),
    "MonitorConfig": "config",
    **dict.fromkeys(("ContributionSums", "Explainer", "contribution_growth"), "contributions"),
    **dict.fromkeys(("accuracy_drift", "distribution_drift", "feature_drift"), "drift"),
    **dict.fromkeys(
        ("PerformanceEstimate", "estimate_performance", "estimated_accuracy_drop"), "performance"
    ),
    **dict.fromkeys(
        (
            "PriorEstimate",
            "PriorShift",
            "bbse",
            "em_priors",
            "naive_priors",
            "prior_estimates",
            "prior_shift",
        ),
        "priors",
    ),
    "Reading": "readings",
    **dict.fromkeys(
        ("BernoulliCusum", "BernoulliMixtureSR", "SentimentShiftMonitor", "cusum_threshold"),
        "shift",
    ),
    "MonitorSuite": "suite",
    "distinctive_terms": "terms",
    "EventTimeWindows": "windows",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'monitors' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"monitors.{home}"), name)
    globals()[name] = value
    return value
