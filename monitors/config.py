"""The monitors' configuration: plain values the app builds from its settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

__all__ = ["MonitorConfig"]


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
    #: a source partition without an event for this long (processing time) stops holding
    #: the watermark back
    idle_timeout: timedelta = timedelta(minutes=1)
    #: an event further than this ahead of processing time is dropped as ``future`` and never
    #: moves the watermark (None: no bound)
    max_event_ahead: timedelta | None = timedelta(days=1)
    #: a source partition whose event clock trails the newest partition's by more than this
    #: stops holding the watermark back (its events are late): a backfill or a slow producer
    #: clock must not keep every window open without end (None: no bound). A week: a backlog
    #: whose partitions are read at different speeds is skewed by up to its whole span (a
    #: two-day backlog by two workers went past a one-day bound, 6.6% of it late); a week of
    #: hourly windows open at once hold about 66 MB of their statistics (168 of 395 KB)
    max_partition_skew: timedelta | None = timedelta(days=7)
    min_count: int = 50
    false_alarm_rate: float = 0.001
    baseline_events: int = 2000
    #: events over which a sequential detector's false-alarm probability is budgeted
    horizon_events: int = 100_000
    #: the rise a firing SentimentShift is tested against when it resolves, as an odds ratio of
    #: negative share (the alarm itself watches a grid of rises, ``shift.MIXTURE_ODDS_RATIOS``)
    shift_odds_ratio: float = 2.0
    #: log-likelihood-ratio evidence for "back to normal" (against ``shift_odds_ratio``) that
    #: resolves a SentimentShift (None: half the firing threshold)
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
    #: texts of example reviews in a SentimentShift's evidence (receivers with text only)
    example_texts: int = 3
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
        if self.idle_timeout <= timedelta(0):
            raise ValueError("idle_timeout must be > 0")
        if self.max_event_ahead is not None and self.max_event_ahead < timedelta(0):
            raise ValueError("max_event_ahead must be >= 0")
        if self.max_partition_skew is not None and self.max_partition_skew < timedelta(0):
            raise ValueError("max_partition_skew must be >= 0")
        if self.max_window_events < self.min_count:
            raise ValueError("max_window_events must be >= min_count")
