"""The event contract: every malformed input becomes the right dead letter, and the published
JSON Schema agrees with the validator."""

from __future__ import annotations

import dataclasses
import json
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jsonschema
import pytest

from stream.events import (
    CHANNELS,
    EVENT_FIELDS,
    EVENT_WIRE_KEYS,
    SCORED_SCHEMA,
    VERDICT_FIELDS,
    DeadLetter,
    Reason,
    ReviewEvent,
    sentiment_from_rating,
)
from stream.validation import decode_event
from tests.review_docs import NOW, POS, SCHEMA, encode


def good(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": 1,
        "review_id": "r-1",
        "product_id": "p-9",
        "product_category": "Dresses",
        "review_text": "Love this dress, fits perfectly.",
        "channel": "web",
        "event_time": "2026-01-01T10:00:00Z",
        "rating": 5,
        "language": "en",
        "customer_segment": "loyal",
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not ...}


def decode(raw: bytes, limit: int = 5000) -> ReviewEvent | DeadLetter:
    return decode_event(raw, POS, NOW, max_text_bytes=limit)


def test_valid_event_decodes_every_field() -> None:
    ev = decode(encode(good(extra_field={"a": 1})))
    assert ev == ReviewEvent(
        review_id="r-1",
        product_id="p-9",
        product_category="Dresses",
        review_text="Love this dress, fits perfectly.",
        channel="web",
        event_time=datetime(2026, 1, 1, 10, tzinfo=UTC),
        rating=5,
        language="en",
        customer_segment="loyal",
        extra={"extra_field": {"a": 1}},
    )
    assert ev.true_sentiment == 1


def test_optional_fields_may_be_absent_and_offsets_become_utc() -> None:
    doc = good(rating=..., language=..., customer_segment=..., schema_version=...)
    doc["event_time"] = "2026-01-01T12:30:00+02:00"
    ev = decode(encode(doc))
    assert isinstance(ev, ReviewEvent)
    assert ev.rating is None and ev.true_sentiment is None
    assert ev.event_time == datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
    assert ev.event_time.tzinfo == UTC


def test_wire_form_round_trips() -> None:
    ev = decode(encode(good(extra_field=3)))
    assert isinstance(ev, ReviewEvent)
    again = decode(encode(ev.to_json_dict()))
    assert again == ev


CASES: list[tuple[str, bytes, Reason, str]] = [
    ("bad utf-8", b'{"review_id": "\xff\xfe"}', Reason.BAD_UTF8, "not valid UTF-8 at byte 15"),
    ("truncated json", b'{"review_id": "r-1", ', Reason.NOT_JSON, "not JSON"),
    ("empty", b"", Reason.NOT_JSON, "not JSON"),
    ("array", b"[1, 2]", Reason.NOT_OBJECT, "expected a JSON object, got list"),
    ("number", b"42", Reason.NOT_OBJECT, "expected a JSON object, got int"),
    (
        "version",
        encode(good(schema_version=2)),
        Reason.UNSUPPORTED_VERSION,
        "schema_version 2 is not supported",
    ),
    (
        "missing id",
        encode(good(review_id=...)),
        Reason.MISSING_FIELD,
        "review_id is required",
    ),
    (
        "null text",
        encode(good(review_text=None)),
        Reason.MISSING_FIELD,
        "review_text is required",
    ),
    (
        "missing time",
        encode(good(event_time=...)),
        Reason.MISSING_FIELD,
        "event_time is required",
    ),
    (
        "numeric product",
        encode(good(product_id=123)),
        Reason.WRONG_TYPE,
        "product_id must be a string, got integer",
    ),
    (
        "string rating",
        encode(good(rating="five")),
        Reason.WRONG_TYPE,
        "rating must be an integer, got string",
    ),
    (
        "bool rating",
        encode(good(rating=True)),
        Reason.WRONG_TYPE,
        "rating must be an integer, got boolean",
    ),
    (
        "numeric time",
        encode(good(event_time=1767261600)),
        Reason.WRONG_TYPE,
        "event_time must be a string, got integer",
    ),
    (
        "list language",
        encode(good(language=["en"])),
        Reason.WRONG_TYPE,
        "language must be a string, got array",
    ),
    ("rating 7", encode(good(rating=7)), Reason.INVALID_VALUE, "rating must be 1..5, got 7"),
    (
        "channel",
        encode(good(channel="fax")),
        Reason.INVALID_VALUE,
        "channel 'fax' is not one of web, app, email, chat, call, social, partner",
    ),
    ("blank text", encode(good(review_text="  ")), Reason.INVALID_VALUE, "review_text is empty"),
    (
        "blank category",
        encode(good(product_category="")),
        Reason.INVALID_VALUE,
        "product_category must be 1..256 characters",
    ),
    (
        "oversize",
        encode(good(review_text="é" * 2501)),
        Reason.OVERSIZE_TEXT,
        "review_text is 5002 bytes, limit is 5000",
    ),
    (
        "words",
        encode(good(event_time="yesterday")),
        Reason.BAD_TIMESTAMP,
        "event_time 'yesterday' is not RFC 3339",
    ),
    (
        "naive",
        encode(good(event_time="2026-01-01T10:00:00")),
        Reason.BAD_TIMESTAMP,
        "event_time '2026-01-01T10:00:00' is not RFC 3339",
    ),
    (
        "naive with fraction",
        encode(good(event_time="2026-01-01T10:00:00.123456")),
        Reason.BAD_TIMESTAMP,
        "event_time '2026-01-01T10:00:00.123456' has no UTC offset",
    ),
    (
        "date only",
        encode(good(event_time="2026-01-01")),
        Reason.BAD_TIMESTAMP,
        "event_time '2026-01-01' is not RFC 3339",
    ),
    (
        "month 13",
        encode(good(event_time="2026-13-01T10:00:00Z")),
        Reason.BAD_TIMESTAMP,
        "event_time '2026-13-01T10:00:00Z' is not RFC 3339",
    ),
]


