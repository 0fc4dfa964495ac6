"""Replay a real reviews CSV as the records a producer would have published.

Two layouts are recognised from the header:

* the course layout (``sentiment,review_body,product_category``), as in
  ``../shared/data/reviews.csv``: ``sentiment`` is -1, 0 or 1 and there is no star rating, so
  each row gets a representative rating (-1 -> 1, 0 -> 3, 1 -> 5) that maps back to the same
  class with :func:`~stream.events.sentiment_from_rating`: the ground truth round-trips. There
  is no product id either; ``product_id`` is the category as a slug (``class-fine-gauge``);
* the original "Women's E-Commerce Clothing Reviews" file (``Clothing ID, Age, Title, Review
  Text, Rating, Recommended IND, Positive Feedback Count, Division Name, Department Name, Class
  Name``, with or without its leading unnamed index column): ``Clothing ID`` -> ``product_id``,
  ``Class Name`` -> ``product_category``, ``Rating`` -> ``rating``, ``Title`` and ``Review
  Text`` -> ``review_text``. The other columns travel as unknown fields (``age``,
  ``recommended``, ``positive_feedback_count``, ``division``, ``department``), which the
  pipeline keeps but ignores.

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

import csv
import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from stream.events import DeadLetter, Reason, ReviewEvent, SourcePosition
from stream.synthetic import DEFAULT_START, GeneratedRecord, encode_record, event_times
from stream.validation import decode_event

__all__ = ["COURSE_COLUMNS", "KAGGLE_COLUMNS", "RATING_FOR_SENTIMENT", "read_csv"]

#: Columns of the course file (sentiment classes only).
COURSE_COLUMNS: Final = ("sentiment", "review_body", "product_category")
#: Columns of the original Kaggle file that the reader uses.
KAGGLE_COLUMNS: Final = ("Clothing ID", "Title", "Review Text", "Rating", "Class Name")

_POSITION: Final = SourcePosition("replay", "csv", "0", 0)

#: A representative star rating per sentiment class of the course file.
RATING_FOR_SENTIMENT: Final[Mapping[int, int]] = {-1: 1, 0: 3, 1: 5}

_KAGGLE_EXTRA: Final[tuple[tuple[str, str, Callable[[str], Any]], ...]] = (
    ("Age", "age", int),
    ("Recommended IND", "recommended", lambda v: v.strip() == "1"),
    ("Positive Feedback Count", "positive_feedback_count", int),
    ("Division Name", "division", str),
    ("Department Name", "department", str),
)


@dataclass(frozen=True, slots=True)
class _Row:
    number: int  # 1-based data row in the file
    product_id: str
    category: str
    text: str
    rating: int
    extra: Mapping[str, Any]


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
    rows: Sequence[_Row], times: Iterator[datetime], max_text_bytes: int
) -> Iterator[GeneratedRecord]:
    for row, when in zip(rows, times, strict=True):
        event = ReviewEvent(
            review_id=f"csv-{row.number}",
            product_id=row.product_id,
            product_category=row.category,
            review_text=row.text,
            channel="web",
            event_time=when,
            rating=row.rating,
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


def _read_rows(path: Path) -> list[_Row]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        try:
            columns = set(reader.fieldnames or ())
            if columns.issuperset(COURSE_COLUMNS):
                return [_course_row(n, r) for n, r in enumerate(reader, start=1)]
            if columns.issuperset(KAGGLE_COLUMNS):
                return [_kaggle_row(n, r) for n, r in enumerate(reader, start=1)]
        except (csv.Error, UnicodeDecodeError) as err:  # a field over csv's limit, not UTF-8
            raise ValueError(f"{path}: line {reader.line_num}: {err}") from None
    raise ValueError(
        f"{path}: expected the columns {', '.join(COURSE_COLUMNS)} or the Kaggle columns "
        f"{', '.join(KAGGLE_COLUMNS)}; found {', '.join(sorted(columns)) or 'none'}"
    )


def _int(value: str | None, what: str, number: int) -> int:
    try:
        return int((value or "").strip())
    except ValueError:
        raise ValueError(f"row {number}: {what} {value!r} is not an integer") from None


def _course_row(number: int, row: Mapping[str, str | None]) -> _Row:
    sentiment = _int(row["sentiment"], "sentiment", number)
    if sentiment not in RATING_FOR_SENTIMENT:
        raise ValueError(f"row {number}: sentiment must be -1, 0 or 1, got {sentiment}")
    category = (row["product_category"] or "").strip()
    slug = re.sub(r"[^a-z0-9]+", "-", category.lower()).strip("-")
    return _Row(
        number=number,
        product_id=f"class-{slug}" if slug else "",
        category=category,
        text=(row["review_body"] or "").strip(),
        rating=RATING_FOR_SENTIMENT[sentiment],
        extra={},
    )


def _kaggle_row(number: int, row: Mapping[str, str | None]) -> _Row:
    rating = _int(row["Rating"], "Rating", number)
    if not 1 <= rating <= 5:
        raise ValueError(f"row {number}: Rating must be 1..5, got {rating}")
    title = (row["Title"] or "").strip()
    body = (row["Review Text"] or "").strip()
    if title and body:
        text = f"{title} {body}" if title[-1] in ".!?" else f"{title}. {body}"
    else:
        text = title or body
    extra: dict[str, Any] = {}
    for column, name, convert in _KAGGLE_EXTRA:
        raw = (row.get(column) or "").strip()
        if raw:
            try:
                extra[name] = convert(raw)
            except ValueError:
                extra[name] = raw
    return _Row(
        number=number,
        product_id=(row["Clothing ID"] or "").strip(),
        category=(row["Class Name"] or "").strip(),
        text=text,
        rating=rating,
        extra=extra,
    )
