"""Replay a real reviews CSV as the records a producer would have published.

The file is read by :func:`endpoint.data.read_review_csv` and must be in the course layout
(``sentiment,review_body,product_category``, as in ``../shared/data/reviews.csv``) or the
original Kaggle layout (``Clothing ID, Title, Review Text, Rating, Class Name, ...``); see
that module for how their columns map. The course file has no star rating, so each row gets
a representative rating (-1 -> 1, 0 -> 3, 1 -> 5) that maps back to the same class with
:func:`~stream.events.sentiment_from_rating`: the ground truth round-trips. Kaggle's other
columns travel as unknown fields (``age``, ``recommended``, ``positive_feedback_count``,
``division``, ``department``), which the pipeline keeps but ignores.

Every row becomes a :class:`~stream.synthetic.GeneratedRecord` with channel ``web``, language
``en``, review id ``csv-<row>`` (the 1-based data row of the file, whatever the replay order)
and event times spread like the synthetic generator's (seeded). Rows are never skipped: a row
with an empty text (or category, or product id) is published as it is, as a producer would
have, and carries ``event=None`` and the dead-letter reason the validator gives it
(``invalid_value``; ``oversize_text`` for a text over ``max_text_bytes``; whatever else the
validator refuses). The counts of such rows are therefore visible downstream, in the dead
letters. A file that is not UTF-8 or not CSV raises :class:`ValueError`, naming the line.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from endpoint.data import COURSE_COLUMNS, KAGGLE_COLUMNS, ReviewRow, read_review_csv
from stream.events import DeadLetter, Reason, ReviewEvent, SourcePosition
from stream.synthetic import DEFAULT_START, GeneratedRecord, encode_record, event_times
from stream.validation import decode_event

__all__ = ["COURSE_COLUMNS", "KAGGLE_COLUMNS", "RATING_FOR_SENTIMENT", "read_csv"]

_POSITION: Final = SourcePosition("replay", "csv", "0", 0)

#: A representative star rating per sentiment class of the course file.
RATING_FOR_SENTIMENT: Final[Mapping[int, int]] = {-1: 1, 0: 3, 1: 5}


def read_csv(
    path: str | Path,
    *,
    shuffle: bool = False,
    seed: int = 7,
    limit: int | None = None,
    start: datetime = DEFAULT_START,
    span: timedelta = timedelta(hours=48),
    late_fraction: float = 0.01,
    max_lateness: timedelta = timedelta(minutes=2),
    max_text_bytes: int = 5_000,
) -> Iterator[GeneratedRecord]:
    """Yield one record per data row of the CSV at ``path``.

    ``shuffle`` replays the rows in a seeded random order (file order otherwise); ``limit``
    keeps the first ``limit`` rows of that order. Event times run from ``start`` over ``span``
    in replay order. Raises :class:`ValueError` for a file of neither layout or a row whose
    sentiment or rating is not a number in range, naming the row.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    if max_text_bytes < 1:
        raise ValueError("max_text_bytes must be positive")
    rows = _read_rows(Path(path))
    if shuffle:
        random.Random(seed).shuffle(rows)  # noqa: S311 - a seeded replay order
    if limit is not None:
        rows = rows[:limit]
    times = event_times(
        len(rows),
        random.Random(f"times:{seed}"),  # noqa: S311 - seeded simulation
        start=start,
        span=span,
        late_fraction=late_fraction,
        max_lateness=max_lateness,
    )
    return _records(rows, times, max_text_bytes)


def _records(
    rows: Sequence[ReviewRow], times: Iterator[datetime], max_text_bytes: int
) -> Iterator[GeneratedRecord]:
    for row, when in zip(rows, times, strict=True):
        event = ReviewEvent(
            review_id=f"csv-{row.number}",
            product_id=row.product_id,
            product_category=row.category,
            review_text=row.text,
            channel="web",
            event_time=when,
            rating=_rating(row),
            language="en",
            extra=row.extra,
        )
        value = encode_record(event.to_json_dict())
        reason = _expected_reason(value, when, max_text_bytes)
        yield GeneratedRecord(
            key=row.product_id.encode("utf-8"),
            value=value,
            event=event if reason is None else None,
            expected_reason=reason,
        )


def _expected_reason(value: bytes, when: datetime, max_text_bytes: int) -> Reason | None:
    """What the validator says about a row published as is (received at its event time)."""
    out = decode_event(value, _POSITION, when, max_text_bytes=max_text_bytes)
    return out.reason if isinstance(out, DeadLetter) else None


def _read_rows(path: Path) -> list[ReviewRow]:
    """Every data row; a row without a sentiment (or rating) is refused."""
    return read_review_csv(path, layouts=(COURSE_COLUMNS, KAGGLE_COLUMNS), labelled=True).rows


def _rating(row: ReviewRow) -> int:
    """The row's rating, else the representative one of its sentiment class."""
    if row.rating is not None:
        return row.rating
    if row.sentiment is None:  # not from read_review_csv(labelled=True)
        raise ValueError(f"row {row.number}: no sentiment or rating")
    return RATING_FOR_SENTIMENT[row.sentiment]
