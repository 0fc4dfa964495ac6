"""ScoredBatch: the columnar micro-batch equals the rows it stands for."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.events import (
    EVENT_WIRE_KEYS,
    SCORED_SCHEMA,
    ReviewEvent,
    ScoredBatch,
    ScoredReview,
    SourcePosition,
    scored_table,
)
from tests.scored import even_batch

SCORED_AT = datetime(2024, 5, 2, 12, 0, tzinfo=UTC)


def _batch(n: int = 7) -> ScoredBatch:
    events = [
        ReviewEvent(
            review_id=f"r{i}",
            product_id=f"p{i % 3}",
            product_category=("Dresses", "Fine gauge", "Knits")[i % 3],
            review_text=f"text {i}",
            channel="web",
            event_time=datetime(2024, 5, 1 + i % 2, 23, 59, 59, 999_000, tzinfo=UTC),
            rating=None if i % 4 == 0 else 1 + i % 5,
            language="en" if i % 2 else None,
            extra={"kept": i},
        )
        for i in range(n)
    ]
    positions = [SourcePosition("kafka", "reviews", str(i % 2), 100 + i) for i in range(n)]
    sentiment = np.array([(i % 3) - 1 for i in range(n)], np.int8)
    probs = np.array([[0.5, 0.25, 0.25] if i % 3 == 0 else [0.2, 0.3, 0.5] for i in range(n)])
    return ScoredBatch.from_predictions(
        events,
        positions,
        sentiment,
        probs.astype(np.float32),
        model=("tfidf-lr", "7"),
        scored_at=SCORED_AT,
        latency_ms=12.5,
    )


def test_rows_carry_the_events_and_the_verdict() -> None:
    batch = _batch()
    row = batch[4]
    assert isinstance(row, ScoredReview)
    assert row.event.review_id == "r4"
    assert row.event.extra == {"kept": 4}
    assert row.sentiment == 0
    assert (row.p_negative, row.p_neutral, row.p_positive) == pytest.approx((0.2, 0.3, 0.5))
    assert row.model_name == "tfidf-lr"
    assert row.model_version == "7"
    assert row.scored_at == SCORED_AT
    assert row.endpoint_latency_ms == 12.5
    assert row.position == SourcePosition("kafka", "reviews", "0", 104)
    assert batch[-1].event.review_id == "r6"
    assert [r.event.review_id for r in batch[1:3]] == ["r1", "r2"]
    with pytest.raises(IndexError):
        batch[7]


def test_the_columnar_table_equals_the_table_built_from_rows() -> None:
    batch = _batch()
    table = batch.table
    assert table.schema == SCORED_SCHEMA
    assert table.equals(scored_table(list(batch)))
    assert table.column("dt").to_pylist() == ["2024-05-01", "2024-05-02"] * 3 + ["2024-05-01"]
    assert table.column("sentiment_label").to_pylist()[:3] == ["negative", "neutral", "positive"]
    assert table.column("source_offset").to_pylist()[0] == "100"


def test_a_batch_read_back_from_its_table_gives_the_same_rows_less_unknown_fields() -> None:
    batch = _batch()
    back = ScoredBatch.from_table(batch.table)
    assert len(back) == len(batch)
    assert back.table.equals(batch.table)
    assert back.positions == batch.positions
    for mine, theirs in zip(back, batch, strict=True):
        assert mine.event.extra == {}
        assert mine.event.review_id == theirs.event.review_id
        assert mine.event.event_time == theirs.event.event_time
        assert mine.sentiment == theirs.sentiment
        assert mine.p_positive == pytest.approx(theirs.p_positive)
        assert mine.position == theirs.position


def test_an_empty_row_list_gives_an_empty_table_of_the_lake_schema() -> None:
    assert scored_table([]).num_rows == 0
    assert scored_table([]).schema == SCORED_SCHEMA


def test_mismatched_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="one row each"):
        ScoredBatch.from_predictions(
            [],
            [SourcePosition("replay", "x", "0", 0)],
            np.zeros(0, np.int8),
            np.zeros((0, 3), np.float32),
            model=("m", "1"),
            scored_at=SCORED_AT,
            latency_ms=0.0,
        )


def test_a_batch_of_alerts_alone_is_named_by_its_position() -> None:
    from stream.events import Batch

    at = SourcePosition("kafka", "feed", "0", 41)
    assert Batch([], [], {at.key: at}).first_position == at


def test_the_enriched_json_of_a_batch_equals_its_rows_and_round_trips() -> None:
    batch = _batch()
    values = batch.to_json_values()
    docs = [msgspec.json.decode(v) for v in values]
    rows = list(ScoredBatch.from_table(batch.table))  # float32 verdict, as the batch's JSON
    assert docs[4] == {
        "kept": 4,
        "schema_version": 1,
        "review_id": "r4",
        "product_id": "p1",
        "product_category": "Fine gauge",
        "review_text": "text 4",
        "channel": "web",
        "event_time": "2024-05-01T23:59:59.999000Z",
        "sentiment": 0,
        "sentiment_label": "neutral",
        "probabilities": {
            "negative": pytest.approx(0.2),
            "neutral": pytest.approx(0.3),
            "positive": pytest.approx(0.5),
        },
        "model_name": "tfidf-lr",
        "model_version": "7",
        "scored_at": "2024-05-02T12:00:00+00:00",
        "endpoint_latency_ms": 12.5,
        "source": {"source": "kafka", "stream": "reviews", "partition": "0", "offset": "104"},
    }
    for value, doc, row, original in zip(values, docs, rows, batch, strict=True):
        assert value == msgspec.json.encode({"kept": doc["kept"], **row.to_json_dict()})
        assert list(doc) == list(original.to_json_dict())
        mine = {k: v for k, v in doc.items() if k != "kept"}
        assert mine == row.to_json_dict()
        back = ScoredReview.from_json_dict(doc)
        assert back.event == original.event
        assert back.position == original.position
        assert back.sentiment == original.sentiment
        assert back.scored_at == original.scored_at


def test_the_enriched_json_of_a_batch_read_from_its_table_is_its_rows_json() -> None:
    back = ScoredBatch.from_table(_batch().table)
    assert back.to_json_values() == [msgspec.json.encode(r.to_json_dict()) for r in back]
    assert ScoredBatch.from_table(back.table.slice(0, 0)).to_json_values() == []


def test_a_batch_keeps_an_unknown_field_named_like_a_verdict_key_in_its_place() -> None:
    plain = _batch(3)
    events = list(plain.events)
    events[1] = dataclasses.replace(events[1], extra={"source": 1, "kept": 1, "sentiment": "x"})
    batch = ScoredBatch.from_table(plain.table)
    odd = ScoredBatch.from_predictions(
        events,
        batch.positions,
        np.array([r.sentiment for r in batch], np.int8),
        np.array([[r.p_negative, r.p_neutral, r.p_positive] for r in batch], np.float32),
        model=("tfidf-lr", "7"),
        scored_at=SCORED_AT,
        latency_ms=12.5,
    )
    rows = [dataclasses.replace(r, event=e) for r, e in zip(batch, events, strict=True)]
    values = odd.to_json_values()
    assert values == [msgspec.json.encode(r.to_json_dict()) for r in rows]
    assert list(msgspec.json.decode(values[1]))[:3] == ["source", "kept", "sentiment"]


def test_an_unknown_field_named_like_a_verdict_key_is_replaced_in_place() -> None:
    row = _batch(1)[0]
    odd = dataclasses.replace(row, event=dataclasses.replace(row.event, extra={"source": 1}))
    doc = odd.to_json_dict()
    assert next(iter(doc)) == "source"
    assert doc["source"] == {
        "source": "kafka",
        "stream": "reviews",
        "partition": "0",
        "offset": "100",
    }


_TEXT = st.text(max_size=30)  # UTF-8 text: no lone surrogates
_EVENTS = st.builds(
    ReviewEvent,
    review_id=_TEXT,
    product_id=_TEXT,
    product_category=_TEXT,
    review_text=_TEXT,
    channel=st.sampled_from(["web", "app", "email"]),
    event_time=st.one_of(
        st.datetimes(timezones=st.just(UTC)),
        st.datetimes(timezones=st.just(UTC)).map(lambda t: t.replace(microsecond=0)),
    ),
    rating=st.one_of(st.none(), st.integers(1, 5)),
    language=st.one_of(st.none(), _TEXT),
    customer_segment=st.one_of(st.none(), _TEXT),
    extra=st.dictionaries(
        _TEXT.filter(lambda k: k not in EVENT_WIRE_KEYS),
        st.one_of(st.none(), st.integers(), _TEXT, st.lists(st.integers(), max_size=3)),
        max_size=3,
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_EVENTS, min_size=1, max_size=12))
def test_the_enriched_json_of_a_batch_is_each_rows_json_byte_for_byte(
    events: list[ReviewEvent],
) -> None:
    # the columnar encoding (times formatted a column at a time, one struct a row) against
    # one dict a row: any texts, times in any year, with and without microseconds, optional
    # fields absent or not, unknown fields of any name (a verdict key's too)
    batch = even_batch(events, scored_at=SCORED_AT, model=("tfidf-lr", "7"))
    rows = list(ScoredBatch.from_table(batch.table))
    expected = [
        msgspec.json.encode(dataclasses.replace(r, event=e).to_json_dict())
        for r, e in zip(rows, events, strict=True)
    ]
    assert batch.to_json_values() == expected