@pytest.mark.parametrize(
    ("raw", "reason", "detail"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_input_becomes_a_dead_letter(raw: bytes, reason: Reason, detail: str) -> None:
    out = decode(raw)
    assert isinstance(out, DeadLetter)
    assert out.reason is reason
    assert out.detail.startswith(detail)
    assert out.raw == raw and out.position == POS and out.received_at == NOW


def test_text_limit_is_configurable_and_counts_bytes() -> None:
    raw = encode(good(review_text="ü" * 50))  # 100 bytes
    assert isinstance(decode(raw, limit=100), ReviewEvent)
    out = decode(raw, limit=99)
    assert isinstance(out, DeadLetter) and out.reason is Reason.OVERSIZE_TEXT


def test_deeply_nested_json_is_a_dead_letter_not_a_crash() -> None:
    out = decode(b"[" * 100_000 + b"]" * 100_000)
    assert isinstance(out, DeadLetter)
    assert out.reason in (Reason.NOT_JSON, Reason.NOT_OBJECT)


# Bytes-level failures and the consumer's size limit are not expressible in JSON Schema.
SCHEMA_CASES = [
    c for c in CASES if c[2] not in (Reason.BAD_UTF8, Reason.NOT_JSON, Reason.OVERSIZE_TEXT)
]


@pytest.mark.parametrize(
    ("raw", "reason", "detail"), [c[1:] for c in SCHEMA_CASES], ids=[c[0] for c in SCHEMA_CASES]
)
def test_published_schema_rejects_what_the_validator_rejects(
    raw: bytes, reason: Reason, detail: str
) -> None:
    doc = json.loads(raw)
    checker = jsonschema.Draft202012Validator(
        SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = list(checker.iter_errors(doc))
    if reason is Reason.BAD_TIMESTAMP and not errors:
        pytest.fail(f"schema accepted {doc['event_time']!r}")
    assert errors, f"schema accepted a record the validator rejects as {reason}"


def test_published_schema_accepts_valid_events() -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(good())
    jsonschema.Draft202012Validator(SCHEMA).validate(
        good(rating=..., language=..., customer_segment=..., schema_version=..., other=1)
    )
    assert SCHEMA["properties"]["channel"]["enum"] == list(CHANNELS)


_JSON_TYPES = {str: "string", int: "integer", float: "number", datetime: "string"}


def test_declared_fields_are_the_published_schema() -> None:
    props = SCHEMA["properties"]
    assert set(props) == EVENT_WIRE_KEYS == {"schema_version", *(f.name for f in EVENT_FIELDS)}
    assert SCHEMA["required"] == [f.name for f in EVENT_FIELDS if f.required]
    for f in EVENT_FIELDS:
        prop = props[f.name]
        if "type" not in prop:  # channel: an enumeration of strings
            assert f.py_type is str and all(isinstance(v, str) for v in prop["enum"])
            continue
        types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        assert _JSON_TYPES[f.py_type] in types, f.name
        assert ("null" in types) == (not f.required), f.name
        assert (prop.get("format") == "date-time") == (f.py_type is datetime), f.name


def test_declared_fields_are_the_event_dataclass_that_msgspec_decodes_into() -> None:
    # The typed fast path converts straight into ReviewEvent: its fields, in order, are the
    # declared ones (then ``extra``), with the declared types.
    fields = dataclasses.fields(ReviewEvent)
    assert [f.name for f in fields] == [f.name for f in EVENT_FIELDS] + ["extra"]
    hints = typing.get_type_hints(ReviewEvent)
    for spec in EVENT_FIELDS:
        assert hints[spec.name] == (spec.py_type if spec.required else spec.py_type | None)
    assert [f.name for f in SCORED_SCHEMA][: len(EVENT_FIELDS)] == [f.name for f in EVENT_FIELDS]
    assert [f.nullable for f in SCORED_SCHEMA] == [
        not f.required for f in (*EVENT_FIELDS, *VERDICT_FIELDS)
    ]


def test_unknown_fields_are_exactly_the_keys_outside_the_declaration() -> None:
    doc = good(**{"x": 1, "sentiment": 2})
    ev = decode(encode(doc))
    assert isinstance(ev, ReviewEvent)
    assert ev.extra == {"x": 1, "sentiment": 2}
    assert set(ev.to_json_dict()) == EVENT_WIRE_KEYS | {"x", "sentiment"}
    assert ReviewEvent.from_json_dict(ev.to_json_dict()) == ev


@pytest.mark.parametrize(("rating", "expected"), [(1, -1), (2, -1), (3, 0), (4, 1), (5, 1)])
def test_sentiment_from_rating(rating: int, expected: int) -> None:
    assert sentiment_from_rating(rating) == expected


@pytest.mark.parametrize("rating", [0, 6])
def test_sentiment_from_rating_rejects_out_of_range(rating: int) -> None:
    with pytest.raises(ValueError, match=r"rating must be 1\.\.5"):
        sentiment_from_rating(rating)


def test_positions_order_and_offsets_other_than_utc() -> None:
    tz = timezone(timedelta(hours=-5))
    ev = decode(encode(good(event_time=datetime(2026, 1, 1, 5, tzinfo=tz).isoformat())))
    assert isinstance(ev, ReviewEvent)
    assert ev.event_time == datetime(2026, 1, 1, 10, tzinfo=UTC)
