"""A simple sentiment-shift rule: per category, blocks of consecutive reviews tested against
the baseline negative share with a one-sided binomial test (Bonferroni over categories).

Kept as a minimal reference monitor; :class:`monitors.suite.MonitorSuite` is the full one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scipy.stats import binomtest

from stream.events import Alert, ScoredReview, Severity

__all__ = ["SimpleShiftRule"]


@dataclass(slots=True)
class _Block:
    n: int = 0
    negatives: int = 0
    start: datetime | None = None
    end: datetime | None = None
    ids: list[str] = field(default_factory=list)


class SimpleShiftRule:
    def __init__(
        self,
        *,
        baseline_events: int = 2000,
        block: int = 150,
        alpha: float = 0.001,
        categories: int = 18,
    ) -> None:
        if baseline_events < 1 or block < 10 or not 0 < alpha < 1 or categories < 1:
            raise ValueError("baseline_events >= 1, block >= 10, 0 < alpha < 1, categories >= 1")
        self._baseline_events = baseline_events
        self._block = block
        self._alpha = alpha / categories
        self._seen = 0
        self._base_neg = 0
        self._blocks: dict[str, _Block] = {}
        self._firing: dict[str, str] = {}

    @property
    def baseline_share(self) -> float:
        return (self._base_neg + 1) / (min(self._seen, self._baseline_events) + 2)

    def observe(self, batch: Sequence[ScoredReview], now: datetime) -> list[Alert]:
        alerts: list[Alert] = []
        for s in batch:
            if self._seen < self._baseline_events:
                self._seen += 1
                self._base_neg += s.sentiment == -1
                continue
            cat = s.event.product_category
            b = self._blocks.setdefault(cat, _Block())
            b.n += 1
            b.negatives += s.sentiment == -1
            b.start = s.event.event_time if b.start is None else min(b.start, s.event.event_time)
            b.end = s.event.event_time if b.end is None else max(b.end, s.event.event_time)
            if s.sentiment == -1 and len(b.ids) < 5:
                b.ids.append(s.event.review_id)
            if b.n >= self._block:
                alert = self._evaluate(cat, b, now)
                if alert is not None:
                    alerts.append(alert)
                self._blocks[cat] = _Block()
        return alerts

    def _evaluate(self, cat: str, b: _Block, now: datetime) -> Alert | None:
        assert b.start is not None and b.end is not None  # noqa: S101 - set with n
        p0 = self.baseline_share
        p = binomtest(b.negatives, b.n, p0, alternative="greater").pvalue
        share = b.negatives / b.n
        if p < self._alpha and cat not in self._firing:
            self._firing[cat] = f"SentimentShift:{cat}:{b.start.isoformat()}"
            status = "firing"
        elif p > 0.1 and cat in self._firing:
            status = "resolved"
        else:
            return None
        alert_id = self._firing[cat]
        if status == "resolved":
            del self._firing[cat]
        return Alert(
            alert_id=alert_id,
            name="SentimentShift",
            status=status,
            severity=Severity.CRITICAL,
            category=cat,
            summary=f"negative share {share:.0%} vs baseline {p0:.0%} in {cat}",
            window_start=b.start,
            window_end=b.end,
            raised_at=now,
            evidence={
                "baseline_share": p0,
                "current_share": share,
                "count": b.n,
                "p_value": float(p),
                "example_review_ids": list(b.ids),
            },
        )

    def readings(self) -> list[Any]:
        return []
