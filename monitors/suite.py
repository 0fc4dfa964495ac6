"""The one facade the pipeline core calls: :class:`MonitorSuite`.

``observe(batch, now)`` once per scored micro-batch, in stream order; ``readings()`` for
Prometheus; ``state()`` / ``from_state()`` to keep the suite in a table; ``reset()``.

What it runs on every batch (vectorised per batch; the only per-event Python is the feature
extraction in :mod:`monitors.features`):

* event-time windows (:mod:`monitors.windows`): tumbling ``window`` plus ``sliding_windows``,
  per product category and overall, late (dropped) and out-of-order (kept) events counted;
* the baseline: given, or learned from the first ``baseline_events`` events;
* SentimentShift (:mod:`monitors.shift`): CUSUM per category and overall, false-alarm budget
  ``false_alarm_rate`` per ``horizon_events`` events, Bonferroni-split over the detectors;
  alert evidence: window, baseline and current share with a Wilson interval, counts, example
  review ids, distinctive terms of the window's negative reviews;
* on every closed tumbling window (or every ``max_window_events`` events of an open one; a
  window under ``min_count`` events is carried into the next): data drift per feature within
  predicted class (DataDrift; the rating's drift is reported, its alert is LabelDrift),
  prediction drift, label drift, accuracy / macro-F1 (AccuracyDrop), prior shift by BBSE and EM
  with intervals (PriorShift: both estimators must flag it, it must survive leaving out any one
  category, and it is withheld while the window shows data drift, which breaks the label-shift
  assumption) and the Clarify bias metrics (:mod:`monitors.evaluation`).

Alert names and severities: SentimentShift (critical; category = the product category,
``other`` or ``all``), PriorShift, PredictionDrift, LabelDrift, AccuracyDrop, DataDrift (warning;
category ``all``; DataDrift names its feature in the evidence, the summary and the alert id).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from monitors._stats import IntArray, proportion_ci
from monitors.baseline import Baseline, BaselineBuilder, baseline_from_dict, baseline_to_dict
from monitors.evaluation import WindowAccumulator, WindowReport, WindowTests, evaluate_window
from monitors.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, BatchFeatures, extract
from monitors.readings import OTHER, AlertBook, Reading
from monitors.shift import SentimentShiftMonitor, ShiftEvent, cusum_threshold
from monitors.windows import EventTimeWindows, WindowCounts, from_us, to_us
from stream.events import LABELS, Alert, ScoredReview, Severity

__all__ = ["MonitorConfig", "MonitorSuite", "Reading"]

_STATE_VERSION = 1
_ALL = "all"


@dataclass(frozen=True)
class MonitorConfig:
    """Plain values the app builds from its settings.

    ``false_alarm_rate`` is the budget of each alert name: the probability of a false alarm
    within ``horizon_events`` events of a stationary stream. The SentimentShift detectors (one
    per category, ``other`` and ``all``) split it Bonferroni-wise; each window test spends
    ``false_alarm_rate * n / horizon_events`` on a window of ``n`` events (so the windows of a
    horizon together spend at most the budget, whatever their sizes), split again over the
    features (DataDrift), the two estimators (PriorShift) and the classes.
    """

    categories: tuple[str, ...]
    window: timedelta = timedelta(hours=1)
    sliding_windows: tuple[timedelta, ...] = (
        timedelta(minutes=5),
        timedelta(hours=1),
        timedelta(hours=24),
    )
    #: slice length of the window counts (None: the gcd of the window lengths)
    pane: timedelta | None = None
    allowed_lateness: timedelta = timedelta(minutes=10)
    min_count: int = 50
    false_alarm_rate: float = 0.001
    baseline_events: int = 2000
    #: events over which a sequential detector's false-alarm probability is budgeted
    horizon_events: int = 100_000
    #: the rise a SentimentShift detector is tuned for, as an odds ratio of negative share
    shift_odds_ratio: float = 2.0
    #: log-likelihood-ratio evidence for "back to normal" that resolves a SentimentShift
    #: (None: half the firing threshold)
    resolve_log_lr: float | None = None
    #: events behind the moving reference of the per-category detectors
    reference_events: int = 1000
    #: the detectors compare against this upper quantile of the baseline negative share
    reference_quantile: float = 0.9
    #: evaluate the window tests early once an open window holds this many events
    max_window_events: int = 5000
    #: effect-size floors: a significant change smaller than this is not alerted
    min_psi: float = 0.1
    min_share_change: float = 0.05
    min_accuracy_drop: float = 0.05
    #: confidence level of the intervals reported as evidence
    confidence_level: float = 0.95
    examples: int = 5
    top_terms: int = 10
    #: the model's validation confusion matrix [predicted][true] (class order -1, 0, 1)
    confusion: tuple[tuple[int, int, int], ...] | None = None

    def __post_init__(self) -> None:
        if not self.categories:
            raise ValueError("categories must name at least one product category")
        if not 0 < self.false_alarm_rate < 1:
            raise ValueError("false_alarm_rate must be in (0, 1)")
        if self.min_count < 1 or self.baseline_events < 1 or self.horizon_events < 1:
            raise ValueError("min_count, baseline_events and horizon_events must be >= 1")
        if self.window <= timedelta(0) or self.allowed_lateness < timedelta(0):
            raise ValueError("window must be > 0 and allowed_lateness >= 0")
        if self.shift_odds_ratio <= 1:
            raise ValueError("shift_odds_ratio must be > 1")
        if not 0 < self.confidence_level < 1:
            raise ValueError("confidence_level must be in (0, 1)")
        if not 0 < self.reference_quantile < 1:
            raise ValueError("reference_quantile must be in (0, 1)")
        if self.max_window_events < self.min_count:
            raise ValueError("max_window_events must be >= min_count")


def _mix(shares: Any) -> str:
    values = [float(v) for v in shares]
    return "/".join(f"{v:.0%}" for v in values) + " (neg/neu/pos)"


def _window_label(d: timedelta) -> str:
    s = int(d.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if s % size == 0 and s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


@dataclass(slots=True)
class _Counters:
    events: int = 0
    late: int = 0
    out_of_order: int = 0
    batches: int = 0
    alerts: dict[str, int] = field(default_factory=dict)


class MonitorSuite:
    """Every monitor of the stream behind one synchronous, pure facade (see module doc)."""

    def __init__(
        self,
        config: MonitorConfig,
        baseline: Baseline | None = None,
        *,
        vocabulary: Collection[str] | None = None,
    ) -> None:
        self.config = config
        self._vocabulary = None if vocabulary is None else frozenset(vocabulary)
        cats = tuple(dict.fromkeys(c for c in config.categories if c != OTHER))
        self._groups: tuple[str, ...] = (*cats, OTHER)
        self._group_index = {c: i for i, c in enumerate(self._groups)}
        self._given_baseline = baseline
        # family sizes for Bonferroni
        self._shift_alpha = config.false_alarm_rate / (len(self._groups) + 1)
        self._shift_threshold = cusum_threshold(self._shift_alpha, config.horizon_events)
        self.reset()

    # -- lifecycle -------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the state right after construction (the given baseline is kept)."""
        c = self.config
        self._windows = EventTimeWindows(
            groups=len(self._groups),
            tumbling=c.window,
            sliding=c.sliding_windows,
            pane=c.pane,
            allowed_lateness=c.allowed_lateness,
        )
        self._builder = BaselineBuilder(
            c.baseline_events,
            confusion=None if c.confusion is None else np.asarray(c.confusion),
        )
        self._book = AlertBook()
        self._counters = _Counters()
        self.baseline: Baseline | None = None
        self._shift: SentimentShiftMonitor | None = None
        self._accs: dict[int, WindowAccumulator] = {}
        self._carry: WindowAccumulator | None = None
        self._last_report: WindowReport | None = None
        self._evaluations = 0
        if self._given_baseline is not None:
            self._set_baseline(self._given_baseline)

    def _set_baseline(self, baseline: Baseline) -> None:
        c = self.config
        self.baseline = baseline
        neg = np.zeros(len(self._groups), dtype=np.int64)
        tot = np.zeros(len(self._groups), dtype=np.int64)
        for cat, counts in baseline.category_predicted.items():
            gi = self._group_index.get(cat, len(self._groups) - 1)
            neg[gi] += counts[0]
            tot[gi] += sum(counts)
        self._shift = SentimentShiftMonitor(
            self._groups,
            baseline_negatives=neg.tolist(),
            baseline_totals=tot.tolist(),
            odds_ratio=c.shift_odds_ratio,
            threshold=self._shift_threshold,
            resolve_threshold=(
                self._shift_threshold / 2 if c.resolve_log_lr is None else c.resolve_log_lr
            ),
            min_count=c.min_count,
            reference_events=c.reference_events,
            reference_quantile=c.reference_quantile,
            examples=c.examples,
            baseline_terms=baseline.terms,
            baseline_negative_terms=baseline.negative_terms,
        )

    # -- observe ---------------------------------------------------------------------------

    def _groups_of(self, categories: Sequence[str]) -> IntArray:
        other = len(self._groups) - 1
        get = self._group_index.get
        return np.fromiter(
            (get(c, other) for c in categories), dtype=np.int64, count=len(categories)
        )

    def observe(self, batch: Sequence[ScoredReview], now: datetime) -> list[Alert]:
        """Feed one scored micro-batch (stream order); ``now`` is the processing time.
        Returns the alert transitions it caused (firing and resolved)."""
        f = extract(batch, self._vocabulary, all_tokens=self.baseline is None)
        group = self._groups_of(f.category)
        res = self._windows.add(f.t_us, group, f.predicted, f.true, to_us(now))
        self._counters.batches += 1
        self._counters.late += res.late
        self._counters.out_of_order += res.out_of_order
        accepted = f if bool(res.accepted.all()) else f.take(res.accepted)
        group = group[res.accepted]
        self._counters.events += len(accepted)
        alerts: list[Alert] = []
        if self.baseline is None and len(accepted):
            rest = self._builder.add(accepted)
            group = group[len(accepted) - len(rest) :]
            accepted = rest
            if self._builder.done:
                self._set_baseline(self._builder.build())
        if self._shift is not None and len(accepted):
            events = self._shift.update(
                group,
                accepted.predicted == 0,
                accepted.t_us.astype(np.float64),
                accepted.review_ids,
                accepted.tokens,
            )
            alerts += [self._shift_alert(e, now) for e in events]
        if self.baseline is not None:
            if len(accepted):
                alerts += self._accumulate(accepted, group, now)
            closed_until = self._windows.closed_until
            if closed_until is not None:
                for k in sorted(k for k in self._accs if k < closed_until):
                    alerts += self._evaluate(self._accs.pop(k), now)
        for a in alerts:
            key = f"{a.name}:{a.status}"
            self._counters.alerts[key] = self._counters.alerts.get(key, 0) + 1
        return alerts

    # -- window tests ----------------------------------------------------------------------

    def _accumulate(self, f: BatchFeatures, group: IntArray, now: datetime) -> list[Alert]:
        assert self.baseline is not None  # noqa: S101 - callers check
        alerts: list[Alert] = []
        widx = self._windows.window_index(f.t_us)
        width = self._windows.tumbling_us
        keys = np.unique(widx)
        for k in keys.tolist():
            part, g = (f, group) if keys.size == 1 else (f.take(widx == k), group[widx == k])
            acc = self._accs.get(k)
            if acc is None:
                acc = WindowAccumulator(
                    self.baseline, len(self._groups), k * width, (k + 1) * width
                )
                self._accs[k] = acc
            acc.add(part, g, self.baseline)
            if acc.n >= self.config.max_window_events:
                del self._accs[k]
                alerts += self._evaluate(acc, now)
        return alerts

    def _tests(self, n: int) -> WindowTests:
        """Levels for a window of ``n`` events: each alert family spends
        ``false_alarm_rate * n / horizon_events`` on it, so over ``horizon_events`` events
        (whatever the window sizes) a family's false alarms stay within its budget."""
        c = self.config
        return WindowTests(
            alpha=c.false_alarm_rate * min(1.0, n / c.horizon_events),
            min_count=c.min_count,
            min_psi=c.min_psi,
            min_share_change=c.min_share_change,
            min_accuracy_drop=c.min_accuracy_drop,
            confidence=c.confidence_level,
        )

    def _evaluate(self, acc: WindowAccumulator, now: datetime) -> list[Alert]:
        """Run the window tests on ``acc`` (merged with an under-filled predecessor)."""
        assert self.baseline is not None  # noqa: S101 - callers check
        if self._carry is not None:
            self._carry.merge(acc)
            acc, self._carry = self._carry, None
        if acc.n < self.config.min_count:
            self._carry = acc
            return []
        report = evaluate_window(acc, self.baseline, self._groups, self._tests(acc.n))
        self._last_report = report
        self._evaluations += 1
        start = from_us(acc.first_event if acc.first_event is not None else acc.start_us)
        end = from_us(acc.last_event if acc.last_event is not None else acc.end_us)
        span = {"window_start": start.isoformat(), "window_end": end.isoformat()}
        out: list[Alert | None] = []

        def transition(
            name: str, subject: str, fired: bool, clean: bool, summary: str, ev: dict[str, Any]
        ) -> None:
            evidence = {**span, **ev}
            if fired:
                out.append(
                    self._book.fire(
                        name,
                        _ALL,
                        subject=subject,
                        episode_start=start,
                        window_start=start,
                        window_end=end,
                        now=now,
                        summary=summary,
                        evidence=evidence,
                        severity=Severity.WARNING,
                    )
                )
            elif clean:
                out.append(
                    self._book.resolve(
                        name,
                        _ALL,
                        subject=subject,
                        window_start=start,
                        window_end=end,
                        now=now,
                        summary=f"{name} back to normal: {summary}",
                        evidence=evidence,
                        severity=Severity.WARNING,
                    )
                )

        for feature, r in report.features.items():
            meaning = {**NUMERIC_FEATURES, **CATEGORICAL_FEATURES}.get(feature, feature)
            transition(
                "DataDrift",
                feature,
                r.drifted,
                report.features_clean[feature],
                f"Data drift in {feature} ({meaning}): PSI {r.psi:.3f}, JS distance "
                f"{r.js_distance:.3f}, {r.test} p={r.p_value:.2g} over {r.count} reviews",
                r.to_json(),
            )
        if report.prediction is not None:
            r2 = report.prediction
            transition(
                "PredictionDrift",
                "",
                r2.drifted,
                report.prediction_clean,
                f"Predicted sentiment mix {_mix(r2.current)} against baseline {_mix(r2.reference)} "
                f"(TVD {r2.tvd:.3f}, chi-square p={r2.p_value:.2g}, {r2.count} reviews)",
                r2.to_json(),
            )
        if report.label is not None:
            r3 = report.label
            transition(
                "LabelDrift",
                "",
                r3.drifted,
                report.label_clean,
                f"Rated sentiment mix {_mix(r3.current)} against baseline {_mix(r3.reference)} "
                f"(TVD {r3.tvd:.3f}, chi-square p={r3.p_value:.2g}, {r3.count} rated reviews)",
                r3.to_json(),
            )
        if report.accuracy is not None:
            r4 = report.accuracy
            transition(
                "AccuracyDrop",
                "",
                r4.dropped,
                report.accuracy_clean,
                f"Accuracy {r4.accuracy:.1%} against baseline {r4.baseline_accuracy:.1%}, "
                f"macro-F1 {r4.macro_f1:.3f} against {r4.baseline_macro_f1:.3f} "
                f"(Fisher p={r4.p_value:.2g}, {r4.count} rated reviews)",
                r4.to_json(),
            )
        if report.priors:
            main = report.priors.get("bbse") or next(iter(report.priors.values()))
            transition(
                "PriorShift",
                "",
                report.prior_shift,
                report.priors_clean,
                f"Estimated class priors {_mix(main.estimate.priors)} ({main.estimate.method}, "
                f"{self.config.confidence_level:.0%} CI "
                f"{_mix(main.estimate.lower)}..{_mix(main.estimate.upper)}) against baseline "
                f"{_mix(main.reference)} over {main.estimate.n} reviews",
                {
                    "baseline_priors": [round(float(v), 6) for v in main.reference],
                    "estimates": {
                        m: {
                            **ps.estimate.to_json(),
                            "reference": [round(float(v), 6) for v in ps.reference],
                            "shifted": ps.shifted,
                            "concentrated_in": ps.concentrated_in,
                        }
                        for m, ps in report.priors.items()
                    },
                    "count": main.estimate.n,
                    "withheld": report.prior_withheld,
                },
            )
        return [a for a in out if a is not None]

    @property
    def last_report(self) -> WindowReport | None:
        """Every test result of the last evaluated window (None before the first)."""
        return self._last_report

    def bias_analysis(self, label_source: str = "true") -> dict[str, Any] | None:
        """Clarify-shaped bias metrics (``analysis.json``) of the last evaluated window, on
        true labels (``"true"``) or predictions (``"predicted"``); None before one."""
        if self._last_report is None:
            return None
        return self._last_report.bias.get(label_source)

    # -- alerts ----------------------------------------------------------------------------

    def _shift_alert(self, e: ShiftEvent, now: datetime) -> Alert:
        t = e.transition
        c = self.config
        end = from_us(int(e.window_end)) if e.window_end is not None else now
        start = from_us(int(t.start)) if t.start is not None else end
        share = t.negatives / t.count if t.count else 0.0
        lo, hi = proportion_ci(t.negatives, t.count, c.confidence_level)
        where = "the whole stream" if e.group == _ALL else e.group
        evidence: dict[str, Any] = {
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "baseline_share": round(e.baseline_share, 6),
            "reference_share": round(e.reference_share, 6),
            "current_share": round(share, 6),
            "current_share_interval": [round(lo, 6), round(hi, 6)],
            "confidence_level": c.confidence_level,
            "count": t.count,
            "negatives": t.negatives,
            "log_likelihood_ratio": round(t.statistic, 4),
            "threshold": round(self._shift_threshold, 4),
        }
        if t.status == "firing":
            evidence["example_review_ids"] = list(e.example_ids)
            evidence["terms"] = [{"term": w, "z": z} for w, z in e.terms]
            summary = (
                f"Negative share of {where} rose to {share:.1%} "
                f"({c.confidence_level:.0%} CI {lo:.1%}-{hi:.1%}) over {t.count} reviews, "
                f"against a baseline of {e.baseline_share:.1%}"
            )
            alert = self._book.fire(
                "SentimentShift",
                e.group,
                episode_start=start,
                window_start=start,
                window_end=end,
                now=now,
                summary=summary,
                evidence=evidence,
                severity=Severity.CRITICAL,
            )
        else:
            summary = (
                f"Negative share of {where} is back near its baseline of "
                f"{e.baseline_share:.1%} ({share:.1%} over {t.count} reviews since the alert)"
            )
            alert = self._book.resolve(
                "SentimentShift",
                e.group,
                window_start=start,
                window_end=end,
                now=now,
                summary=summary,
                evidence=evidence,
                severity=Severity.CRITICAL,
            )
        if alert is None:  # the book and the detector disagree only after a partial restore
            raise RuntimeError(f"SentimentShift {e.group}: {t.status} without matching episode")
        return alert

    # -- readings --------------------------------------------------------------------------

    def readings(self) -> list[Reading]:
        """Current value of every statistic (names ``sentiment_``, ratios in [0, 1])."""
        out: list[Reading] = []
        k = self._counters
        out += [
            Reading(
                "sentiment_monitor_events_total",
                "Scored reviews the monitors accepted.",
                "counter",
                {},
                float(k.events),
            ),
            Reading(
                "sentiment_monitor_late_events_total",
                "Reviews dropped by the monitors as later than the allowed lateness.",
                "counter",
                {},
                float(k.late),
            ),
            Reading(
                "sentiment_monitor_out_of_order_events_total",
                "Reviews older than one already seen (kept).",
                "counter",
                {},
                float(k.out_of_order),
            ),
            Reading(
                "sentiment_baseline_ready",
                "1 once the monitors have a baseline, else 0.",
                "gauge",
                {},
                1.0 if self.baseline is not None else 0.0,
            ),
            Reading(
                "sentiment_baseline_reviews",
                "Reviews behind the baseline (collected so far while learning it).",
                "gauge",
                {},
                float(self.baseline.n if self.baseline is not None else self._builder.count),
            ),
        ]
        clock = self._windows.clock
        if clock is not None:
            out.append(
                Reading(
                    "sentiment_monitor_watermark_timestamp_seconds",
                    "Event-time watermark of the monitor windows.",
                    "gauge",
                    {},
                    clock / 1e6,
                )
            )
        for length, d in zip(self._windows.sliding_us, self.config.sliding_windows, strict=True):
            out += self._window_readings(self._windows.sliding(length), _window_label(d))
        if self._shift is not None:
            refs = self._shift.reference_shares()
            for name, det in self._shift.detectors.items():
                labels = {"product_category": name}
                ref = det.p0 if name == _ALL else float(refs[self._groups.index(name)])
                out += [
                    Reading(
                        "sentiment_shift_log_likelihood_ratio",
                        "CUSUM statistic of the negative-share shift detector.",
                        "gauge",
                        labels,
                        det.statistic,
                    ),
                    Reading(
                        "sentiment_shift_reference_negative_share",
                        "Negative share the shift detector compares against.",
                        "gauge",
                        labels,
                        det.p0 if det.firing else ref,
                    ),
                    Reading(
                        "sentiment_shift_firing",
                        "1 while a SentimentShift episode is open, else 0.",
                        "gauge",
                        labels,
                        1.0 if det.firing else 0.0,
                    ),
                ]
            out.append(
                Reading(
                    "sentiment_shift_threshold",
                    "Alarm threshold of the shift detectors (log-likelihood ratio).",
                    "gauge",
                    {},
                    self._shift_threshold,
                )
            )
        out += self._report_readings()
        active: dict[tuple[str, str], int] = {}
        for name, cat, _subject in self._book.active:
            active[(name, cat)] = active.get((name, cat), 0) + 1
        for (name, cat), n in sorted(active.items()):
            out.append(
                Reading(
                    "sentiment_alert_episodes_open",
                    "Alert episodes currently firing, by alert name and category.",
                    "gauge",
                    {"alertname": name, "product_category": cat},
                    float(n),
                )
            )
        return out

    def _report_readings(self) -> list[Reading]:
        """Readings of the last evaluated window (drift, priors, accuracy, bias)."""
        out: list[Reading] = [
            Reading(
                "sentiment_window_evaluations_total",
                "Windows the drift, prior and bias tests have evaluated.",
                "counter",
                {},
                float(self._evaluations),
            )
        ]
        b = self.baseline
        if b is not None:
            for k, label in enumerate(LABELS.values()):
                out.append(
                    Reading(
                        "sentiment_baseline_prior",
                        "Class priors of the baseline.",
                        "gauge",
                        {"sentiment": label},
                        float(b.priors[k]),
                    )
                )
            if b.accuracy is not None and b.macro_f1 is not None:
                out += [
                    Reading(
                        "sentiment_baseline_accuracy",
                        "Accuracy of the model on the baseline's labelled reviews.",
                        "gauge",
                        {},
                        b.accuracy,
                    ),
                    Reading(
                        "sentiment_baseline_macro_f1",
                        "Macro-F1 of the model on the baseline's labelled reviews.",
                        "gauge",
                        {},
                        b.macro_f1,
                    ),
                ]
        r = self._last_report
        if r is None:
            return out
        out.append(
            Reading(
                "sentiment_window_end_timestamp_seconds",
                "End of the last evaluated window.",
                "gauge",
                {},
                r.end_us / 1e6,
            )
        )
        for name, f in r.features.items():
            labels = {"feature": name}
            out += [
                Reading(
                    "sentiment_feature_psi",
                    "Population stability index of a feature, last window vs baseline.",
                    "gauge",
                    labels,
                    f.psi,
                ),
                Reading(
                    "sentiment_feature_js_distance",
                    "Jensen-Shannon distance (base 2) of a feature, last window vs baseline.",
                    "gauge",
                    labels,
                    f.js_distance,
                ),
                Reading(
                    "sentiment_feature_drift_p_value",
                    "p-value of the feature drift test (chi-square or KS), last window.",
                    "gauge",
                    labels,
                    f.p_value,
                ),
            ]
        for source, d in (("predicted", r.prediction), ("true", r.label)):
            if d is None:
                continue
            for k, label in enumerate(LABELS.values()):
                out.append(
                    Reading(
                        "sentiment_class_share",
                        "Share of each class in the last evaluated window (predicted or rated).",
                        "gauge",
                        {"label_source": source, "sentiment": label},
                        float(d.current[k]),
                    )
                )
            out += [
                Reading(
                    "sentiment_class_mix_tvd",
                    "Total variation distance of the class mix from the baseline's.",
                    "gauge",
                    {"label_source": source},
                    d.tvd,
                ),
                Reading(
                    "sentiment_class_mix_p_value",
                    "p-value of the chi-square test of the class mix against the baseline.",
                    "gauge",
                    {"label_source": source},
                    d.p_value,
                ),
            ]
        if r.accuracy is not None:
            out += [
                Reading(
                    "sentiment_window_accuracy",
                    "Accuracy on the rated reviews of the last evaluated window.",
                    "gauge",
                    {},
                    r.accuracy.accuracy,
                ),
                Reading(
                    "sentiment_window_macro_f1",
                    "Macro-F1 on the rated reviews of the last evaluated window.",
                    "gauge",
                    {},
                    r.accuracy.macro_f1,
                ),
            ]
        for method, ps in r.priors.items():
            est = ps.estimate
            for k, label in enumerate(LABELS.values()):
                labels = {"method": method, "sentiment": label}
                out += [
                    Reading(
                        "sentiment_prior_estimate",
                        "Estimated true class prior of the last window (BBSE or EM).",
                        "gauge",
                        labels,
                        float(est.priors[k]),
                    ),
                    Reading(
                        "sentiment_prior_estimate_lower",
                        "Lower end of the simultaneous interval of the prior estimate.",
                        "gauge",
                        labels,
                        float(est.lower[k]),
                    ),
                    Reading(
                        "sentiment_prior_estimate_upper",
                        "Upper end of the simultaneous interval of the prior estimate.",
                        "gauge",
                        labels,
                        float(est.upper[k]),
                    ),
                ]
            out.append(
                Reading(
                    "sentiment_prior_shift_detected",
                    "1 if the last window's prior interval excludes the baseline, else 0.",
                    "gauge",
                    {"method": method},
                    1.0 if ps.shifted else 0.0,
                )
            )
        for source, analysis in r.bias.items():
            facets = analysis["pre_training_bias_metrics"]["facets"]["product_category"]
            for facet in facets:
                for m in facet["metrics"]:
                    if not isinstance(m["value"], float | int):
                        continue
                    out.append(
                        Reading(
                            "sentiment_bias_metric",
                            "Clarify pre-training bias metric of a product category vs the "
                            "rest, last evaluated window.",
                            "gauge",
                            {
                                "metric": m["name"],
                                "product_category": facet["value_or_threshold"],
                                "label_source": source,
                            },
                            float(m["value"]),
                        )
                    )
        return out

    def _window_readings(self, counts: WindowCounts, window: str) -> list[Reading]:
        out: list[Reading] = []
        pred = counts.predicted
        rows: list[tuple[str, IntArray]] = [(_ALL, pred.sum(axis=0))]
        rows += [(g, pred[i]) for i, g in enumerate(self._groups)]
        for name, row in rows:
            n = int(row.sum())
            out.append(
                Reading(
                    "sentiment_window_reviews",
                    "Reviews in the sliding window ending at the watermark.",
                    "gauge",
                    {"product_category": name, "window": window},
                    float(n),
                )
            )
            if n == 0:
                continue
            for k, label in enumerate(LABELS.values()):
                out.append(
                    Reading(
                        "sentiment_window_share",
                        "Share of reviews the model put in each sentiment class, per window.",
                        "gauge",
                        {"product_category": name, "window": window, "sentiment": label},
                        float(row[k]) / n,
                    )
                )
        return out

    # -- state -----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to resume, as a JSON-able dict."""
        k = self._counters
        return {
            "version": _STATE_VERSION,
            "groups": list(self._groups),
            "windows": self._windows.state(),
            "baseline": None if self.baseline is None else baseline_to_dict(self.baseline),
            "builder": self._builder.state() if self.baseline is None else None,
            "shift": None if self._shift is None else self._shift.state(),
            "alerts": self._book.state(),
            "windows_open": {str(k): a.state() for k, a in sorted(self._accs.items())},
            "carry": None if self._carry is None else self._carry.state(),
            "evaluations": self._evaluations,
            "counters": {
                "events": k.events,
                "late": k.late,
                "out_of_order": k.out_of_order,
                "batches": k.batches,
                "alerts": dict(k.alerts),
            },
        }

    @classmethod
    def from_state(
        cls,
        config: MonitorConfig,
        state: Mapping[str, Any],
        *,
        vocabulary: Collection[str] | None = None,
    ) -> MonitorSuite:
        """A suite that continues where the one that wrote ``state`` stopped."""
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"unsupported monitor state version {state.get('version')!r}")
        suite = cls(config, vocabulary=vocabulary)
        if list(state["groups"]) != list(suite._groups):
            raise ValueError(
                "the state was written with other categories; start afresh or restore it "
                "with the configuration that wrote it"
            )
        suite._windows.load_state(state["windows"])
        if state["baseline"] is not None:
            suite._given_baseline = None
            suite._set_baseline(baseline_from_dict(state["baseline"]))
        elif state["builder"] is not None:
            suite._builder.load_state(state["builder"])
        if suite._shift is not None and state["shift"] is not None:
            suite._shift.load_state(state["shift"])
        suite._book.load_state(state["alerts"])
        if suite.baseline is not None:
            groups = len(suite._groups)
            suite._accs = {
                int(k): WindowAccumulator.from_state(a, suite.baseline, groups)
                for k, a in state["windows_open"].items()
            }
            if state["carry"] is not None:
                suite._carry = WindowAccumulator.from_state(state["carry"], suite.baseline, groups)
        suite._evaluations = int(state["evaluations"])
        c = state["counters"]
        suite._counters = _Counters(
            events=int(c["events"]),
            late=int(c["late"]),
            out_of_order=int(c["out_of_order"]),
            batches=int(c["batches"]),
            alerts={str(a): int(b) for a, b in c["alerts"].items()},
        )
        return suite
