"""The poison-record policy of the decoder: records that crashed it or could not be stored
become dead letters with the right reason; limits are settings; dead letters stay small."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest

from sinks.lake import encode_dead_letters
from stream.events import DEAD_LETTER_SCHEMA, DeadLetter, Reason, ReviewEvent, SourcePosition
from stream.settings import Settings
from stream.validation import (
    MAX_CATEGORY_BYTES,
    MAX_UNKNOWN_DEPTH,
    DecodeLimits,
    decode_batch,
    decode_event,
)
from tests.review_docs import NOW, POS, SCHEMA, encode


def good(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "review_id": "r-1",
        "product_id": "p-9",
        "product_category": "Dresses",
        "review_text": "Love this dress.",
        "channel": "web",
        "event_time": "2026-01-01T10:00:00Z",
        "rating": 5,
    }
    doc.update(changes)
    return doc


def decode(raw: bytes, limits: DecodeLimits | None = None) -> ReviewEvent | DeadLetter:
    return decode_event(raw, POS, NOW, limits=limits)


def dead(raw: bytes, limits: DecodeLimits | None = None) -> DeadLetter:
    out = decode(raw, limits)
    assert isinstance(out, DeadLetter), out
    return out


# -- what used to crash the decoder -------------------------------------------------------------


def test_an_integer_of_more_than_4300_digits_is_not_json() -> None:
    raw = encode(good()).replace(b'"rating": 5', b'"rating": ' + b"9" * 5_000)
    out = dead(raw)
    assert out.reason is Reason.NOT_JSON
    assert out.detail.startswith("not JSON: Integer value out of range")
    extra = encode(good()).replace(b"{", b'{"n": ' + b"1" * 4_301 + b", ", 1)
    assert dead(extra).reason is Reason.NOT_JSON


def test_a_huge_rating_within_python_limits_is_named_briefly() -> None:
    raw = encode(good()).replace(b'"rating": 5', b'"rating": ' + b"9" * 4_300)
    out = dead(raw)
    assert (out.reason, out.detail) == (
        Reason.INVALID_VALUE,
        "rating must be 1..5, got an integer of 4300 digits",
    )


@pytest.mark.parametrize(
    "field", ["review_text", "review_id", "product_id", "product_category", "language", "other"]
)
def test_an_unpaired_surrogate_in_any_string_is_bad_utf8(field: str) -> None:
    raw = encode(good(**{field: "ok \ud800 ok"}))  # json.dumps writes it as \ud800
    assert b"\\ud800" in raw
    out = dead(raw)
    assert out.reason is Reason.BAD_UTF8
    at = raw.index(b"\\ud800")
    assert out.detail == f"unpaired surrogate \\ud800 at byte {at}: not text UTF-8 can encode"


def test_surrogates_low_half_alone_and_in_keys_are_bad_utf8() -> None:
    assert dead(encode(good(review_text="\udc00"))).reason is Reason.BAD_UTF8
    assert dead(encode({**good(), "k\udfff": 1})).reason is Reason.BAD_UTF8
    assert dead(encode(good(review_text="\udbff\ud800"))).reason is Reason.BAD_UTF8


def test_surrogate_pairs_and_escaped_backslashes_are_text() -> None:
    ev = decode(encode(good(review_text="love it \U0001f60d")))  # written as a pair
    assert isinstance(ev, ReviewEvent) and ev.review_text == "love it \U0001f60d"
    ev = decode(encode(good(review_text="C:\\ud800")))  # a backslash, then letters
    assert isinstance(ev, ReviewEvent) and ev.review_text == "C:\\ud800"


@pytest.mark.parametrize(
    ("stamp", "detail"),
    [
        ("0001-01-01T00:00:00+01:00", "event_time '0001-01-01T00:00:00+01:00' is not a time in UTC"),
        ("9999-12-31T23:59:59-01:00", "event_time '9999-12-31T23:59:59-01:00' is not a time in UTC"),
        (
            "9999-12-31T23:59:59Z",
            "event_time '9999-12-31T23:59:59Z' is more than 1 day, 0:00:00 ahead of its arrival "
            "at 2026-01-02T03:04:05+00:00",
        ),
        ("1999-12-31T23:59:59Z", "event_time '1999-12-31T23:59:59Z' is before 2000-01-01T00:00:00+00:00"),
        ("0001-01-01T00:00:00Z", "event_time '0001-01-01T00:00:00Z' is before 2000-01-01T00:00:00+00:00"),
    ],
)  # fmt: skip
def test_event_times_out_of_range(stamp: str, detail: str) -> None:
    out = dead(encode(good(event_time=stamp)))
    assert (out.reason, out.detail) == (Reason.EVENT_TIME_OUT_OF_RANGE, detail)


def test_event_time_window_edges() -> None:
    ahead = NOW + timedelta(days=1)
    assert isinstance(decode(encode(good(event_time=ahead.isoformat()))), ReviewEvent)
    late = ahead + timedelta(microseconds=1)
    assert dead(encode(good(event_time=late.isoformat()))).reason is Reason.EVENT_TIME_OUT_OF_RANGE
    assert isinstance(decode(encode(good(event_time="2000-01-01T00:00:00Z"))), ReviewEvent)
    limits = DecodeLimits(
        max_event_time_ahead=timedelta(0), min_event_time=datetime(2026, 1, 1, 10, tzinfo=UTC)
    )
    assert isinstance(decode(encode(good(event_time=NOW.isoformat())), limits), ReviewEvent)
    out = dead(encode(good(event_time="2026-01-01T09:59:59Z")), limits)
    assert out.reason is Reason.EVENT_TIME_OUT_OF_RANGE


def test_deep_nesting_is_not_json() -> None:
    out = dead(b'{"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}")
    assert (out.reason, out.detail) == (Reason.NOT_JSON, "not JSON: nested too deep to decode")


def test_unknown_fields_may_nest_to_the_limit_only() -> None:
    def nested(depth: int) -> object:
        value: object = 1
        for _ in range(depth):
            value = [value]
        return value

    ok = decode(encode(good(extra=nested(MAX_UNKNOWN_DEPTH))))
    assert isinstance(ok, ReviewEvent)
    out = dead(encode(good(extra={"a": nested(MAX_UNKNOWN_DEPTH)})))
    assert (out.reason, out.detail) == (
        Reason.OVERSIZE_RECORD,
        f"unknown field 'extra' nests more than {MAX_UNKNOWN_DEPTH} levels",
    )


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999"])
def test_non_finite_numbers_are_not_json(literal: bytes) -> None:
    raw = encode(good()).replace(b'"rating": 5', b'"rating": 5, "score": ' + literal)
    assert dead(raw).reason is Reason.NOT_JSON


def test_a_contract_field_given_twice_is_a_dead_letter() -> None:
    body = encode(good())
    raw = b'{"review_id": "r-0", ' + body[1:]
    out = dead(raw)
    assert (out.reason, out.detail) == (Reason.DUPLICATE_FIELD, "review_id is given more than once")
    # Even when both say the same.
    raw = body[:-1] + b', "rating":5}'
    assert dead(raw).reason is Reason.DUPLICATE_FIELD


def test_names_that_only_look_like_duplicates_are_fine() -> None:
    # The same name as a value, inside an unknown field, or an unknown field repeated.
    doc = good(review_text="rating", note={"rating": 1, "review_id": "x"})
    ev = decode(encode(doc))
    assert isinstance(ev, ReviewEvent)
    assert ev.extra == {"note": {"rating": 1, "review_id": "x"}}
    ev = decode(encode(good())[:-1] + b', "tag": 1, "tag": 2}')
    assert isinstance(ev, ReviewEvent) and ev.extra == {"tag": 2}


# -- what could not be stored -------------------------------------------------------------------


@pytest.mark.parametrize("field", ["review_id", "product_id", "product_category"])
@pytest.mark.parametrize("char", ["\x00", "\n", "\x1b", "\x7f", "\x85", "\x9f"])
def test_control_characters_in_ids_and_categories(field: str, char: str) -> None:
    out = dead(encode(good(**{field: f"a{char}b"})))
    assert (out.reason, out.detail) == (
        Reason.INVALID_VALUE,
        f"{field} holds the control character {char!r} at 1",
    )


def test_other_unusual_but_printable_text_is_fine() -> None:
    ev = decode(encode(good(product_category="Fine\u00a0gauge \u2028", review_id="r\u200b1")))
    assert isinstance(ev, ReviewEvent)
    ev = decode(encode(good(review_text="line one\nline two\t\x1b[1m")))  # text may hold them
    assert isinstance(ev, ReviewEvent)


def test_the_category_limit_counts_utf8_bytes() -> None:
    assert isinstance(decode(encode(good(product_category="c" * 64))), ReviewEvent)
    out = dead(encode(good(product_category="c" * 65)))
    assert (out.reason, out.detail) == (
        Reason.INVALID_VALUE,
        "product_category is 65 bytes, limit is 64",
    )
    assert isinstance(decode(encode(good(product_category="\u00e9" * 32))), ReviewEvent)
    assert dead(encode(good(product_category="\u6728" * 22))).reason is Reason.INVALID_VALUE
    limits = DecodeLimits(max_category_bytes=MAX_CATEGORY_BYTES)
    assert isinstance(decode(encode(good(product_category="\u6728" * 26)), limits), ReviewEvent)


def test_unknown_fields_are_limited_in_count_and_size() -> None:
    many = {f"u{i}": i for i in range(32)}
    ev = decode(encode(good(**many)))
    assert isinstance(ev, ReviewEvent) and ev.extra == many
    out = dead(encode(good(**many, u32=32)))
    assert (out.reason, out.detail) == (Reason.OVERSIZE_RECORD, "33 unknown fields, limit is 32")
    # {"blob":"..."}: 11 bytes of JSON around the value.
    assert isinstance(decode(encode(good(blob="x" * (16 * 1024 - 11)))), ReviewEvent)
    out = dead(encode(good(blob="x" * (16 * 1024 - 10))))
    assert (out.reason, out.detail) == (
        Reason.OVERSIZE_RECORD,
        "unknown fields are 16385 bytes of JSON, limit is 16384",
    )
    limits = DecodeLimits(max_unknown_fields=0)
    assert dead(encode(good(x=1)), limits).reason is Reason.OVERSIZE_RECORD


def test_a_10_mb_record_becomes_a_small_dead_letter() -> None:
    raw = encode(good(review_text="x" * 10_000_000))
    out = dead(raw)
    assert (out.reason, out.detail) == (
        Reason.OVERSIZE_RECORD,
        f"the record is {len(raw)} bytes, limit is 1048576",
    )
    assert out.raw == raw[: 64 * 1024]
    assert out.raw_size == len(raw) and out.is_truncated
    assert out.raw_sha256 == hashlib.sha256(raw).hexdigest()
    (file,) = encode_dead_letters([out])
    assert file.table.schema == DEAD_LETTER_SCHEMA
    row = file.table.to_pylist()[0]
    assert (row["raw"], row["raw_size"], row["raw_sha256"]) == (
        raw[: 64 * 1024],
        len(raw),
        hashlib.sha256(raw).hexdigest(),
    )
    assert file.table.nbytes < 100_000


def test_dead_letters_keep_small_records_whole() -> None:
    out = dead(b"{oops")
    assert out.raw == b"{oops" and out.raw_size == 5 and not out.is_truncated
    assert out.raw_sha256 == hashlib.sha256(b"{oops").hexdigest()
    kept = dead(b"{" + b" " * 100, DecodeLimits(max_dead_letter_raw_bytes=10))
    assert kept.raw == b"{" + b" " * 9 and kept.raw_size == 101
    # Built by hand (scoring_rejected), size and hash come from the bytes.
    d = DeadLetter(b"abc", Reason.SCORING_REJECTED, "x", POS, NOW)
    assert (d.raw_size, d.raw_sha256) == (3, hashlib.sha256(b"abc").hexdigest())


# -- limits as settings -------------------------------------------------------------------------


def test_settings_carry_every_limit_with_the_same_defaults() -> None:
    assert DecodeLimits.from_settings(Settings()) == DecodeLimits()


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTIMENT_MAX_UNKNOWN_FIELDS", "3")
    monkeypatch.setenv("SENTIMENT_MAX_CATEGORY_BYTES", "20")
    monkeypatch.setenv("SENTIMENT_MAX_EVENT_TIME_AHEAD", "PT1H")
    monkeypatch.setenv("SENTIMENT_MIN_EVENT_TIME", "2020-01-01T00:00:00Z")
    limits = DecodeLimits.from_settings(Settings())
    assert limits == dataclasses.replace(
        DecodeLimits(),
        max_unknown_fields=3,
        max_category_bytes=20,
        max_event_time_ahead=timedelta(hours=1),
        min_event_time=datetime(2020, 1, 1, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_text_bytes": 0}, "max_text_bytes must be positive"),
        ({"max_unknown_fields": -1}, "max_unknown_fields must not be negative"),
        ({"max_category_bytes": 80}, "max_category_bytes must be at most 79"),
        ({"max_event_time_ahead": timedelta(seconds=-1)}, "max_event_time_ahead must not be"),
        ({"min_event_time": datetime(2000, 1, 1)}, "min_event_time must be timezone-aware"),
    ],
)
def test_bad_limits_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DecodeLimits(**changes)


def test_limits_and_a_separate_text_limit_do_not_mix() -> None:
    with pytest.raises(ValueError, match="inside limits"):
        decode_event(b"{}", POS, NOW, max_text_bytes=10, limits=DecodeLimits())


# -- batches ------------------------------------------------------------------------------------


def test_decode_batch_is_decode_event_per_record_in_order() -> None:
    values = [
        encode(good(review_id="a")),
        b"not json",
        encode(good(review_id="b", event_time="9999-01-01T00:00:00Z")),
        encode(good(review_id="c", tag=1)),
    ]
    positions = [SourcePosition("kafka", "reviews", "0", i) for i in range(len(values))]
    times = [NOW + timedelta(seconds=i) for i in range(len(values))]
    out = decode_batch(values, positions, times, DecodeLimits())
    singles = [decode_event(v, p, t) for v, p, t in zip(values, positions, times, strict=True)]
    assert out.events == [s for s in singles if isinstance(s, ReviewEvent)]
    assert [e.review_id for e in out.events] == ["a", "c"]
    assert out.event_positions == [positions[0], positions[3]]
    assert out.dead == [s for s in singles if isinstance(s, DeadLetter)]
    assert [d.received_at for d in out.dead] == [times[1], times[2]]
    one_time = decode_batch(values, positions, NOW, DecodeLimits())
    assert [d.received_at for d in one_time.dead] == [NOW, NOW]


def test_decode_batch_needs_one_position_per_value() -> None:
    with pytest.raises(ValueError, match="2 values but 1 positions"):
        decode_batch([b"{}", b"{}"], [POS], NOW, DecodeLimits())
    with pytest.raises(ValueError, match="1 values but 2 receive times"):
        decode_batch([b"{}"], [POS], [NOW, NOW], DecodeLimits())


# -- the published schema says the same, where JSON Schema can ---------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        good(review_id="a\x07b"),
        good(product_id="p\n"),
        good(product_category="Dresses\x1b[1m"),
        good(product_category="c" * 65),
    ],
)
def test_published_schema_rejects_the_new_invalid_values(doc: dict[str, Any]) -> None:
    assert isinstance(decode(encode(doc)), DeadLetter)
    assert list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(doc))


def test_published_schema_accepts_printable_unicode_ids() -> None:
    doc = good(product_category="Fine\u00a0gauge", review_id="r\u200b1")
    assert isinstance(decode(encode(doc)), ReviewEvent)
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
