"""Decode and validate raw records into :class:`ReviewEvent` or :class:`DeadLetter`.

Never raises for bad input: every malformed record becomes a dead letter with a
:class:`~stream.events.Reason` code and a human-readable detail. The rules here and the
published JSON Schema (``schemas/review-event.v1.schema.json``) describe the same contract; a
test checks that they agree on every case.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

from stream.events import CHANNELS, SCHEMA_VERSION, DeadLetter, Reason, ReviewEvent, SourcePosition

__all__ = ["DEFAULT_MAX_TEXT_BYTES", "decode_event"]

DEFAULT_MAX_TEXT_BYTES: Final = 5_000

_REQUIRED_STR: Final = ("review_id", "product_id", "product_category", "review_text", "channel")
_OPTIONAL_STR: Final = ("language", "customer_segment")
_KNOWN: Final = frozenset(
    (*_REQUIRED_STR, *_OPTIONAL_STR, "event_time", "rating", "schema_version")
)
_CHANNELS: Final = frozenset(CHANNELS)
_MAX_ID_CHARS: Final = 256


class _Invalid(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def decode_event(
    raw: bytes,
    position: SourcePosition,
    received_at: datetime,
    *,
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
) -> ReviewEvent | DeadLetter:
    """Turn one raw record into a valid event, or a dead letter saying why not."""
    try:
        return _decode(raw, max_text_bytes)
    except _Invalid as err:
        return DeadLetter(
            raw=raw,
            reason=err.reason,
            detail=err.detail,
            position=position,
            received_at=received_at,
        )


def _decode(raw: bytes, max_text_bytes: int) -> ReviewEvent:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _Invalid(Reason.BAD_UTF8, f"not valid UTF-8 at byte {err.start}") from None
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise _Invalid(Reason.NOT_JSON, f"not JSON: {err}") from None
    if not isinstance(obj, dict):
        raise _Invalid(Reason.NOT_OBJECT, f"expected a JSON object, got {type(obj).__name__}")

    version = obj.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise _Invalid(Reason.UNSUPPORTED_VERSION, f"schema_version {version!r} is not supported")

    values: dict[str, str] = {}
    for name in _REQUIRED_STR:
        values[name] = _required_str(obj, name)
    for name in ("review_id", "product_id", "product_category"):
        if not values[name].strip() or len(values[name]) > _MAX_ID_CHARS:
            raise _Invalid(Reason.INVALID_VALUE, f"{name} must be 1..{_MAX_ID_CHARS} characters")
    review_text = values["review_text"]
    if not review_text.strip():
        raise _Invalid(Reason.INVALID_VALUE, "review_text is empty")
    size = len(review_text.encode("utf-8"))
    if size > max_text_bytes:
        raise _Invalid(
            Reason.OVERSIZE_TEXT, f"review_text is {size} bytes, limit is {max_text_bytes}"
        )
    if values["channel"] not in _CHANNELS:
        raise _Invalid(
            Reason.INVALID_VALUE,
            f"channel {values['channel'][:40]!r} is not one of {', '.join(CHANNELS)}",
        )

    event_time = _event_time(obj)
    rating = obj.get("rating")
    if rating is not None:
        if not isinstance(rating, int) or isinstance(rating, bool):
            raise _Invalid(Reason.WRONG_TYPE, f"rating must be an integer, got {_kind(rating)}")
        if not 1 <= rating <= 5:
            raise _Invalid(Reason.INVALID_VALUE, f"rating must be 1..5, got {rating}")
    optional: dict[str, str | None] = {}
    for name in _OPTIONAL_STR:
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            raise _Invalid(Reason.WRONG_TYPE, f"{name} must be a string, got {_kind(value)}")
        optional[name] = value

    extra = {k: v for k, v in obj.items() if k not in _KNOWN}
    return ReviewEvent(
        review_id=values["review_id"],
        product_id=values["product_id"],
        product_category=values["product_category"],
        review_text=review_text,
        channel=values["channel"],
        event_time=event_time,
        rating=rating,
        language=optional["language"],
        customer_segment=optional["customer_segment"],
        extra=extra,
    )


def _required_str(obj: dict[str, Any], name: str) -> str:
    if name not in obj or obj[name] is None:
        raise _Invalid(Reason.MISSING_FIELD, f"{name} is required")
    value = obj[name]
    if not isinstance(value, str):
        raise _Invalid(Reason.WRONG_TYPE, f"{name} must be a string, got {_kind(value)}")
    return value


def _event_time(obj: dict[str, Any]) -> datetime:
    if "event_time" not in obj or obj["event_time"] is None:
        raise _Invalid(Reason.MISSING_FIELD, "event_time is required")
    value = obj["event_time"]
    if not isinstance(value, str):
        raise _Invalid(Reason.WRONG_TYPE, f"event_time must be a string, got {_kind(value)}")
    # RFC 3339 needs a full date, a time and an offset; fromisoformat alone accepts more.
    if len(value) < 20 or value[10] not in "Tt ":
        raise _Invalid(Reason.BAD_TIMESTAMP, f"event_time {value[:40]!r} is not RFC 3339")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Invalid(Reason.BAD_TIMESTAMP, f"event_time {value[:40]!r} is not RFC 3339") from None
    if parsed.tzinfo is None:
        raise _Invalid(Reason.BAD_TIMESTAMP, f"event_time {value[:40]!r} has no UTC offset")
    return parsed.astimezone(UTC)


def _kind(value: object) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)
