"""Hostile input, property-based: the decoder, the endpoint's input_fn and the CSV reader never
raise anything but their documented errors, and whatever the decoder accepts can be stored."""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from endpoint.inference import InvalidInput, input_fn
from sinks.lake import encode_batch, to_parquet_bytes
from stream.events import Batch, DeadLetter, Reason, ReviewEvent, ScoredReview, SourcePosition
from stream.replay_csv import read_csv
from stream.validation import DecodeLimits, decode_batch, decode_event

POS = SourcePosition("kafka", "reviews", "0", 7)
NOW = datetime(2026, 6, 1, tzinfo=UTC)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Any character, unpaired surrogates included (json.dumps writes them as \\udXXX escapes).
CHARS = st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr))
TEXT = st.text(CHARS, max_size=40)
LONG_TEXT = st.text(CHARS, min_size=50, max_size=400)
HUGE_INT = st.integers(20, 4_300).map(lambda n: int("9" * n))
INT = st.one_of(st.integers(), HUGE_INT)
STAMP = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.timezones()
    ).map(lambda d: d.isoformat()),
    st.builds(
        lambda y, off: f"{y:04d}-01-01T00:00:00{off}",
        st.integers(1, 9999),
        st.sampled_from(["Z", "+01:00", "-01:00", "+23:59", "-23:59", ""]),
    ),
    TEXT,
)
SCALAR = st.one_of(st.none(), st.booleans(), INT, st.floats(allow_nan=False), TEXT)
JSONISH = st.recursive(SCALAR, lambda c: st.lists(c, max_size=4) | st.dictionaries(TEXT, c, max_size=4), max_leaves=20)  # fmt: skip


def record() -> st.SearchStrategy[dict[str, Any]]:
    field = {
        "review_id": st.one_of(TEXT, JSONISH),
        "product_id": st.one_of(TEXT, JSONISH),
        "product_category": st.one_of(TEXT, LONG_TEXT, st.sampled_from(["Dresses", "Fine gauge"])),
        "review_text": st.one_of(TEXT, LONG_TEXT),
        "channel": st.one_of(st.sampled_from(["web", "app"]), TEXT),
        "event_time": STAMP,
        "rating": st.one_of(st.integers(0, 6), INT, JSONISH),
        "language": st.one_of(st.none(), TEXT),
    }
    return st.fixed_dictionaries(
        {}, optional={**field, "schema_version": st.sampled_from([1, 1.0, 2, True, None])}
    ).flatmap(
        lambda d: st.dictionaries(TEXT, JSONISH, max_size=3).map(lambda extra: {**extra, **d})
    )


def deep(n: int) -> bytes:
    return b'{"review_id": ' + b"[" * n + b"]" * n + b"}"


RAW = st.one_of(
    st.binary(max_size=300),
    record().map(lambda d: json.dumps(d).encode()),
    record().map(lambda d: json.dumps(d, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.integers(1, 3_000).map(deep),
    st.integers(4_000, 6_000).map(lambda n: b'{"review_id": "r", "rating": ' + b"9" * n + b"}"),
)


def check_outcome(raw: bytes, out: ReviewEvent | DeadLetter) -> None:
    if isinstance(out, DeadLetter):
        assert isinstance(out.reason, Reason)
        assert raw.startswith(out.raw) and out.raw_size == len(raw)
        assert out.raw_sha256 == hashlib.sha256(raw).hexdigest()
        out.detail.encode("utf-8")  # storable
        return
    # Accepted: storable in Parquet, in a lake path, and as JSON on the output topics.
    assert len(quote(out.product_category, safe="")) + len("product_category=") <= 255
    assert datetime(2000, 1, 1, tzinfo=UTC) <= out.event_time <= NOW + timedelta(days=1)
    scored = ScoredReview(out, 1, 0.1, 0.2, 0.7, "m", "1", NOW, 1.0, POS)
    for part in encode_batch(Batch([scored], [], {POS.key: POS})):
        assert to_parquet_bytes(part.table)
    json.dumps(scored.to_json_dict(), ensure_ascii=False).encode("utf-8")


@FAST
@given(RAW)
def test_decode_event_never_raises_and_what_it_accepts_is_storable(raw: bytes) -> None:
    check_outcome(raw, decode_event(raw, POS, NOW))


@FAST
@given(st.lists(RAW, max_size=6))
def test_decode_batch_agrees_with_decode_event(values: list[bytes]) -> None:
    positions = [SourcePosition("kafka", "reviews", "0", i) for i in range(len(values))]
    out = decode_batch(values, positions, NOW, DecodeLimits())
    singles = [decode_event(v, p, NOW) for v, p in zip(values, positions, strict=True)]
    assert out.events == [s for s in singles if isinstance(s, ReviewEvent)]
    assert out.dead == [s for s in singles if isinstance(s, DeadLetter)]
    assert len(out.events) == len(out.event_positions)


@FAST
@given(JSONISH)
def test_unknown_fields_reencode_within_five_times_their_size(value: object) -> None:
    # decode_event skips measuring unknown fields of small records on this bound.
    import msgspec

    raw = json.dumps({"x": value}).encode("utf-8", "surrogatepass")
    try:
        decoded = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return
    assert len(msgspec.json.encode(decoded)) <= 5 * len(raw)


CONTENT_TYPES = st.sampled_from(
    ["application/json", "application/jsonlines", "text/csv", "text/plain", None, "text/csv; x"]
)


@FAST
@given(st.one_of(st.binary(max_size=300), RAW, JSONISH.map(lambda v: json.dumps(v).encode())), CONTENT_TYPES)  # fmt: skip
def test_input_fn_raises_only_invalid_input(body: bytes, content_type: str | None) -> None:
    for payload in (body, body.decode("utf-8", "surrogateescape")):
        try:
            texts = input_fn(payload, content_type)
        except InvalidInput:
            continue
        assert all(isinstance(t, str) for t in texts)


def test_input_fn_answers_deep_json_as_invalid_input() -> None:
    for body, kind in ((b"[" * 100_000, "application/json"), (b"[" * 100_000, "application/jsonlines")):  # fmt: skip
        with contextlib.suppress(InvalidInput):
            input_fn(body, kind)


CSV_TEXT = st.text(st.one_of(CHARS.filter(lambda c: not 0xD800 <= ord(c) <= 0xDFFF), st.sampled_from(',"\n\r\x00')), max_size=300)  # fmt: skip


@FAST
@given(
    st.sampled_from(
        [
            "sentiment,review_body,product_category\n",
            "Clothing ID,Title,Review Text,Rating,Class Name\n",
            "",
        ]
    ),
    CSV_TEXT,
    st.booleans(),
)
def test_read_csv_raises_only_value_error(header: str, body: str, invalid_bytes: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reviews.csv"
        data = (header + body).encode("utf-8")
        path.write_bytes(data + (b"\xff\xfe" if invalid_bytes else b""))
        try:
            recs = list(read_csv(path))
        except ValueError:
            return
    for rec in recs:
        out = decode_event(rec.value, POS, NOW)
        if rec.event is None:
            assert isinstance(out, DeadLetter) and out.reason == rec.expected_reason
        else:
            assert out == rec.event


def test_read_csv_names_the_line_of_a_field_over_the_csv_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_text('sentiment,review_body,product_category\n1,"' + "x" * 200_000 + '",Dresses\n')
    try:
        list(read_csv(path))
    except ValueError as err:
        assert "line" in str(err) and "field larger than field limit" in str(err)
    else:
        raise AssertionError("a 200 KB field must be refused")
