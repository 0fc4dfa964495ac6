"""Decode and validate raw records into :class:`ReviewEvent` or :class:`DeadLetter`.

Never raises, whatever the bytes: every record the project cannot take becomes a dead letter
with a :class:`~stream.events.Reason` code and a human-readable detail. The rules here and the
published JSON Schema (``schemas/review-event.v1.schema.json``) describe the same contract; a
test checks that they agree on every case.

Whatever is accepted can be stored: every string is valid Unicode (no unpaired surrogates,
which UTF-8, Arrow and Parquet cannot hold), ids and the category hold no control characters,
the category fits in a file or object name once URI-quoted, unknown fields are bounded in
count, size and depth, and ``event_time`` lies between a floor and a bound ahead of the time
the record was received, so that no single record can move the monitors' watermark into the
future. The limits are :class:`DecodeLimits` (settings of the same names).

Decoding is msgspec's: a record that has exactly the contract's fields is decoded straight
into a typed struct (the common case; the types are checked in C); any other record is
decoded untyped and checked field by field, which gives the same reason and detail the typed
path would have given. :func:`decode_batch` decodes a whole micro-batch.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import msgspec

from stream.events import CHANNELS, SCHEMA_VERSION, DeadLetter, Reason, ReviewEvent, SourcePosition

if TYPE_CHECKING:
    from stream.settings import Settings

__all__ = [
    "DEFAULT_MAX_TEXT_BYTES",
    "MAX_CATEGORY_BYTES",
    "MAX_UNKNOWN_DEPTH",
    "DecodeLimits",
    "DecodedBatch",
    "decode_batch",
    "decode_event",
]

DEFAULT_MAX_TEXT_BYTES: Final = 5_000

#: The largest ``max_category_bytes`` allowed: the category names a lake directory
#: (``product_category=<URI-quoted>``); quoting turns each byte into at most three characters
#: and a file name may hold 255.
MAX_CATEGORY_BYTES: Final = (255 - len("product_category=")) // 3

#: Unknown fields may nest objects and arrays this deep (deeper ones are dead letters, so
#: that no encoder downstream runs out of stack).
MAX_UNKNOWN_DEPTH: Final = 32

_REQUIRED_STR: Final = ("review_id", "product_id", "product_category", "review_text", "channel")
_OPTIONAL_STR: Final = ("language", "customer_segment")
_KNOWN: Final = frozenset(
    (*_REQUIRED_STR, *_OPTIONAL_STR, "event_time", "rating", "schema_version")
)
_CHANNELS: Final = frozenset(CHANNELS)
_MAX_ID_CHARS: Final = 256
_IDS: Final = ("review_id", "product_id", "product_category")

#: C0 and C1 control characters and DEL: never in ids or categories (terminals, logs, paths).
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")
#: A ``\\uXXXX`` escape of half a surrogate pair without its other half.
_LONE_SURROGATE: Final = re.compile(
    rb"(?<!\\)(?:\\\\)*\\u"  # an escape (an odd run of backslashes, then u)
    rb"(?:(d[89ab][0-9a-f]{2})(?!\\ud[c-f])"  # a high half without a low one after it
    rb"|(?<!\\ud[89ab][0-9a-f]{2})(d[c-f][0-9a-f]{2}))",  # a low half without a high one
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """What a record may hold. Each field is also a setting of the same name
    (``SENTIMENT_MAX_TEXT_BYTES``, ...); bad values raise :class:`ValueError`.

    * ``max_text_bytes``: ``review_text`` in UTF-8 bytes (``oversize_text``);
    * ``max_record_bytes``: the raw record, checked before parsing (``oversize_record``);
    * ``max_unknown_fields`` / ``max_unknown_bytes``: count of unknown fields and the size of
      their JSON (``oversize_record``);
    * ``max_category_bytes``: ``product_category`` in UTF-8 bytes (``invalid_value``), at most
      :data:`MAX_CATEGORY_BYTES`;
    * ``max_event_time_ahead`` / ``min_event_time``: the accepted ``event_time`` range, from
      a floor up to this far ahead of the time the record was received
      (``event_time_out_of_range``);
    * ``max_dead_letter_raw_bytes``: a dead letter keeps at most this many bytes of the raw
      record (with the full size and its SHA-256).
    """

    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES
    max_record_bytes: int = 1024 * 1024
    max_unknown_fields: int = 32
    max_unknown_bytes: int = 16 * 1024
    max_category_bytes: int = 64
    max_event_time_ahead: timedelta = timedelta(days=1)
    min_event_time: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    max_dead_letter_raw_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        for name in ("max_text_bytes", "max_record_bytes", "max_category_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("max_unknown_fields", "max_unknown_bytes", "max_dead_letter_raw_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.max_category_bytes > MAX_CATEGORY_BYTES:
            raise ValueError(
                f"max_category_bytes must be at most {MAX_CATEGORY_BYTES} (a quoted category "
                f"names a lake directory), got {self.max_category_bytes}"
            )
        if self.max_event_time_ahead < timedelta(0):
            raise ValueError("max_event_time_ahead must not be negative")
        if self.min_event_time.utcoffset() is None:
            raise ValueError("min_event_time must be timezone-aware")

    @classmethod
    def from_settings(cls, settings: Settings) -> DecodeLimits:
        """The limits configured in ``settings`` (fields of the same names)."""
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)})


@dataclass(slots=True)
class DecodedBatch:
    """A decoded micro-batch: the valid events with their positions, and the dead letters,
    each list in input order."""

    events: list[ReviewEvent]
    event_positions: list[SourcePosition]
    dead: list[DeadLetter]


class _Invalid(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_UNTYPED: Final = msgspec.json.Decoder()
_TO_EVENT: Final = msgspec.convert
_ENCODER: Final = msgspec.json.Encoder()


def decode_event(
    raw: bytes,
    position: SourcePosition,
    received_at: datetime,
    *,
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
    limits: DecodeLimits | None = None,
) -> ReviewEvent | DeadLetter:
    """Turn one raw record into a valid event, or a dead letter saying why not.

    ``received_at`` (timezone-aware) bounds ``event_time`` from above. Without ``limits`` the
    defaults apply, with ``max_text_bytes`` as given.
    """
    if limits is None:
        limits = _default_limits(max_text_bytes)
    elif max_text_bytes != DEFAULT_MAX_TEXT_BYTES:
        raise ValueError("give max_text_bytes inside limits, not beside them")
    try:
        return _decode(raw, received_at, received_at + limits.max_event_time_ahead, limits)
    except _Invalid as err:
        return _dead(raw, err, position, received_at, limits)


def decode_batch(
    values: Sequence[bytes],
    positions: Sequence[SourcePosition],
    received_at: datetime | Sequence[datetime],
    limits: DecodeLimits,
) -> DecodedBatch:
    """Decode a micro-batch: ``values[i]`` came from ``positions[i]`` and was received at
    ``received_at`` (one time for the whole batch, or one per record)."""
    if len(values) != len(positions):
        raise ValueError(f"{len(values)} values but {len(positions)} positions")
    times: Sequence[datetime]
    if isinstance(received_at, datetime):
        times = [received_at] * len(values)
    else:
        times = received_at
        if len(times) != len(values):
            raise ValueError(f"{len(values)} values but {len(times)} receive times")
    out = DecodedBatch([], [], [])
    ahead = limits.max_event_time_ahead
    last_when: datetime | None = None
    latest = datetime.max.replace(tzinfo=UTC)
    for raw, pos, when in zip(values, positions, times, strict=True):
        if when is not last_when:  # one sum per batch when it has one receive time
            last_when, latest = when, when + ahead
        try:
            event = _decode(raw, when, latest, limits)
        except _Invalid as err:
            out.dead.append(_dead(raw, err, pos, when, limits))
        else:
            out.events.append(event)
            out.event_positions.append(pos)
    return out


@functools.lru_cache(maxsize=16)
def _default_limits(max_text_bytes: int) -> DecodeLimits:
    return DecodeLimits(max_text_bytes=max_text_bytes)


def _dead(
    raw: bytes, err: _Invalid, position: SourcePosition, received_at: datetime, limits: DecodeLimits
) -> DeadLetter:
    return DeadLetter.truncated(
        bytes(raw),
        err.reason,
        err.detail,
        position,
        received_at,
        max_raw_bytes=limits.max_dead_letter_raw_bytes,
    )


def _decode(
    raw: bytes, received_at: datetime, latest: datetime, limits: DecodeLimits
) -> ReviewEvent:
    """``latest``: the latest event time accepted (``received_at`` + the limit ahead)."""
    obj = _parse_object(raw, limits)
    # The typed path: the event is built (and every field's type checked) by msgspec in one
    # call. Whatever it cannot take goes to the field-by-field path, which names the first
    # fault in the contract's order.
    time_text = obj.get("event_time")
    version = obj.get("schema_version", SCHEMA_VERSION)
    if type(time_text) is not str or type(version) is not int or version != SCHEMA_VERSION:
        return _decode_fields(raw, obj, received_at, limits)
    if "extra" in obj:  # an unknown field of that name must not fill ReviewEvent.extra
        return _decode_fields(raw, obj, received_at, limits)
    try:
        obj["event_time"] = _parse_time(time_text)
        event = _TO_EVENT(obj, ReviewEvent)
    except (_Invalid, msgspec.ValidationError):
        obj["event_time"] = time_text
        return _decode_fields(raw, obj, received_at, limits)
    if not _plainly_valid(event, limits):
        _check_values(event, limits)  # not plainly fine: find the first fault, if any
    keys = len(obj)
    if not _KNOWN.issuperset(obj):
        extra, nested_keys = _unknown(obj, len(raw), limits)
        keys += nested_keys
        # The event is new and not shared yet: give it its unknown fields in place.
        object.__setattr__(event, "extra", extra)
    if raw.count(b'":') > keys:
        _check_duplicates(raw)
    if not limits.min_event_time <= event.event_time <= latest:
        _check_time(time_text, event.event_time, received_at, limits)
    return event


def _parse_object(raw: bytes, limits: DecodeLimits) -> dict[str, Any]:
    """The record's JSON object, untyped (a record over the size limit is not parsed)."""
    if len(raw) > limits.max_record_bytes:
        raise _Invalid(
            Reason.OVERSIZE_RECORD,
            f"the record is {len(raw)} bytes, limit is {limits.max_record_bytes}",
        )
    try:
        obj = _UNTYPED.decode(raw)
    except (msgspec.DecodeError, RecursionError) as err:
        raise _unreadable(raw, err) from None
    if not isinstance(obj, dict):
        raise _Invalid(Reason.NOT_OBJECT, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _plainly_valid(event: ReviewEvent, limits: DecodeLimits) -> bool:
    """A quick test that most valid events pass: printable, non-blank ids within their
    length, an ASCII category within its limit, a text of at most ``max_text_bytes / 4``
    characters (within the limit whatever it holds), a known channel, a rating in 1-5.
    False only means that :func:`_check_values` must look closer."""
    rid, pid, cat, text = (
        event.review_id,
        event.product_id,
        event.product_category,
        event.review_text,
    )
    rating = event.rating
    return bool(
        rid
        and pid
        and cat
        and text
        and len(rid) <= _MAX_ID_CHARS
        and len(pid) <= _MAX_ID_CHARS
        and cat.isascii()
        and len(cat) <= limits.max_category_bytes
        and len(text) * 4 <= limits.max_text_bytes
        and rid.isprintable()
        and pid.isprintable()
        and cat.isprintable()
        and not (rid.isspace() or pid.isspace() or cat.isspace() or text.isspace())
        and event.channel in _CHANNELS
        and (rating is None or 1 <= rating <= 5)
    )


def _check_values(event: ReviewEvent, limits: DecodeLimits) -> None:
    """The value checks of a well-typed event, in the contract's order."""
    _check_strings(
        event.review_id,
        event.product_id,
        event.product_category,
        event.review_text,
        event.channel,
        limits,
    )
    if event.rating is not None:
        _check_rating(event.rating)
    _check_storable(event.review_id, event.product_id, event.product_category, limits)


def _decode_fields(
    raw: bytes, obj: dict[str, Any], received_at: datetime, limits: DecodeLimits
) -> ReviewEvent:
    """An object the typed conversion refused: the same checks, one field at a time, to
    name the first one that breaks the contract."""
    version = obj.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise _Invalid(
            Reason.UNSUPPORTED_VERSION, f"schema_version {_short(version)} is not supported"
        )

    values = [_required_str(obj, name) for name in _REQUIRED_STR]
    review_id, product_id, product_category, review_text, channel = values
    _check_strings(review_id, product_id, product_category, review_text, channel, limits)

    if "event_time" not in obj or obj["event_time"] is None:
        raise _Invalid(Reason.MISSING_FIELD, "event_time is required")
    time_text = obj["event_time"]
    if not isinstance(time_text, str):
        raise _Invalid(Reason.WRONG_TYPE, f"event_time must be a string, got {_kind(time_text)}")
    event_time = _parse_time(time_text)
    rating = obj.get("rating")
    if rating is not None:
        if not isinstance(rating, int) or isinstance(rating, bool):
            raise _Invalid(Reason.WRONG_TYPE, f"rating must be an integer, got {_kind(rating)}")
        _check_rating(rating)
    optional: dict[str, str | None] = {}
    for name in _OPTIONAL_STR:
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            raise _Invalid(Reason.WRONG_TYPE, f"{name} must be a string, got {_kind(value)}")
        optional[name] = value

    _check_storable(review_id, product_id, product_category, limits)
    extra, nested_keys = _unknown(obj, len(raw), limits)
    if raw.count(b'":') > len(obj) + nested_keys:
        _check_duplicates(raw)
    _check_time(time_text, event_time, received_at, limits)
    return ReviewEvent(
        review_id=review_id,
        product_id=product_id,
        product_category=product_category,
        review_text=review_text,
        channel=channel,
        event_time=event_time,
        rating=rating,
        language=optional["language"],
        customer_segment=optional["customer_segment"],
        extra=extra,
    )


def _unreadable(raw: bytes, err: Exception) -> _Invalid:
    """Why bytes did not parse: bad UTF-8, an unpaired surrogate, or not JSON at all."""
    try:
        bytes(raw).decode("utf-8")
    except UnicodeDecodeError as bad:
        return _Invalid(Reason.BAD_UTF8, f"not valid UTF-8 at byte {bad.start}")
    if isinstance(err, RecursionError):
        return _Invalid(Reason.NOT_JSON, "not JSON: nested too deep to decode")
    lone = _LONE_SURROGATE.search(raw)
    if lone is not None:
        half = (lone.group(1) or lone.group(2)).decode("ascii").lower()
        return _Invalid(
            Reason.BAD_UTF8,
            f"unpaired surrogate \\u{half} at byte {lone.end() - 6}: not text UTF-8 can encode",
        )
    return _Invalid(Reason.NOT_JSON, f"not JSON: {err}")


def _required_str(obj: dict[str, Any], name: str) -> str:
    if name not in obj or obj[name] is None:
        raise _Invalid(Reason.MISSING_FIELD, f"{name} is required")
    value = obj[name]
    if not isinstance(value, str):
        raise _Invalid(Reason.WRONG_TYPE, f"{name} must be a string, got {_kind(value)}")
    return value


def _check_strings(
    review_id: str,
    product_id: str,
    product_category: str,
    review_text: str,
    channel: str,
    limits: DecodeLimits,
) -> None:
    if (
        not review_id
        or not product_id
        or not product_category
        or review_id.isspace()
        or product_id.isspace()
        or product_category.isspace()
        or max(len(review_id), len(product_id), len(product_category)) > _MAX_ID_CHARS
    ):
        for name, value in zip(_IDS, (review_id, product_id, product_category), strict=True):
            if not value.strip() or len(value) > _MAX_ID_CHARS:
                raise _Invalid(
                    Reason.INVALID_VALUE, f"{name} must be 1..{_MAX_ID_CHARS} characters"
                )
    if not review_text or review_text.isspace():
        raise _Invalid(Reason.INVALID_VALUE, "review_text is empty")
    size = _utf8_size_over(review_text, limits.max_text_bytes)
    if size is not None:
        raise _Invalid(
            Reason.OVERSIZE_TEXT, f"review_text is {size} bytes, limit is {limits.max_text_bytes}"
        )
    if channel not in _CHANNELS:
        raise _Invalid(
            Reason.INVALID_VALUE,
            f"channel {channel[:40]!r} is not one of {', '.join(CHANNELS)}",
        )


def _parse_time(value: str) -> datetime:
    # RFC 3339 needs a full date, a time and an offset; fromisoformat alone accepts more.
    if len(value) < 20 or value[10] not in "Tt ":
        raise _Invalid(Reason.BAD_TIMESTAMP, f"event_time {value[:40]!r} is not RFC 3339")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Invalid(Reason.BAD_TIMESTAMP, f"event_time {value[:40]!r} is not RFC 3339") from None
    if parsed.tzinfo is None:
        raise _Invalid(Reason.BAD_TIMESTAMP, f"event_time {value[:40]!r} has no UTC offset")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset, year 9999 with a negative one
        raise _Invalid(
            Reason.EVENT_TIME_OUT_OF_RANGE, f"event_time {value[:40]!r} is not a time in UTC"
        ) from None


def _check_rating(rating: int) -> None:
    if not 1 <= rating <= 5:
        raise _Invalid(Reason.INVALID_VALUE, f"rating must be 1..5, got {_short(rating)}")


def _check_storable(
    review_id: str, product_id: str, product_category: str, limits: DecodeLimits
) -> None:
    if not (
        review_id.isprintable() and product_id.isprintable() and product_category.isprintable()
    ):
        # Something beyond plain printable text: find out whether it is a control character.
        for name, value in zip(_IDS, (review_id, product_id, product_category), strict=True):
            bad = _CONTROL.search(value)
            if bad is not None:
                raise _Invalid(
                    Reason.INVALID_VALUE,
                    f"{name} holds the control character {bad.group()!r} at {bad.start()}",
                )
    size = _utf8_size_over(product_category, limits.max_category_bytes)
    if size is not None:
        raise _Invalid(
            Reason.INVALID_VALUE,
            f"product_category is {size} bytes, limit is {limits.max_category_bytes}",
        )


def _utf8_size_over(value: str, limit: int) -> int | None:
    """The UTF-8 size of ``value`` when it is over ``limit`` bytes, else None. UTF-8 takes at
    most 4 bytes a character: bytes are counted only near the limit."""
    if len(value) * 4 <= limit:
        return None
    size = len(value.encode("utf-8"))
    return size if size > limit else None


def _unknown(
    obj: dict[str, Any], raw_size: int, limits: DecodeLimits
) -> tuple[dict[str, Any], int]:
    """The unknown fields of a record of ``raw_size`` bytes, within the limits on their
    count, depth and size, and the number of object keys nested inside them."""
    extra = {k: v for k, v in obj.items() if k not in _KNOWN}
    if not extra:
        return extra, 0
    if len(extra) > limits.max_unknown_fields:
        raise _Invalid(
            Reason.OVERSIZE_RECORD,
            f"{len(extra)} unknown fields, limit is {limits.max_unknown_fields}",
        )
    nested_keys = 0
    for name, value in extra.items():
        if isinstance(value, dict | list):
            keys = _nested_keys(value)
            if keys < 0:
                raise _Invalid(
                    Reason.OVERSIZE_RECORD,
                    f"unknown field {name[:40]!r} nests more than {MAX_UNKNOWN_DEPTH} levels",
                )
            nested_keys += keys
    # Re-encoded, JSON is at most 5 x as long as it was read (only numbers grow: 1e15 is
    # 1000000000000000.0), so a small record needs no encoding to know.
    if raw_size * 5 <= limits.max_unknown_bytes:
        return extra, nested_keys
    size = len(_ENCODER.encode(extra))
    if size > limits.max_unknown_bytes:
        raise _Invalid(
            Reason.OVERSIZE_RECORD,
            f"unknown fields are {size} bytes of JSON, limit is {limits.max_unknown_bytes}",
        )
    return extra, nested_keys


def _nested_keys(value: object) -> int:
    """The object keys inside ``value`` at every level; -1 when lists and objects nest more
    than :data:`MAX_UNKNOWN_DEPTH` deep."""
    keys = 0
    level: list[object] = [value]
    for _ in range(MAX_UNKNOWN_DEPTH + 1):
        below: list[object] = []
        for item in level:
            if isinstance(item, dict):
                keys += len(item)
                below.extend(item.values())
            elif isinstance(item, list):
                below.extend(item)
        if not below:
            return keys
        level = below
    return -1


def _check_duplicates(raw: bytes) -> None:
    """A contract field given twice is ambiguous: parsers differ on which one wins.

    Called only for a record with more ``":`` than the object keys it decoded to (at every
    level): each key an encoder writes is followed by ``":``, so a record with no more of
    them names no key twice. (Whitespace between a key and its colon, which no common encoder
    writes, hides a key from that count: a duplicate spelt so passes, the last value winning
    as in Python's json module.)
    """
    name = _duplicate_top_level_key(raw)
    if name is not None:
        raise _Invalid(Reason.DUPLICATE_FIELD, f"{name} is given more than once")


def _duplicate_top_level_key(raw: bytes) -> str | None:
    """The first contract field the top-level object names twice (None: none does)."""
    top: list[list[tuple[str, Any]]] = []

    def keep(pairs: list[tuple[str, Any]]) -> None:
        top[:] = [pairs]  # the top-level object is the last one to close

    try:
        json.loads(raw, object_pairs_hook=keep)
    except (ValueError, RecursionError):
        return "a field"  # msgspec read it; refuse what the reference parser cannot check
    seen: set[str] = set()
    for key, _value in top[0] if top else ():
        if key in _KNOWN and key in seen:
            return key
        seen.add(key)
    return None


def _check_time(
    text: str, event_time: datetime, received_at: datetime, limits: DecodeLimits
) -> None:
    if event_time < limits.min_event_time:
        raise _Invalid(
            Reason.EVENT_TIME_OUT_OF_RANGE,
            f"event_time {text[:40]!r} is before {limits.min_event_time.isoformat()}",
        )
    if event_time - received_at > limits.max_event_time_ahead:
        raise _Invalid(
            Reason.EVENT_TIME_OUT_OF_RANGE,
            f"event_time {text[:40]!r} is more than {limits.max_event_time_ahead} ahead of "
            f"its arrival at {received_at.isoformat()}",
        )


def _short(value: object) -> str:
    """``repr`` of a producer's value, cut to a readable length (huge integers included)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _kind(value: object) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)
