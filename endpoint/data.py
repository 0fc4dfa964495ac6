"""The one reader of review CSV files, for training, replay and the monitors' commands.

Layouts, recognised from the header:

* the course layout (``sentiment, review_body, product_category``), as in
  ``../shared/data/reviews.csv``: ``sentiment`` is -1, 0 or 1; there is no product id, so
  :attr:`ReviewRow.product_id` is the category as a slug (``class-fine-gauge``);
* the original "Women's E-Commerce Clothing Reviews" file (``Clothing ID, Age, Title, Review
  Text, Rating, Recommended IND, Positive Feedback Count, Division Name, Department Name, Class
  Name``, with or without its leading unnamed index column): ``Clothing ID`` is the product id,
  ``Class Name`` the category, ``Rating`` the rating; the text is the ``Title`` before the
  ``Review Text``; ``Age``, ``Recommended IND``, ``Positive Feedback Count``, ``Division Name``
  and ``Department Name`` are kept as :attr:`ReviewRow.extra` (``age``, ``recommended``, ...);
* any file with a ``review_text`` (or ``review_body``) column and optionally ``sentiment``
  (-1/0/1), ``rating`` (1-5), ``product_category`` and ``channel``.

Every data row becomes a :class:`ReviewRow` (rows without text too: what to do with them is
the caller's choice). Whole numbers may be written ``3`` or ``3.0``; an empty cell is no value.
Anything else (a file that is not UTF-8 or not CSV, a label out of range) raises
:class:`ValueError` naming the line or the data row.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = ["COURSE_COLUMNS", "KAGGLE_COLUMNS", "ReviewCsv", "ReviewRow", "read_review_csv"]

#: Columns of the course file (sentiment classes only).
COURSE_COLUMNS: Final = ("sentiment", "review_body", "product_category")
#: Columns of the original Kaggle file that identify a review.
KAGGLE_COLUMNS: Final = ("Clothing ID", "Title", "Review Text", "Rating", "Class Name")

_KAGGLE_EXTRA: Final[tuple[tuple[str, str, Callable[[str], Any]], ...]] = (
    ("Age", "age", int),
    ("Recommended IND", "recommended", lambda v: v.strip() == "1"),
    ("Positive Feedback Count", "positive_feedback_count", int),
    ("Division Name", "division", str),
    ("Department Name", "department", str),
)


@dataclass(frozen=True, slots=True)
class ReviewRow:
    """One data row. ``sentiment`` is the ``sentiment`` column, else follows from the rating
    (1-2 -> -1, 3 -> 0, 4-5 -> 1), else None; ``rating`` is the rating column's (None without
    one); strings are stripped, ``""`` where the file has none. ``body`` is the review text
    alone (Kaggle's ``Review Text``); ``text`` is what a producer publishes (the title first).
    ``cells`` holds every column as written."""

    number: int  #: 1-based data row of the file
    text: str
    body: str
    category: str
    product_id: str
    sentiment: int | None
    rating: int | None
    channel: str
    extra: Mapping[str, Any]
    cells: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ReviewCsv:
    """The rows of a review CSV, its header, layout and the SHA-256 of its bytes."""

    rows: list[ReviewRow]
    columns: tuple[str, ...]
    kaggle: bool
    sha256: str
    source: str

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def rating_column(self) -> str | None:
        return next((c for c in ("rating", "Rating") if c in self.columns), None)

    @property
    def labelled(self) -> bool:
        """Whether the file has a label column (``sentiment`` or a rating)."""
        return "sentiment" in self.columns or self.rating_column is not None


def read_review_csv(
    path: str | Path, *, layouts: Sequence[Sequence[str]] = (), labelled: bool = False
) -> ReviewCsv:
    """Read the review CSV at ``path`` (see the module docstring).

    ``layouts``: the file must have every column of one of these (else ``ValueError``
    naming them); ``labelled``: every row must have a sentiment (or a rating).
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line}: {err}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        columns = tuple(reader.fieldnames or ())
        cells = [{k: v or "" for k, v in r.items() if k is not None} for r in reader]
    except csv.Error as err:  # a field over csv's limit, a NUL byte
        raise ValueError(f"{path}: line {reader.line_num}: {err}") from None
    names = set(columns)
    if layouts and not any(names.issuperset(layout) for layout in layouts):
        wanted = "; or ".join(", ".join(layout) for layout in layouts)
        raise ValueError(
            f"{path}: expected the columns {wanted}; found {', '.join(columns) or 'none'}"
        )
    kaggle = "Review Text" in names
    if not kaggle and not {"review_text", "review_body"} & names:
        raise ValueError(
            f"{path}: no review text column (review_text, review_body or Kaggle's Review Text);"
            f" found {', '.join(columns) or 'none'}"
        )
    out = ReviewCsv([], columns, kaggle, hashlib.sha256(raw).hexdigest(), path.name)
    if labelled and not out.labelled:
        raise ValueError(f"{path}: no label column (sentiment, rating or Kaggle's Rating)")
    for number, row in enumerate(cells, start=1):
        out.rows.append(_row(number, row, out, labelled))
    return out


def _row(number: int, row: dict[str, str], csv_: ReviewCsv, labelled: bool) -> ReviewRow:
    rating_col = csv_.rating_column
    rating = None if rating_col is None else _whole(row[rating_col], rating_col, number)
    if rating is not None and not 1 <= rating <= 5:
        raise ValueError(f"row {number}: {rating_col} must be 1..5, got {rating}")
    sentiment = _whole(row["sentiment"], "sentiment", number) if "sentiment" in row else None
    if sentiment is None and rating is not None:
        sentiment = -1 if rating <= 2 else (0 if rating == 3 else 1)
    if sentiment is not None and sentiment not in (-1, 0, 1):
        raise ValueError(f"row {number}: sentiment must be -1, 0 or 1, got {sentiment}")
    if labelled and sentiment is None:
        raise ValueError(f"row {number}: {rating_col or 'sentiment'} '' is not an integer")
    category = row.get("product_category", row.get("Class Name", "")).strip()
    if csv_.kaggle:
        title, body = row.get("Title", "").strip(), row["Review Text"].strip()
        if title and body:
            text = f"{title} {body}" if title[-1] in ".!?" else f"{title}. {body}"
        else:
            text = title or body
        product_id = row.get("Clothing ID", "").strip()
        extra = _kaggle_extra(row)
    else:
        text = body = (row.get("review_text") or row.get("review_body") or "").strip()
        slug = re.sub(r"[^a-z0-9]+", "-", category.lower()).strip("-")
        product_id = f"class-{slug}" if slug else ""
        extra = {}
    return ReviewRow(
        number=number,
        text=text,
        body=body,
        category=category,
        product_id=product_id,
        sentiment=sentiment,
        rating=rating,
        channel=row.get("channel", "").strip(),
        extra=extra,
        cells=row,
    )


def _kaggle_extra(row: Mapping[str, str]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for column, name, convert in _KAGGLE_EXTRA:
        raw = row.get(column, "").strip()
        if raw:
            try:
                extra[name] = convert(raw)
            except ValueError:
                extra[name] = raw
    return extra


def _whole(value: str, what: str, number: int) -> int | None:
    """A whole number written ``3`` or ``3.0``; None for an empty cell."""
    value = value.strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        parsed = float(value)
    except ValueError:
        parsed = math.nan
    if not parsed.is_integer():
        raise ValueError(f"row {number}: {what} {value!r} is not an integer")
    return int(parsed)
