"""Pure, synchronous monitors of the scored review stream (no I/O, no clock, no asyncio).

The pipeline core calls :class:`MonitorSuite` (``observe`` / ``readings`` / ``state`` /
``from_state`` / ``reset``); the pieces below are usable on their own, on plain arrays.
"""

from monitors.baseline import (
    Baseline,
    BaselineBuilder,
    FeatureReference,
    baseline_from_dict,
    baseline_to_dict,
    dumps_baseline,
    loads_baseline,
)
from monitors.bias import FacetCounts, clarify_analysis, facet_metrics
from monitors.drift import accuracy_drift, distribution_drift, feature_drift
from monitors.priors import PriorEstimate, PriorShift, bbse, em_priors, prior_shift
from monitors.readings import Reading
from monitors.shift import BernoulliCusum, SentimentShiftMonitor, cusum_threshold
from monitors.suite import MonitorConfig, MonitorSuite
from monitors.terms import distinctive_terms
from monitors.windows import EventTimeWindows

__all__ = [
    "Baseline",
    "BaselineBuilder",
    "BernoulliCusum",
    "EventTimeWindows",
    "FacetCounts",
    "FeatureReference",
    "MonitorConfig",
    "MonitorSuite",
    "PriorEstimate",
    "PriorShift",
    "Reading",
    "SentimentShiftMonitor",
    "accuracy_drift",
    "baseline_from_dict",
    "baseline_to_dict",
    "bbse",
    "clarify_analysis",
    "cusum_threshold",
    "distinctive_terms",
    "distribution_drift",
    "dumps_baseline",
    "em_priors",
    "facet_metrics",
    "feature_drift",
    "loads_baseline",
    "prior_shift",
]
