"""The one facade the pipeline core calls: :class:`MonitorSuite`.

``observe(batch, now)`` once per scored micro-batch, in stream order; ``readings()`` for
Prometheus; ``state()`` / ``from_state()`` to keep the suite in a table; ``reset()``.

What it runs on every batch (vectorised per batch; the only per-event Python is the feature
extraction in :mod:`monitors.features`):

* event-time windows (:mod:`monitors.windows`): tumbling ``window`` plus ``sliding_windows``,
  per product category and overall, on a watermark that follows each source partition
  (``ScoredReview.position.key``; idle ones left out after ``idle_timeout``); late and future
  (dropped) and out-of-order (kept) events counted;
* the baseline: given, or learned from the first ``baseline_events`` events;
* SentimentShift (:mod:`monitors.shift`): a mixture Shiryaev-Roberts detector per category and
  overall (adapts to the size of the rise), false-alarm budget
  ``false_alarm_rate`` per ``horizon_events`` events, Bonferroni-split over the detectors;
  alert evidence: window, baseline and current share with a Wilson interval, counts, example
  review ids, distinctive terms of the window's negative reviews and, with an ``explainer``
  (the model's per-term contributions to the negative score, :mod:`monitors.contributions`),
  the terms whose contribution grew most against the category's own baseline negatives and
  the texts of ``example_texts`` negatives they weigh most in;
* on every closed tumbling window (or every ``max_window_events`` events of an open one; a
  window under ``min_count`` events is carried into the next): data drift per feature within
  predicted class (DataDrift; the rating's drift is reported, its alert is LabelDrift),
  prediction drift, label drift, accuracy / macro-F1 (AccuracyDrop), prior shift by BBSE and EM
  with intervals (PriorShift: both estimators must flag it, it must survive leaving out any one
  category, and it is withheld while the window shows data drift, which breaks the label-shift
  assumption), accuracy and macro-F1 estimated without labels from the calibrated
  probabilities reweighted to the EM priors (EstimatedAccuracyDrop; unweighted while the window
  shows data drift) and the Clarify bias metrics (:mod:`monitors.evaluation`).

Alert names and severities: SentimentShift (critical; category = the product category,
``other`` or ``all``), PriorShift, PredictionDrift, LabelDrift, AccuracyDrop,
EstimatedAccuracyDrop, DataDrift (warning; category ``all``; DataDrift names its feature in the
evidence, the summary and the alert id).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from monitors._stats import IntArray
from monitors.alerts import shift_alert, window_alerts
from monitors.baseline import Baseline
from monitors.config import MonitorConfig
from monitors.contributions import Explainer
from monitors.evaluation import WindowReport
from monitors.features import BatchFeatures, ModelVocabulary, extract, offsets, partitions
from monitors.parts import Counters, SuiteParts, unobserved, unseen
from monitors.readings import METRICS, Reading, collect
from monitors.window_tests import EvaluatedWindow
from monitors.windows import to_us
from stream.events import Alert, ScoredReview

__all__ = ["MonitorConfig", "MonitorSuite", "Reading"]


class MonitorSuite:
    """Every monitor of the stream behind one synchronous, pure facade (see module doc)."""

    def __init__(
        self,
        config: MonitorConfig,
        baseline: Baseline | None = None,
        *,
        vocabulary: Collection[str] | None = None,
        explainer: Explainer | None = None,
    ) -> None:
        self.config = config
        self._vocabulary = None if vocabulary is None else ModelVocabulary(vocabulary)
        self._explainer = explainer
        self._given_baseline = baseline
        self.reset()

    def reset(self) -> None:
        """Back to the state right after construction (the given baseline is kept)."""
        self._parts = SuiteParts(self.config)
        groups = self._parts.groups
        self._group_index = {c: i for i, c in enumerate(groups)}
        if self._given_baseline is not None:
            self._parts.set_baseline(self._given_baseline)

    @property
    def baseline(self) -> Baseline | None:
        """The reference in use (None while it is still being learned)."""
        return self._parts.baseline

    # -- observe ---------------------------------------------------------------------------

    def observe(self, batch: Sequence[ScoredReview], now: datetime) -> list[Alert]:
        """Feed one scored micro-batch (stream order); ``now`` is the processing time.
        Returns the alert transitions it caused (firing and resolved)."""
        p = self._parts
        learning = p.baseline is None
        # while learning the baseline every negative is explained (its reference); later only
        # those a SentimentShift run keeps as evidence, on demand
        f = extract(
            batch,
            self._vocabulary,
            all_tokens=learning,
            explainer=self._explainer if learning else None,
        )
        group = self._groups_of(f.category)
        codes, names = partitions(batch)
        k = p.counters
        k.batches += 1
        fresh = unseen(codes, names, offsets(batch), p.seen)
        if not bool(fresh.all()):
            k.duplicates += int(len(fresh) - fresh.sum())
            f, group, codes = f.take(fresh), group[fresh], codes[fresh]
        res = p.windows.add(f.t_us, group, f.predicted, f.true, to_us(now), codes, names)
        k.late += res.late
        k.out_of_order += res.out_of_order
        k.future += res.future
        if not bool(res.accepted.all()):
            f, group = f.take(res.accepted), group[res.accepted]
        k.events += len(f)
        f, group = self._learn_baseline(f, group)
        alerts = self._shift(f, group, now) + self._window_tests(f, group, now)
        for a in alerts:
            key = f"{a.name}:{a.status}"
            k.alerts[key] = k.alerts.get(key, 0) + 1
        return alerts

    def expect(self, log: Mapping[str, tuple[int, int]], now: datetime) -> None:
        """Tell the windows what the source holds: ``log`` maps each of its partitions
        (``"source/stream/partition"``, as the events' positions name them) to the offsets its
        log holds, ``[first, end)``. A partition with records not yet observed, and no event
        yet, holds the watermark (see :mod:`monitors.windows`), so a backlog whose partitions
        come one after another is not counted late. Call it before each :meth:`observe` where
        the source can say; without it, partitions hold the watermark from their first event."""
        p = self._parts
        p.windows.expect(unobserved(log, p.seen), to_us(now))

    def _groups_of(self, categories: Sequence[str]) -> IntArray:
        other = len(self._group_index) - 1
        get = self._group_index.get
        return np.fromiter(
            (get(c, other) for c in categories), dtype=np.int64, count=len(categories)
        )

    def _learn_baseline(self, f: BatchFeatures, group: IntArray) -> tuple[BatchFeatures, IntArray]:
        """While learning the baseline, take what it needs; returns the events after it."""
        p = self._parts
        if p.baseline is not None or not len(f):
            return f, group
        rest = p.builder.add(f)
        group = group[len(f) - len(rest) :]
        if p.builder.done:
            p.set_baseline(p.builder.build())
        return rest, group

    def _shift(self, f: BatchFeatures, group: IntArray, now: datetime) -> list[Alert]:
        p = self._parts
        if p.shift is None or not len(f):
            return []
        events = p.shift.update(
            group,
            f.predicted == 0,
            f.t_us.astype(np.float64),
            f.review_ids,
            f.tokens,
            f.texts,
            f.contributions or None,
            self._explainer,
        )
        c = self.config.confidence_level
        return [
            shift_alert(p.book, e, now, confidence=c, threshold=p.shift_threshold) for e in events
        ]

    def _window_tests(self, f: BatchFeatures, group: IntArray, now: datetime) -> list[Alert]:
        p = self._parts
        if p.baseline is None:
            return []
        done: list[EvaluatedWindow] = []
        if len(f):
            done += p.tester.add(f, group, p.baseline)
        done += p.tester.close(p.windows.closed_until, p.baseline)
        c = self.config.confidence_level
        return [
            a
            for w in done
            for a in window_alerts(p.book, w.report, w.start, w.end, now, confidence=c)
        ]

    # -- views -----------------------------------------------------------------------------

    @property
    def last_report(self) -> WindowReport | None:
        """Every test result of the last evaluated window (None before the first)."""
        return self._parts.tester.last_report

    @property
    def counters(self) -> Counters:
        """Running totals (events, late, future, out of order, batches, alerts)."""
        return self._parts.counters

    def bias_analysis(self, label_source: str = "true") -> dict[str, Any] | None:
        """Clarify-shaped bias metrics (``analysis.json``) of the last evaluated window, on
        true labels (``"true"``) or predictions (``"predicted"``); None before one."""
        report = self.last_report
        return None if report is None else report.bias.get(label_source)

    def readings(self) -> list[Reading]:
        """Current value of every statistic (names ``sentiment_``, ratios in [0, 1]); the
        metrics are declared in :data:`monitors.readings.METRICS`."""
        return collect(METRICS, self._parts)

    # -- state -----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to resume, as a JSON-able dict."""
        return self._parts.state()

    @classmethod
    def from_state(
        cls,
        config: MonitorConfig,
        state: Mapping[str, Any],
        *,
        vocabulary: Collection[str] | None = None,
        explainer: Explainer | None = None,
    ) -> MonitorSuite:
        """A suite that continues where the one that wrote ``state`` stopped."""
        suite = cls(config, vocabulary=vocabulary, explainer=explainer)
        suite._parts.load_state(state)
        return suite
