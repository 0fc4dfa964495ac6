"""Prometheus readings without Prometheus: one table row per metric.

:class:`Reading` is one sample (the app's collector turns readings into metric families).
:data:`METRICS` declares every metric of the suite as data: its name, help text, kind, label
names and the function that reads its samples from the suite's state
(:class:`~monitors.parts.SuiteParts`); :func:`collect` evaluates the table. A new metric is one
row here (and a line in ``monitors/README.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from stream.events import LABELS

if TYPE_CHECKING:
    from monitors.parts import SuiteParts

__all__ = ["METRICS", "Metric", "Reading", "collect"]

_ALL = "all"
_CLASSES = tuple(LABELS.values())

Kind = Literal["gauge", "counter"]
#: label values (in the order of :attr:`Metric.labels`) and the value of one sample
Sample = tuple[tuple[str, ...], float]


@dataclass(frozen=True, slots=True)
class Reading:
    """One Prometheus sample: ``sentiment_`` names, base units, ratios in [0, 1]."""

    name: str
    documentation: str
    kind: Kind
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric family: where its samples come from."""

    name: str
    documentation: str
    kind: Kind
    labels: tuple[str, ...]
    samples: Callable[[SuiteParts], Iterator[Sample]]


def collect(metrics: Sequence[Metric], parts: SuiteParts) -> list[Reading]:
    """Every sample of ``metrics``, metric by metric."""
    return [
        Reading(m.name, m.documentation, m.kind, dict(zip(m.labels, values, strict=True)), value)
        for m in metrics
        for values, value in m.samples(parts)
    ]


def _one(get: Callable[[SuiteParts], float | None]) -> Callable[[SuiteParts], Iterator[Sample]]:
    """Samples of an unlabelled metric (none while ``get`` answers None)."""

    def samples(p: SuiteParts) -> Iterator[Sample]:
        value = get(p)
        if value is not None:
            yield (), float(value)

    return samples


