"""What a :class:`~monitors.suite.MonitorSuite` keeps between batches, and how it is saved.

:class:`SuiteParts` holds the suite's moving parts (event-time windows, baseline and its
builder, the SentimentShift detectors, the window tests, open alert episodes, counters, and
the highest source offset seen per source partition, see :func:`unseen`) and turns them into
one JSON-able dict (:meth:`SuiteParts.state`) and back
(:meth:`SuiteParts.load_state`), each part saving its own state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from monitors.alerts import AlertBook
from monitors.baseline import Baseline, BaselineBuilder, baseline_from_dict, baseline_to_dict
from monitors.config import MonitorConfig
from monitors.contributions import ContributionSums
from monitors.shift import SentimentShiftMonitor, cusum_threshold
from monitors.window_tests import TestLevels, WindowTester
from monitors.windows import EventTimeWindows
from stream.events import OTHER_CATEGORY

__all__ = ["STATE_VERSION", "Counters", "SuiteParts", "unobserved", "unseen"]

STATE_VERSION = 1


@dataclass(slots=True)
class Counters:
    """Running totals of the suite (alerts keyed ``"{name}:{status}"``)."""

    events: int = 0
    late: int = 0
    out_of_order: int = 0
    future: int = 0
    #: events at or below their partition's highest offset already seen (a replay)
    duplicates: int = 0
    batches: int = 0
    alerts: dict[str, int] = field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, c: Mapping[str, Any]) -> Counters:
        return cls(
            events=int(c["events"]),
            late=int(c["late"]),
            out_of_order=int(c["out_of_order"]),
            future=int(c.get("future", 0)),
            duplicates=int(c.get("duplicates", 0)),
            batches=int(c["batches"]),
            alerts={str(a): int(b) for a, b in c["alerts"].items()},
        )


def unseen(
    codes: npt.NDArray[np.int64],
    names: list[str],
    offsets: npt.NDArray[Any],
    seen: dict[str, int],
) -> npt.NDArray[np.bool_]:
    """Which events come for the first time, and ``seen`` (partition name -> highest offset
    observed) moved on past them.

    Event ``i`` is in partition ``names[codes[i]]`` at source offset ``offsets[i]``. A source
    replays a partition from its last commit after a restart or a rebalance, and the monitor
    feed's owner re-reads what it had not acknowledged: those events come again with the
    offsets they had, at or below the partition's mark. Offsets only grow within a partition
    (Kafka offsets, Kinesis sequence numbers, a replay's index), so the mark is enough."""
    fresh = np.ones(len(codes), dtype=np.bool_)
    for j, name in enumerate(names):
        rows = np.flatnonzero(codes == j)
        if not len(rows):
            continue
        mine = offsets[rows]
        mark = seen.get(name)
        if mark is not None:
            fresh[rows] = mine > mark
        top = int(mine.max())
        seen[name] = top if mark is None else max(mark, top)
    return fresh


def unobserved(log: Mapping[str, tuple[int, int]], seen: Mapping[str, int]) -> list[str]:
    """The partitions whose log holds records beyond what was observed, in ``log`` order.

    ``log`` maps each of the source's partitions (``"source/stream/partition"``) to the
    offsets its log holds now, ``[first, end)``; ``seen`` is the highest offset observed per
    partition (see :func:`unseen`)."""
    out = []
    for name, (first, end) in log.items():
        mark = seen.get(name)
        if end > (first if mark is None else max(first, mark + 1)):
            out.append(name)
    return out


def _groups(config: MonitorConfig) -> tuple[str, ...]:
    cats = tuple(dict.fromkeys(c for c in config.categories if c != OTHER_CATEGORY))
    return (*cats, OTHER_CATEGORY)


def _levels(c: MonitorConfig) -> TestLevels:
    return TestLevels(
        false_alarm_rate=c.false_alarm_rate,
        horizon_events=c.horizon_events,
        min_count=c.min_count,
        max_window_events=c.max_window_events,
        min_psi=c.min_psi,
        min_share_change=c.min_share_change,
        min_accuracy_drop=c.min_accuracy_drop,
        confidence=c.confidence_level,
    )


class SuiteParts:
    """The state of one suite, fresh from ``config`` (see module doc)."""

    def __init__(self, config: MonitorConfig) -> None:
        c = config
        self.config = config
        self.groups: tuple[str, ...] = _groups(config)
        # Bonferroni over the per-group detectors and "all"
        self.shift_threshold: float = cusum_threshold(
            c.false_alarm_rate / (len(self.groups) + 1), c.horizon_events
        )
        self.windows: EventTimeWindows = EventTimeWindows(
            groups=len(self.groups),
            tumbling=c.window,
            sliding=c.sliding_windows,
            pane=c.pane,
            allowed_lateness=c.allowed_lateness,
            idle_timeout=c.idle_timeout,
            max_ahead=c.max_event_ahead,
            max_skew=c.max_partition_skew,
        )
        self.builder: BaselineBuilder = BaselineBuilder(
            c.baseline_events,
            confusion=None if c.confusion is None else np.asarray(c.confusion),
        )
        self.tester: WindowTester = WindowTester(_levels(c), self.groups, self.windows.tumbling_us)
        self.book: AlertBook = AlertBook()
        self.counters: Counters = Counters()
        #: source partition ("source/stream/partition") -> the highest offset observed
        self.seen: dict[str, int] = {}
        self.baseline: Baseline | None = None
        self.shift: SentimentShiftMonitor | None = None

    def set_baseline(self, baseline: Baseline) -> None:
        """Use ``baseline`` from now on (starts the SentimentShift detectors)."""
        c = self.config
        self.baseline = baseline
        n = len(self.groups)
        neg = np.zeros(n, dtype=np.int64)
        tot = np.zeros(n, dtype=np.int64)
        index = {g: i for i, g in enumerate(self.groups)}
        for cat, counts in baseline.category_predicted.items():
            gi = index.get(cat, n - 1)
            neg[gi] += counts[0]
            tot[gi] += sum(counts)
        # each detector's own baseline negatives ("other" pools its categories, "all" every one)
        contributions: dict[str, ContributionSums] = {}
        for cat, sums in baseline.negative_contributions.items():
            for g in (self.groups[index.get(cat, n - 1)], SentimentShiftMonitor.ALL):
                contributions.setdefault(g, ContributionSums(2 * sums.capacity)).merge(sums)
        self.shift = SentimentShiftMonitor(
            self.groups,
            baseline_negatives=neg.tolist(),
            baseline_totals=tot.tolist(),
            odds_ratio=c.shift_odds_ratio,
            threshold=self.shift_threshold,
            resolve_threshold=(
                self.shift_threshold / 2 if c.resolve_log_lr is None else c.resolve_log_lr
            ),
            min_count=c.min_count,
            reference_events=c.reference_events,
            reference_quantile=c.reference_quantile,
            examples=c.examples,
            baseline_terms=baseline.terms,
            baseline_negative_terms=baseline.negative_terms,
            baseline_contributions=contributions,
            example_texts=c.example_texts,
            top_terms=c.top_terms,
        )

    # -- state -----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to resume, as a JSON-able dict."""
        b = self.baseline
        return {
            "version": STATE_VERSION,
            "groups": list(self.groups),
            "windows": self.windows.state(),
            "baseline": None if b is None else baseline_to_dict(b),
            "builder": self.builder.state() if b is None else None,
            "shift": None if self.shift is None else self.shift.state(),
            "alerts": self.book.state(),
            **self.tester.state(),
            "counters": self.counters.state(),
            # strings: a Kinesis sequence number does not fit a JSON reader's double
            "seen": {name: str(offset) for name, offset in self.seen.items()},
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state` (of a suite with the same categories)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported monitor state version {state.get('version')!r}")
        if list(state["groups"]) != list(self.groups):
            raise ValueError(
                "the state was written with other categories; start afresh or restore it "
                "with the configuration that wrote it"
            )
        self.windows.load_state(state["windows"])
        if state["baseline"] is not None:
            self.set_baseline(baseline_from_dict(state["baseline"]))
        elif state["builder"] is not None:
            self.builder.load_state(state["builder"])
        if self.shift is not None and state["shift"] is not None:
            self.shift.load_state(state["shift"])
        self.book.load_state(state["alerts"])
        self.tester.load_state(state, self.baseline)
        self.counters = Counters.from_state(state["counters"])
        # absent in a state saved before duplicates were recognised: nothing is skipped
        self.seen = {str(k): int(v) for k, v in state.get("seen", {}).items()}
