"""Small in-process stand-ins shared by the unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from stream.events import Alert, ReviewEvent, ScoredReview
from stream.pipeline import Prediction, ScoringResult
from stream.settings import ReviewSettings, Settings

__all__ = ["NeutralScorer", "NoMonitor", "Sleeps", "offline_review_settings"]


def offline_review_settings(tmp_path: Path, categories: Sequence[str], **more: Any) -> Settings:
    """Settings with the review loop on, its store under ``tmp_path`` and a Label Studio
    address nothing answers: for tests that never let the loop call it."""
    return Settings(
        lake_path=str(tmp_path / "lake"),
        categories=tuple(categories),
        review=ReviewSettings(
            enabled=True,
            token="t",  # noqa: S106 - no server is called
            state_path=tmp_path / "review.sqlite",
            url="http://127.0.0.1:9",
        ),
        **more,
    )


class Sleeps:
    """An async ``sleep`` that records each delay asked for and only yields to the loop."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


class NeutralScorer:
    """Scores every review neutral (0.2/0.6/0.2), model ``m`` version ``1``, in 1 ms."""

    async def score(self, events: Sequence[ReviewEvent]) -> ScoringResult:
        return ScoringResult([Prediction(0, 0.2, 0.6, 0.2) for _ in events], "m", "1", 1.0)


class NoMonitor:
    """A monitor that never alerts."""

    def observe(self, batch: Sequence[ScoredReview], now: datetime) -> list[Alert]:
        return []
