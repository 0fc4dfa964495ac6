"""The one review CSV reader (endpoint.data) that training, replay and the monitors' commands
share: each layout's columns, labels, whole numbers and refusals, with exact values."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from endpoint.data import COURSE_COLUMNS, KAGGLE_COLUMNS, ReviewRow, read_review_csv


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_course_layout(tmp_path: Path) -> None:
    text = "sentiment,review_body,product_category\n1, love it ,Fine gauge\n-1,,Knits\n"
    data = read_review_csv(write(tmp_path / "c.csv", text))
    assert data.columns == COURSE_COLUMNS
    assert not data.kaggle and data.labelled and data.rating_column is None
    assert data.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert data.source == "c.csv"
    assert data.rows == [
        ReviewRow(
            number=1,
            text="love it",
            body="love it",
            category="Fine gauge",
            product_id="class-fine-gauge",
            sentiment=1,
            rating=None,
            channel="",
            extra={},
            cells={"sentiment": "1", "review_body": " love it ", "product_category": "Fine gauge"},
        ),
        ReviewRow(
            number=2,
            text="",
            body="",
            category="Knits",
            product_id="class-knits",
            sentiment=-1,
            rating=None,
            channel="",
            extra={},
            cells={"sentiment": "-1", "review_body": "", "product_category": "Knits"},
        ),
    ]


def test_kaggle_layout_puts_the_title_first_and_keeps_the_other_columns(tmp_path: Path) -> None:
    header = ",Clothing ID,Age,Title,Review Text,Rating,Recommended IND,Class Name\n"
    path = write(
        tmp_path / "k.csv",
        header + '0,1077,34,Lovely,"Soft, light.",5,1,Dresses\n1,862,n/a,Meh!,Odd fit.,3.0,0,\n',
    )
    data = read_review_csv(path, layouts=(COURSE_COLUMNS, KAGGLE_COLUMNS[2:]), labelled=True)
    assert data.kaggle and data.rating_column == "Rating"
    first, second = data.rows
    assert (first.text, first.body) == ("Lovely. Soft, light.", "Soft, light.")
    assert (first.product_id, first.category, first.rating, first.sentiment) == (
        "1077",
        "Dresses",
        5,
        1,
    )
    assert first.extra == {"age": 34, "recommended": True}
    assert (second.text, second.rating, second.sentiment, second.category) == (
        "Meh! Odd fit.",
        3,
        0,
        "",
    )
    assert second.extra == {"age": "n/a", "recommended": False}


def test_plain_layout_with_rating_and_channel_and_a_byte_order_mark(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.csv",
        "review_text,rating,channel,shop\nGreat,4,app,north\nBad,,web,south\n",
        "utf-8-sig",
    )
    data = read_review_csv(path)
    assert data.columns == ("review_text", "rating", "channel", "shop")
    assert [(r.text, r.rating, r.sentiment, r.channel) for r in data.rows] == [
        ("Great", 4, 1, "app"),
        ("Bad", None, None, "web"),
    ]
    assert [r.cells["shop"] for r in data.rows] == ["north", "south"]
    assert [r.product_id for r in data.rows] == ["", ""]
    with pytest.raises(ValueError, match="row 2: rating '' is not an integer"):
        read_review_csv(path, labelled=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,text\n1,hi\n", "no review text column"),
        ("review_text,sentiment\nhi,2\n", "row 1: sentiment must be -1, 0 or 1, got 2"),
        ("review_text,sentiment\nhi,x\n", "row 1: sentiment 'x' is not an integer"),
        ("review_text,sentiment\nhi,0.5\n", "row 1: sentiment '0.5' is not an integer"),
        ("review_text,Rating\nhi,6\n", r"row 1: Rating must be 1\.\.5, got 6"),
        ("review_text\nhi\n", "no label column"),
        ("", "no review text column"),
    ],
)
def test_refusals_name_the_row(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_review_csv(write(tmp_path / "bad.csv", text), labelled="label" in message)


def test_layouts_and_bytes_are_checked(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "review_text,sentiment\nhi,1\n")
    with pytest.raises(ValueError, match="expected the columns sentiment, review_body"):
        read_review_csv(path, layouts=(("sentiment", "review_body"),))
    bad = tmp_path / "b.csv"
    bad.write_bytes(b"review_text\nfine\n\xff\n")
    with pytest.raises(ValueError, match="line 3"):
        read_review_csv(bad)
