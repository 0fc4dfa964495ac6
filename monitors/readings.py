"""Prometheus readings and alert episodes, without Prometheus.

:class:`Reading` is one sample (the app's collector turns readings into metric families);
:class:`AlertBook` turns detector transitions into :class:`stream.events.Alert` objects with an
``alert_id`` that is stable for the whole episode, ``f"{name}:{category}:{start}"`` (plus
``:{subject}``, e.g. the feature, where one alert name covers several subjects).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from stream.events import Alert, Severity

__all__ = ["OTHER", "AlertBook", "Reading", "category_label"]

OTHER = "other"


@dataclass(frozen=True, slots=True)
class Reading:
    """One Prometheus sample: ``sentiment_`` names, base units, ratios in [0, 1]."""

    name: str
    documentation: str
    kind: Literal["gauge", "counter"]
    labels: Mapping[str, str]
    value: float


def category_label(category: str, allowed: Collection[str]) -> str:
    """``category`` if on the allow-list, else ``"other"`` (labels stay a bounded set)."""
    return category if category in allowed else OTHER


class AlertBook:
    """Which alert episodes are open, keyed by (name, category, subject)."""

    def __init__(self) -> None:
        self.active: dict[tuple[str, str, str], str] = {}

    def is_active(self, name: str, category: str, subject: str = "") -> bool:
        return (name, category, subject) in self.active

    def fire(
        self,
        name: str,
        category: str,
        *,
        subject: str = "",
        episode_start: datetime,
        window_start: datetime,
        window_end: datetime,
        now: datetime,
        summary: str,
        evidence: Mapping[str, Any],
        severity: Severity,
    ) -> Alert | None:
        """A firing alert, or None when this episode is already open."""
        key = (name, category, subject)
        if key in self.active:
            return None
        parts = [name, category, *([subject] if subject else []), episode_start.isoformat()]
        alert_id = ":".join(parts)
        self.active[key] = alert_id
        return Alert(
            alert_id=alert_id,
            name=name,
            status="firing",
            severity=severity,
            category=category,
            summary=summary,
            window_start=window_start,
            window_end=window_end,
            raised_at=now,
            evidence=dict(evidence),
        )

    def resolve(
        self,
        name: str,
        category: str,
        *,
        subject: str = "",
        window_start: datetime,
        window_end: datetime,
        now: datetime,
        summary: str,
        evidence: Mapping[str, Any],
        severity: Severity,
    ) -> Alert | None:
        """The resolving alert of an open episode, or None when none is open."""
        alert_id = self.active.pop((name, category, subject), None)
        if alert_id is None:
            return None
        return Alert(
            alert_id=alert_id,
            name=name,
            status="resolved",
            severity=severity,
            category=category,
            summary=summary,
            window_start=window_start,
            window_end=window_end,
            raised_at=now,
            evidence=dict(evidence),
        )

    def state(self) -> list[list[str]]:
        return [[*key, alert_id] for key, alert_id in sorted(self.active.items())]

    def load_state(self, state: list[list[str]]) -> None:
        self.active = {(a, b, c): d for a, b, c, d in state}