def _window_label(d: timedelta) -> str:
    s = int(d.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if s % size == 0 and s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


# -- sliding windows -------------------------------------------------------------------------


def _sliding_rows(p: SuiteParts) -> Iterator[tuple[str, str, list[int]]]:
    """(window label, category, class counts) of every sliding window and group."""
    w = p.windows
    for length, d in zip(w.sliding_us, p.config.sliding_windows, strict=True):
        pred = w.sliding(length).predicted
        yield _window_label(d), _ALL, pred.sum(axis=0).tolist()
        for i, g in enumerate(p.groups):
            yield _window_label(d), g, pred[i].tolist()


def _window_reviews(p: SuiteParts) -> Iterator[Sample]:
    for window, cat, row in _sliding_rows(p):
        yield (cat, window), float(sum(row))


def _window_shares(p: SuiteParts) -> Iterator[Sample]:
    for window, cat, row in _sliding_rows(p):
        n = sum(row)
        for k, label in enumerate(_CLASSES):
            if n:
                yield (cat, window, label), row[k] / n


# -- SentimentShift detectors ----------------------------------------------------------------


def _shift_samples(p: SuiteParts, what: str) -> Iterator[Sample]:
    if p.shift is None:
        return
    refs = p.shift.reference_shares()
    for name, det in p.shift.detectors.items():
        if what == "statistic":
            yield (name,), det.statistic
        elif what == "firing":
            yield (name,), 1.0 if det.firing else 0.0
        else:
            ref = det.p0 if name == _ALL else float(refs[p.groups.index(name)])
            yield (name,), det.p0 if det.firing else ref


# -- the last evaluated window ---------------------------------------------------------------


def _baseline_priors(p: SuiteParts) -> Iterator[Sample]:
    if p.baseline is not None:
        for k, label in enumerate(_CLASSES):
            yield (label,), float(p.baseline.priors[k])


def _features(p: SuiteParts, attr: str) -> Iterator[Sample]:
    r = p.tester.last_report
    if r is not None:
        for name, f in r.features.items():
            yield (name,), float(getattr(f, attr))


def _class_mixes(p: SuiteParts) -> Iterator[tuple[str, Sequence[float], float, float]]:
    r = p.tester.last_report
    if r is None:
        return
    for source, d in (("predicted", r.prediction), ("true", r.label)):
        if d is not None:
            yield source, [float(v) for v in d.current], d.tvd, d.p_value


def _class_shares(p: SuiteParts) -> Iterator[Sample]:
    for source, current, _tvd, _p in _class_mixes(p):
        for k, label in enumerate(_CLASSES):
            yield (source, label), current[k]


def _prior_estimates(p: SuiteParts, attr: str) -> Iterator[Sample]:
    r = p.tester.last_report
    if r is not None:
        for method, ps in r.priors.items():
            values = getattr(ps.estimate, attr)
            for k, label in enumerate(_CLASSES):
                yield (method, label), float(values[k])


def _prior_shifts(p: SuiteParts) -> Iterator[Sample]:
    r = p.tester.last_report
    if r is not None:
        for method, ps in r.priors.items():
            yield (method,), 1.0 if ps.shifted else 0.0


def _performance(p: SuiteParts, attr: str) -> Iterator[Sample]:
    r = p.tester.last_report
    if r is not None:
        for method, e in r.performance.items():
            yield (method,), float(getattr(e, attr))


def _bias_metrics(p: SuiteParts) -> Iterator[Sample]:
    r = p.tester.last_report
    if r is None:
        return
    for source, analysis in r.bias.items():
        facets = analysis["pre_training_bias_metrics"]["facets"]["product_category"]
        for facet in facets:
            for m in facet["metrics"]:
                if isinstance(m["value"], float | int):
                    yield (m["name"], facet["value_or_threshold"], source), float(m["value"])


def _episodes(p: SuiteParts) -> Iterator[Sample]:
    for (name, cat), n in sorted(p.book.open_episodes().items()):
        yield (name, cat), float(n)


_CAT = ("product_category",)

METRICS: tuple[Metric, ...] = (
    Metric("sentiment_monitor_events_total", "Scored reviews the monitors accepted.",
           "counter", (), _one(lambda p: p.counters.events)),
    Metric("sentiment_monitor_late_events_total",
           "Reviews dropped by the monitors as later than the allowed lateness.",
           "counter", (), _one(lambda p: p.counters.late)),
    Metric("sentiment_monitor_future_events_total",
           "Reviews dropped by the monitors as further ahead of processing time than "
           "max_event_ahead (they never move the watermark).",
           "counter", (), _one(lambda p: p.counters.future)),
    Metric("sentiment_monitor_out_of_order_events_total",
           "Reviews older than one already seen in their partition (kept).",
           "counter", (), _one(lambda p: p.counters.out_of_order)),
    Metric("sentiment_monitor_duplicate_events_total",
           "Reviews skipped by the monitors as already seen: at or below the highest offset "
           "of their source partition observed so far (a replay after a restart).",
           "counter", (), _one(lambda p: p.counters.duplicates)),
    Metric("sentiment_baseline_ready", "1 once the monitors have a baseline, else 0.",
           "gauge", (), _one(lambda p: 0.0 if p.baseline is None else 1.0)),
    Metric("sentiment_baseline_reviews",
           "Reviews behind the baseline (collected so far while learning it).", "gauge", (),
           _one(lambda p: p.builder.count if p.baseline is None else p.baseline.n)),
    Metric("sentiment_monitor_watermark_timestamp_seconds",
           "Event-time watermark of the monitor windows.", "gauge", (),
           _one(lambda p: None if p.windows.clock is None else p.windows.clock / 1e6)),
    Metric("sentiment_monitor_partitions",
           "Source partitions the watermark follows (idle ones included).", "gauge", (),
           _one(lambda p: len(p.windows.partitions) if p.windows.partitions else None)),
    Metric("sentiment_window_reviews", "Reviews in the sliding window ending at the watermark.",
           "gauge", ("product_category", "window"), _window_reviews),
    Metric("sentiment_window_share",
           "Share of reviews the model put in each sentiment class, per window.",
           "gauge", ("product_category", "window", "sentiment"), _window_shares),
    Metric("sentiment_shift_log_likelihood_ratio",
           "Log statistic of the negative-share shift detector (mixture Shiryaev-Roberts).",
           "gauge", _CAT,
           lambda p: _shift_samples(p, "statistic")),
    Metric("sentiment_shift_reference_negative_share",
           "Negative share the shift detector compares against.", "gauge", _CAT,
           lambda p: _shift_samples(p, "reference")),
    Metric("sentiment_shift_firing", "1 while a SentimentShift episode is open, else 0.",
           "gauge", _CAT, lambda p: _shift_samples(p, "firing")),
    Metric("sentiment_shift_threshold",
           "Alarm threshold of the shift detectors (log-likelihood ratio).", "gauge", (),
           _one(lambda p: None if p.shift is None else p.shift_threshold)),
    Metric("sentiment_window_evaluations_total",
           "Windows the drift, prior and bias tests have evaluated.", "counter", (),
           _one(lambda p: p.tester.evaluations)),
    Metric("sentiment_baseline_prior", "Class priors of the baseline.", "gauge", ("sentiment",),
           _baseline_priors),
    Metric("sentiment_baseline_accuracy",
           "Accuracy of the model on the baseline's labelled reviews.", "gauge", (),
           _one(lambda p: None if p.baseline is None or p.baseline.macro_f1 is None
                else p.baseline.accuracy)),
    Metric("sentiment_baseline_macro_f1",
           "Macro-F1 of the model on the baseline's labelled reviews.", "gauge", (),
           _one(lambda p: None if p.baseline is None or p.baseline.accuracy is None
                else p.baseline.macro_f1)),
    Metric("sentiment_window_end_timestamp_seconds", "End of the last evaluated window.",
           "gauge", (),
           _one(lambda p: None if (r := p.tester.last_report) is None else r.end_us / 1e6)),
    Metric("sentiment_feature_psi",
           "Population stability index of a feature, last window vs baseline.",
           "gauge", ("feature",), lambda p: _features(p, "psi")),
    Metric("sentiment_feature_js_distance",
           "Jensen-Shannon distance (base 2) of a feature, last window vs baseline.",
           "gauge", ("feature",), lambda p: _features(p, "js_distance")),
    Metric("sentiment_feature_drift_p_value",
           "p-value of the feature drift test (chi-square or KS), last window.",
           "gauge", ("feature",), lambda p: _features(p, "p_value")),
    Metric("sentiment_class_share",
           "Share of each class in the last evaluated window (predicted or rated).",
           "gauge", ("label_source", "sentiment"), _class_shares),
    Metric("sentiment_class_mix_tvd",
           "Total variation distance of the class mix from the baseline's.",
           "gauge", ("label_source",), lambda p: (((s,), t) for s, _, t, _ in _class_mixes(p))),
    Metric("sentiment_class_mix_p_value",
           "p-value of the chi-square test of the class mix against the baseline.",
           "gauge", ("label_source",), lambda p: (((s,), v) for s, _, _, v in _class_mixes(p))),
    Metric("sentiment_window_accuracy",
           "Accuracy on the rated reviews of the last evaluated window.", "gauge", (),
           _one(lambda p: None if (r := p.tester.last_report) is None or r.accuracy is None
                else r.accuracy.accuracy)),
    Metric("sentiment_window_macro_f1",
           "Macro-F1 on the rated reviews of the last evaluated window.", "gauge", (),
           _one(lambda p: None if (r := p.tester.last_report) is None or r.accuracy is None
                else r.accuracy.macro_f1)),
    Metric("sentiment_prior_estimate",
           "Estimated true class prior of the last window (BBSE or EM).",
           "gauge", ("method", "sentiment"), lambda p: _prior_estimates(p, "priors")),
    Metric("sentiment_prior_estimate_lower",
           "Lower end of the simultaneous interval of the prior estimate.",
           "gauge", ("method", "sentiment"), lambda p: _prior_estimates(p, "lower")),
    Metric("sentiment_prior_estimate_upper",
           "Upper end of the simultaneous interval of the prior estimate.",
           "gauge", ("method", "sentiment"), lambda p: _prior_estimates(p, "upper")),
    Metric("sentiment_prior_shift_detected",
           "1 if the last window's prior interval excludes the baseline, else 0.",
           "gauge", ("method",), _prior_shifts),
    Metric("sentiment_estimated_accuracy",
           "Accuracy of the last window estimated without labels from calibrated "
           "probabilities (prior_weighted: reweighted to the EM priors; unweighted: CBPE).",
           "gauge", ("method",), lambda p: _performance(p, "accuracy")),
    Metric("sentiment_estimated_accuracy_lower",
           "Lower end of the interval of the estimated accuracy.",
           "gauge", ("method",), lambda p: _performance(p, "accuracy_lower")),
    Metric("sentiment_estimated_accuracy_upper",
           "Upper end of the interval of the estimated accuracy.",
           "gauge", ("method",), lambda p: _performance(p, "accuracy_upper")),
    Metric("sentiment_estimated_macro_f1",
           "Macro-F1 of the last window estimated without labels (see "
           "sentiment_estimated_accuracy).",
           "gauge", ("method",), lambda p: _performance(p, "macro_f1")),
    Metric("sentiment_estimated_macro_f1_lower",
           "Lower end of the interval of the estimated macro-F1.",
           "gauge", ("method",), lambda p: _performance(p, "macro_f1_lower")),
    Metric("sentiment_estimated_macro_f1_upper",
           "Upper end of the interval of the estimated macro-F1.",
           "gauge", ("method",), lambda p: _performance(p, "macro_f1_upper")),
    Metric("sentiment_bias_metric",
           "Clarify pre-training bias metric of a product category vs the rest, last "
           "evaluated window.", "gauge", ("metric", "product_category", "label_source"),
           _bias_metrics),
    Metric("sentiment_alert_episodes_open",
           "Alert episodes currently firing, by alert name and category.",
           "gauge", ("alertname", "product_category"), _episodes),
)  # fmt: skip
