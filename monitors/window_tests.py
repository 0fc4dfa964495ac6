"""The tumbling windows under test: accumulate after the baseline, evaluate when they close.

:class:`WindowTester` keeps one :class:`~monitors.evaluation.WindowAccumulator` per open
tumbling window, evaluates a window once the watermark closes it (or once it holds
``max_window_events``), and carries a window under ``min_count`` events into the next. Each
alert family spends ``false_alarm_rate * n / horizon_events`` on a window of ``n`` events, so
over ``horizon_events`` events (whatever the window sizes) its false alarms stay within budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from monitors._stats import IntArray
from monitors.baseline import Baseline
from monitors.evaluation import WindowAccumulator, WindowReport, WindowTests, evaluate_window
from monitors.features import BatchFeatures
from monitors.windows import from_us

__all__ = ["EvaluatedWindow", "TestLevels", "WindowTester"]


@dataclass(frozen=True, slots=True)
class TestLevels:
    """The window tests' budget and floors (plain values of the suite's config)."""

    false_alarm_rate: float
    horizon_events: int
    min_count: int
    max_window_events: int
    min_psi: float
    min_share_change: float
    min_accuracy_drop: float
    confidence: float

    def for_window(self, n: int) -> WindowTests:
        """Levels for a window of ``n`` events."""
        return WindowTests(
            alpha=self.false_alarm_rate * min(1.0, n / self.horizon_events),
            min_count=self.min_count,
            min_psi=self.min_psi,
            min_share_change=self.min_share_change,
            min_accuracy_drop=self.min_accuracy_drop,
            confidence=self.confidence,
        )


@dataclass(frozen=True, slots=True)
class EvaluatedWindow:
    """A window's report with the span of its events."""

    report: WindowReport
    start: datetime
    end: datetime


class WindowTester:
    """Open windows, the under-filled carry, and the last report (see module doc)."""

    def __init__(self, levels: TestLevels, groups: Sequence[str], tumbling_us: int) -> None:
        self.levels = levels
        self.groups = tuple(groups)
        self.tumbling_us = tumbling_us
        self.open: dict[int, WindowAccumulator] = {}
        self.carry: WindowAccumulator | None = None
        self.last_report: WindowReport | None = None
        self.evaluations = 0

    def add(self, f: BatchFeatures, group: IntArray, baseline: Baseline) -> list[EvaluatedWindow]:
        """Accumulate accepted events; evaluates the windows that reach ``max_window_events``."""
        out: list[EvaluatedWindow] = []
        widx = np.floor_divide(f.t_us, self.tumbling_us)
        keys = np.unique(widx)
        width = self.tumbling_us
        for k in keys.tolist():
            part, g = (f, group) if keys.size == 1 else (f.take(widx == k), group[widx == k])
            acc = self.open.get(k)
            if acc is None:
                acc = WindowAccumulator(baseline, len(self.groups), k * width, (k + 1) * width)
                self.open[k] = acc
            acc.add(part, g, baseline)
            if acc.n >= self.levels.max_window_events:
                del self.open[k]
                out += self._evaluate(acc, baseline)
        return out

    def close(self, closed_until: int | None, baseline: Baseline) -> list[EvaluatedWindow]:
        """Evaluate the open windows with an index below ``closed_until``, oldest first."""
        if closed_until is None:
            return []
        out: list[EvaluatedWindow] = []
        for k in sorted(k for k in self.open if k < closed_until):
            out += self._evaluate(self.open.pop(k), baseline)
        return out

    def _evaluate(self, acc: WindowAccumulator, baseline: Baseline) -> list[EvaluatedWindow]:
        if self.carry is not None:
            self.carry.merge(acc)
            acc, self.carry = self.carry, None
        if acc.n < self.levels.min_count:
            self.carry = acc
            return []
        report = evaluate_window(acc, baseline, self.groups, self.levels.for_window(acc.n))
        self.last_report = report
        self.evaluations += 1
        start = from_us(acc.first_event if acc.first_event is not None else acc.start_us)
        end = from_us(acc.last_event if acc.last_event is not None else acc.end_us)
        return [EvaluatedWindow(report, start, end)]

    # -- state -----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The open windows, the carry and the evaluation count, JSON-able."""
        return {
            "windows_open": {str(k): a.state() for k, a in sorted(self.open.items())},
            "carry": None if self.carry is None else self.carry.state(),
            "evaluations": self.evaluations,
        }

    def load_state(self, state: Mapping[str, Any], baseline: Baseline | None) -> None:
        """Continue from :meth:`state` (windows are kept only once there is a baseline)."""
        self.evaluations = int(state["evaluations"])
        if baseline is None:
            return
        n = len(self.groups)
        self.open = {
            int(k): WindowAccumulator.from_state(a, baseline, n)
            for k, a in state["windows_open"].items()
        }
        carry = state["carry"]
        self.carry = None if carry is None else WindowAccumulator.from_state(carry, baseline, n)
