"""Rows and batches for the lake tests: a scored review with fixed scores, and the newest source
position of each partition among some rows."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from stream.events import DeadLetter, ReviewEvent, ScoredReview, SourcePosition

__all__ = ["T", "latest_positions", "scored_review"]

T = datetime(2026, 3, 4, 12, tzinfo=UTC)


def scored_review(
    offset: int,
    category: str,
    *,
    review_id: str | None = None,
    partition: str = "0",
    topic: str = "t",
) -> ScoredReview:
    """A positive review (0.1/0.2/0.7) of ``category`` read at ``offset``, event and score at
    :data:`T`; its id is ``r-<offset>`` unless given."""
    ev = ReviewEvent(
        review_id=f"r-{offset}" if review_id is None else review_id,
        product_id="p",
        product_category=category,
        review_text="ok",
        channel="web",
        event_time=T,
    )
    pos = SourcePosition("kafka", topic, partition, offset)
    return ScoredReview(ev, 1, 0.1, 0.2, 0.7, "m", "1", T, 2.0, pos)


def latest_positions(
    rows: Iterable[ScoredReview | DeadLetter],
) -> dict[tuple[str, str, str], SourcePosition]:
    """The highest position of each source partition among ``rows``."""
    positions: dict[tuple[str, str, str], SourcePosition] = {}
    for r in rows:
        prev = positions.get(r.position.key)
        if prev is None or prev.offset < r.position.offset:
            positions[r.position.key] = r.position
    return positions
