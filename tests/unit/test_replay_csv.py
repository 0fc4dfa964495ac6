"""Replaying real CSV files: the course file beside the checkout, and the Kaggle layout."""

from __future__ import annotations

import csv
import itertools
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stream.events import DeadLetter, Reason, ReviewEvent, SourcePosition, sentiment_from_rating
from stream.replay_csv import RATING_FOR_SENTIMENT, read_csv
from stream.synthetic import DEFAULT_START
from stream.validation import decode_event

REVIEWS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "reviews.csv"
POS = SourcePosition("replay", "test", "0", 0)
#: When the records are decoded: after the last event time (the validator refuses events
#: more than a day ahead of their arrival).
RECEIVED = DEFAULT_START + timedelta(days=3)

needs_reviews = pytest.mark.skipif(
    not REVIEWS.exists(), reason=f"needs the shared review data at {REVIEWS}"
)


def source_rows() -> list[dict[str, str]]:
    with REVIEWS.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@needs_reviews
def test_course_file_replays_every_row_with_its_ground_truth() -> None:
    rows = source_rows()
    recs = list(read_csv(REVIEWS))
    assert len(recs) == len(rows) == 6_000
    for n, (row, rec) in enumerate(zip(rows, recs, strict=True), start=1):
        event = rec.event
        assert event is not None
        assert rec.expected_reason is None
        assert event.review_id == f"csv-{n}"
        assert event.true_sentiment == int(row["sentiment"])
        assert event.review_text == row["review_body"].strip()
        assert event.product_category == row["product_category"]
        assert event.channel == "web"
        assert event.language == "en"
        assert rec.key == event.product_id.encode()
        assert decode_event(rec.value, POS, RECEIVED) == event
    assert Counter(r.event.product_category for r in recs if r.event) == Counter(
        row["product_category"] for row in rows
    )
    assert {r.event.product_id for r in recs if r.event} >= {"class-dresses", "class-fine-gauge"}


def test_representative_ratings_round_trip() -> None:
    for sentiment, rating in RATING_FOR_SENTIMENT.items():
        assert sentiment_from_rating(rating) == sentiment


@needs_reviews
def test_event_times_are_spread_like_the_generator() -> None:
    start = datetime(2026, 5, 1, tzinfo=UTC)
    events = [r.event for r in read_csv(REVIEWS, start=start, span=timedelta(hours=6))]
    times = [e.event_time for e in events if e is not None]
    assert start - timedelta(minutes=2) <= min(times)
    assert max(times) <= start + timedelta(hours=6)
    out_of_order = sum(b < a for a, b in itertools.pairwise(times))
    assert 0 < out_of_order < 0.03 * len(times)


@needs_reviews
def test_shuffle_and_limit_are_seeded() -> None:
    plain = [r.value for r in read_csv(REVIEWS, limit=500)]
    assert len(plain) == 500
    shuffled = [r.value for r in read_csv(REVIEWS, shuffle=True, seed=3, limit=500)]
    assert shuffled == [r.value for r in read_csv(REVIEWS, shuffle=True, seed=3, limit=500)]
    assert shuffled != [r.value for r in read_csv(REVIEWS, shuffle=True, seed=4, limit=500)]
    ids = [json.loads(v)["review_id"] for v in shuffled]
    assert ids != [f"csv-{n}" for n in range(1, 501)]
    # The course file starts with negatives; a shuffled replay has the file's mix throughout.
    head = Counter(json.loads(v)["rating"] for v in shuffled[:300])
    assert all(head[rating] > 50 for rating in RATING_FOR_SENTIMENT.values())
    everything = {r.event.review_id for r in read_csv(REVIEWS, shuffle=True) if r.event}
    assert everything == {f"csv-{n}" for n in range(1, 6_001)}
    assert list(read_csv(REVIEWS, limit=0)) == []


KAGGLE_HEADER = [
    "", "Clothing ID", "Age", "Title", "Review Text", "Rating", "Recommended IND",
    "Positive Feedback Count", "Division Name", "Department Name", "Class Name",
]  # fmt: skip


