"""A scored micro-batch of given events for tests that need one and not a model: every review
the same verdict, at offsets 0, 1, ... of partition 0 of ``reviews``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

from stream.events import ReviewEvent, ScoredBatch, SourcePosition

__all__ = ["even_batch"]


def even_batch(
    events: Sequence[ReviewEvent], *, scored_at: datetime, model: tuple[str, str] = ("m", "1")
) -> ScoredBatch:
    """``events`` scored neutral with probabilities 1/3 each, by ``model`` at ``scored_at``."""
    n = len(events)
    return ScoredBatch.from_predictions(
        events,
        [SourcePosition("kafka", "reviews", "0", i) for i in range(n)],
        np.zeros(n, np.int8),
        np.full((n, 3), 1 / 3, np.float32),
        model=model,
        scored_at=scored_at,
        latency_ms=1.0,
    )