def write_kaggle(path: Path, rows: list[list[str]], *, index: bool = True) -> Path:
    """A small file in the Kaggle layout, with made-up reviews."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(KAGGLE_HEADER if index else KAGGLE_HEADER[1:])
        for i, row in enumerate(rows):
            writer.writerow([str(i), *row] if index else row)
    return path


KAGGLE_ROWS = [
    ["1077", "34", "Lovely summer dress", "Soft, light and flattering, with pockets.", "5", "1",
     "3", "General", "Dresses", "Dresses"],
    ["862", "51", "", "Runs small, and the fabric is scratchy.", "2", "0", "0",
     "General Petite", "Tops", "Knits"],
    ["1049", "27", "Just ok!", "Nice color, odd fit.", "3", "1", "1", "General", "Bottoms",
     "Pants"],
    ["1081", "45", "Title only", "", "4", "1", "0", "General", "Dresses", "Dresses"],
    ["1110", "39", "", "", "1", "0", "0", "General", "Dresses", "Dresses"],
    ["72", "60", "Cozy", "Warm socks.", "5", "1", "0", "Initmates", "Intimate", ""],
]  # fmt: skip


@pytest.mark.parametrize("index", [True, False])
def test_kaggle_layout_maps_its_columns(tmp_path: Path, index: bool) -> None:
    path = write_kaggle(tmp_path / "kaggle.csv", KAGGLE_ROWS, index=index)
    recs = list(read_csv(path))
    assert len(recs) == len(KAGGLE_ROWS)
    first = recs[0].event
    assert isinstance(first, ReviewEvent)
    assert first.review_id == "csv-1"
    assert first.product_id == "1077"
    assert recs[0].key == b"1077"
    assert first.product_category == "Dresses"
    assert first.rating == 5
    assert first.review_text == "Lovely summer dress. Soft, light and flattering, with pockets."
    assert first.extra == {
        "age": 34, "recommended": True, "positive_feedback_count": 3,
        "division": "General", "department": "Dresses",
    }  # fmt: skip
    assert recs[1].event is not None
    assert recs[1].event.review_text == "Runs small, and the fabric is scratchy."
    assert recs[1].event.true_sentiment == -1
    assert recs[2].event is not None
    assert recs[2].event.review_text == "Just ok! Nice color, odd fit."
    assert recs[3].event is not None
    assert recs[3].event.review_text == "Title only"
    # Published as they are; the validator turns them into dead letters.
    assert [r.expected_reason for r in recs[4:]] == [Reason.INVALID_VALUE] * 2
    for rec in recs:
        out = decode_event(rec.value, POS, RECEIVED)
        if rec.event is None:
            assert isinstance(out, DeadLetter)
            assert out.reason == rec.expected_reason
        else:
            assert out == rec.event


def test_course_layout_rows_without_text_become_dead_letters(tmp_path: Path) -> None:
    path = tmp_path / "course.csv"
    long_text = "so soft " * 400
    path.write_text(
        "sentiment,review_body,product_category\n"
        "1,love it,Dresses\n"
        "0,,Knits\n"
        f"-1,{long_text},Jeans\n"
        "1,great,\n",
        encoding="utf-8",
    )
    recs = list(read_csv(path, max_text_bytes=1_000))
    assert [r.expected_reason for r in recs] == [
        None, Reason.INVALID_VALUE, Reason.OVERSIZE_TEXT, Reason.INVALID_VALUE,
    ]  # fmt: skip
    for rec in recs:
        out = decode_event(rec.value, POS, RECEIVED, max_text_bytes=1_000)
        assert (out == rec.event) if rec.event else (
            isinstance(out, DeadLetter) and out.reason == rec.expected_reason
        )  # fmt: skip


def test_unknown_layouts_and_bad_rows_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("id,text\n1,hello\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected the columns"):
        read_csv(other)
    bad = tmp_path / "bad.csv"
    bad.write_text("sentiment,review_body,product_category\n2,hmm,Dresses\n", encoding="utf-8")
    with pytest.raises(ValueError, match="row 1: sentiment"):
        read_csv(bad)
    bad.write_text("sentiment,review_body,product_category\nx,hmm,Dresses\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not an integer"):
        read_csv(bad)
    rows = [list(KAGGLE_ROWS[0])]
    rows[0][4] = "7"
    with pytest.raises(ValueError, match=r"Rating must be 1\.\.5"):
        read_csv(write_kaggle(tmp_path / "k.csv", rows))
    with pytest.raises(ValueError, match="limit"):
        read_csv(other, limit=-1)
