"""The event contract: what producers publish and what the pipeline emits.

This module is the one piece of ``stream/`` that ``monitors/`` and ``sinks/`` may import, so it
imports nothing else of this project. It holds:

* :class:`ReviewEvent` (schema_version 1), the record producers publish;
* :class:`SourcePosition`, where a record came from (Kafka offset, Kinesis sequence, replay index);
* :class:`ScoredReview`, the event enriched with the model's verdict;
* :class:`DeadLetter`, a record that failed validation, with a :class:`Reason` code;
* :class:`Alert`, what the monitors raise for the business and operations;
* :data:`EVENT_FIELDS` and :data:`VERDICT_FIELDS`, the one declaration of a scored review's
  fields (:class:`FieldSpec`): the JSON forms, the lake columns, :data:`SCORED_SCHEMA` and the
  validator's known fields derive from it;
* the Arrow schemas of the lake tables (:data:`SCORED_SCHEMA`, :data:`DEAD_LETTER_SCHEMA`,
  :data:`ALERT_SCHEMA`).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from operator import attrgetter
from typing import Any, Final, Self, overload

import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = [
    "ALERT_SCHEMA",
    "CHANNELS",
    "DEAD_LETTER_SCHEMA",
    "EVENT_FIELDS",
    "EVENT_WIRE_KEYS",
    "LABELS",
    "LABEL_SCHEMA",
    "OTHER_CATEGORY",
    "SCHEMA_VERSION",
    "SCORED_SCHEMA",
    "VERDICT_FIELDS",
    "Alert",
    "Batch",
    "DeadLetter",
    "FieldSpec",
    "Reason",
    "ReviewEvent",
    "ScoredBatch",
    "ScoredReview",
    "Severity",
    "SourcePosition",
    "category_or_other",
    "scored_table",
    "sentiment_from_rating",
    "sentiments_from_ratings",
    "source_offsets",
]

SCHEMA_VERSION: Final = 1

#: The channels a review can arrive through. Anything else is a dead letter.
CHANNELS: Final = ("web", "app", "email", "chat", "call", "social", "partner")

#: What a product category outside the configured list counts as wherever categories name
#: something kept or exported (metric labels, review budgets, a run's summary): producers
#: choose the category, and those stay a bounded set.
OTHER_CATEGORY: Final = "other"


def category_or_other(category: str, allowed: Collection[str]) -> str:
    """``category`` if on the allow-list, else :data:`OTHER_CATEGORY`."""
    return category if category in allowed else OTHER_CATEGORY


#: Sentiment classes in model column order, and their names.
LABELS: Final[Mapping[int, str]] = {-1: "negative", 0: "neutral", 1: "positive"}


def sentiment_from_rating(rating: int) -> int:
    """Ground truth from a star rating: 1-2 negative (-1), 3 neutral (0), 4-5 positive (1)."""
    if not 1 <= rating <= 5:
        raise ValueError(f"rating must be 1..5, got {rating}")
    if rating <= 2:
        return -1
    return 0 if rating == 3 else 1


def sentiments_from_ratings(ratings: npt.ArrayLike, missing: int) -> npt.NDArray[np.int64]:
    """:func:`sentiment_from_rating` over an array of ratings: -1/0/1 per rating, ``missing``
    where a rating is absent (NaN)."""
    r = np.asarray(ratings, dtype=np.float64)
    out: npt.NDArray[np.int64] = np.select([r <= 2, r == 3, r >= 4], [-1, 0, 1], missing).astype(
        np.int64
    )
    return out


_TS = pa.timestamp("us", tz="UTC")


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _same(value: Any) -> Any:
    return value


#: How a JSON value becomes a field's Python value, by the field's Python type.
_FROM_WIRE: Final[Mapping[type, Callable[[Any], Any]]] = {
    str: _same,
    int: int,
    float: float,
    datetime: datetime.fromisoformat,
}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a scored review, declared once.

    ``name`` is the attribute (of :class:`ReviewEvent`, or of :class:`ScoredReview` for the
    verdict) and the lake column; ``py_type`` its Python type (``str``, ``int``, ``float`` or
    ``datetime``); ``arrow`` the lake column's type; ``required`` whether it always has a
    value (not null in the lake; present and not null in JSON). ``wire`` is where the JSON
    form holds it: ``None`` for a top-level key of the field's name, a path such as
    ``("probabilities", "negative")``, or ``()`` for a lake-only column. ``encode`` turns the
    value into its JSON form (default: ``isoformat()`` for times, the value itself otherwise).
    """

    name: str
    py_type: type
    arrow: pa.DataType
    required: bool = True
    wire: tuple[str, ...] | None = None
    encode: Callable[[Any], Any] | None = None

    @property
    def path(self) -> tuple[str, ...]:
        """Where the JSON form holds the field (``()``: not in it)."""
        return (self.name,) if self.wire is None else self.wire

    @property
    def arrow_field(self) -> pa.Field:
        return pa.field(self.name, self.arrow, nullable=not self.required)

    @property
    def encoder(self) -> Callable[[Any], Any]:
        """What turns a value (not None) into its JSON form."""
        if self.encode is not None:
            return self.encode
        return datetime.isoformat if self.py_type is datetime else _same

    def to_wire(self, value: Any) -> Any:
        """The field's value as JSON holds it."""
        return None if value is None else self.encoder(value)

    def from_wire(self, value: Any) -> Any:
        """The inverse of :meth:`to_wire` (``None`` stays ``None``)."""
        return None if value is None else _FROM_WIRE[self.py_type](value)

    @property
    def encodes(self) -> bool:
        """Whether the JSON form of a value differs from the value."""
        return self.encode is not None or self.py_type is datetime

    def column_to_wire(self, values: list[Any]) -> list[Any]:
        """:meth:`to_wire` of each value (the list itself when JSON holds them as they are)."""
        return [self.to_wire(v) for v in values] if self.encodes else values


#: The fields of :class:`ReviewEvent` (schema_version 1), in its order: the producer's JSON
#: keys (with ``schema_version``), the lake's first columns, the validator's known fields.
#: ``schemas/review-event.v1.schema.json`` publishes them (a test checks that they agree).
EVENT_FIELDS: Final[tuple[FieldSpec, ...]] = (
    FieldSpec("review_id", str, pa.string()),
    FieldSpec("product_id", str, pa.string()),
    FieldSpec("product_category", str, pa.string()),
    FieldSpec("review_text", str, pa.string()),
    FieldSpec("channel", str, pa.string()),
    FieldSpec("event_time", datetime, _TS, encode=_rfc3339),
    FieldSpec("rating", int, pa.int8(), required=False),
    FieldSpec("language", str, pa.string(), required=False),
    FieldSpec("customer_segment", str, pa.string(), required=False),
)

#: The top-level keys of a :class:`ReviewEvent`'s JSON; any other key is an unknown field.
EVENT_WIRE_KEYS: Final = frozenset(("schema_version", *(f.name for f in EVENT_FIELDS)))

#: What scoring adds to an event, as :class:`ScoredReview` attributes (the position's and
#: the partition's as properties) and lake columns, and where ``reviews.enriched`` holds each.
VERDICT_FIELDS: Final[tuple[FieldSpec, ...]] = (
    FieldSpec("sentiment", int, pa.int8()),
    FieldSpec("sentiment_label", str, pa.string()),
    FieldSpec("p_negative", float, pa.float32(), wire=("probabilities", "negative")),
    FieldSpec("p_neutral", float, pa.float32(), wire=("probabilities", "neutral")),
    FieldSpec("p_positive", float, pa.float32(), wire=("probabilities", "positive")),
    FieldSpec("model_name", str, pa.string()),
    FieldSpec("model_version", str, pa.string()),
    FieldSpec("scored_at", datetime, _TS),
    FieldSpec("endpoint_latency_ms", float, pa.float32()),
    FieldSpec("source", str, pa.string(), wire=("source", "source")),
    FieldSpec("source_stream", str, pa.string(), wire=("source", "stream")),
    FieldSpec("source_partition", str, pa.string(), wire=("source", "partition")),
    FieldSpec("source_offset", str, pa.string(), wire=("source", "offset")),
    FieldSpec("dt", str, pa.string(), wire=()),  # the event's UTC date: a partition column
)

#: The verdict's fields that ``reviews.enriched`` holds, in its order.
_VERDICT_WIRE: Final = tuple(f for f in VERDICT_FIELDS if f.path)
#: The top-level keys of a :class:`ScoredReview`'s JSON (``reviews.enriched``).
_SCORED_WIRE_KEYS: Final = EVENT_WIRE_KEYS | {f.path[0] for f in VERDICT_FIELDS if f.path}


def _verdict_layout() -> tuple[tuple[str, tuple[str, ...] | None, tuple[int, ...]], ...]:
    """The verdict's top-level JSON keys in order, each with the keys of its nested object
    (None: a plain value) and the indexes in ``_VERDICT_WIRE`` of its value(s)."""
    layout: dict[str, tuple[list[str] | None, list[int]]] = {}
    for i, f in enumerate(_VERDICT_WIRE):
        inner, indexes = layout.setdefault(f.path[0], ([] if len(f.path) > 1 else None, []))
        if inner is not None:
            inner.append(f.path[1])
        indexes.append(i)
    return tuple(
        (key, None if inner is None else tuple(inner), tuple(indexes))
        for key, (inner, indexes) in layout.items()
    )


_VERDICT_LAYOUT: Final = _verdict_layout()
_VERDICT_KEYS: Final = tuple(key for key, _inner, _indexes in _VERDICT_LAYOUT)


def _verdict_values(values: Sequence[Any]) -> list[Any]:
    """The values of ``_VERDICT_KEYS`` for one review, from the JSON values of its
    ``_VERDICT_WIRE`` fields."""
    return [
        values[indexes[0]]
        if inner is None
        else dict(zip(inner, [values[i] for i in indexes], strict=True))
        for _key, inner, indexes in _VERDICT_LAYOUT
    ]


_JSON: Final = msgspec.json.Encoder()


def _verdict_template() -> bytes:
    """What follows an event's own fields in its ``reviews.enriched`` JSON: the verdict's
    keys, with one ``%b`` for the JSON of each ``_VERDICT_WIRE`` value, in order."""
    parts = []
    for key, inner, _indexes in _VERDICT_LAYOUT:
        value = (
            b"%b"
            if inner is None
            else b"{" + b",".join(_JSON.encode(k) + b":%b" for k in inner) + b"}"
        )
        parts.append(_JSON.encode(key) + b":" + value)
    return b"," + b",".join(parts) + b"}"


_VERDICT_TEMPLATE: Final = _verdict_template()
_VERDICT_KEY_SET: Final = frozenset(_VERDICT_KEYS)


def _json_column(f: FieldSpec, column: pa.ChunkedArray) -> list[bytes]:
    """The JSON of each value of a verdict column (as :meth:`FieldSpec.to_wire` gives it):
    numbers in one encode of the whole column, the others once per distinct value (a
    batch's model, scoring time and source repeat on every row)."""
    import pyarrow.compute as pc

    if not len(column):
        return []
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        # a number's JSON (or null) holds no comma
        return _JSON.encode(column.to_pylist())[1:-1].split(b",")
    coded = pc.dictionary_encode(column, null_encoding="encode").combine_chunks()
    distinct = [_JSON.encode(v) for v in f.column_to_wire(coded.dictionary.to_pylist())]
    return [distinct[i] for i in coded.indices.to_pylist()]


class _WireValues:
    """The JSON values of some fields of an object, read with one getter (the hot paths)."""

    __slots__ = ("_encoded", "_get", "names")

    def __init__(self, fields: Sequence[FieldSpec]) -> None:
        self.names = tuple(f.name for f in fields)
        self._get = _getter(self.names)
        self._encoded = tuple((i, f.to_wire) for i, f in enumerate(fields) if f.encodes)

    def of(self, obj: object) -> Sequence[Any]:
        got = self._get(obj)
        if not self._encoded:
            return got
        values = list(got)
        for i, encode in self._encoded:
            values[i] = encode(values[i])
        return values


def _getter(names: Sequence[str]) -> Callable[[object], tuple[Any, ...]]:
    """One call that reads the attributes ``names`` of an object, as a tuple."""
    get = attrgetter(*names)
    return get if len(names) > 1 else lambda obj: (get(obj),)


# The event's JSON form, in the declaration's order: the required fields are read with one
# getter and those whose JSON form differs are encoded in place; optional fields are left out
# when None.
_EVENT_REQUIRED: Final = tuple(f.name for f in EVENT_FIELDS if f.required)
_GET_REQUIRED: Final = _getter(_EVENT_REQUIRED)
_ENCODE_REQUIRED: Final = tuple(
    (f.name, f.encoder) for f in EVENT_FIELDS if f.required and f.encodes
)
_EVENT_OPTIONAL: Final = tuple(
    (f.name, f.encoder if f.encodes else None) for f in EVENT_FIELDS if not f.required
)
_GET_OPTIONAL: Final = _getter([name for name, _encode in _EVENT_OPTIONAL])
#: The event fields in :meth:`ReviewEvent.to_json_dict`'s order: required, then optional.
_EVENT_WIRE_FIELDS: Final = (
    *(f for f in EVENT_FIELDS if f.required),
    *(f for f in EVENT_FIELDS if not f.required),
)
#: A msgspec struct whose JSON is :meth:`ReviewEvent.to_json_dict`'s without unknown fields,
#: byte for byte: the same keys in the same order, optional fields left out when None (the
#: fast path of :meth:`ScoredBatch.to_json_values`, which passes the encoded values).
_EVENT_WIRE: Final = msgspec.defstruct(
    "EventWire",
    [
        ("schema_version", int),
        *((f.name, Any) if f.required else (f.name, Any, None) for f in _EVENT_WIRE_FIELDS),
    ],
    omit_defaults=True,
)


def _rfc3339_column(column: pa.ChunkedArray | pa.Array) -> list[str]:
    """:func:`_rfc3339` of each value of a UTC timestamp column (no nulls), formatted by
    numpy a column at a time: microseconds when there are any (as ``isoformat`` writes)."""
    us = np.asarray(column.to_numpy(), "datetime64[us]")
    out: list[str] = np.datetime_as_string(us, unit="us", timezone="UTC").tolist()
    whole = np.flatnonzero(us.astype(np.int64) % 1_000_000 == 0)
    if len(whole):
        seconds = np.datetime_as_string(us[whole], unit="s", timezone="UTC").tolist()
        for i, text in zip(whole.tolist(), seconds, strict=True):
            out[i] = text
    return out


def _wire_column(f: FieldSpec, events: Sequence[ReviewEvent], table: pa.Table) -> list[Any]:
    """:meth:`FieldSpec.to_wire` of an event field's value for each event (times from the
    batch's table, formatted a column at a time)."""
    if f.encoder is _rfc3339 and f.required:  # a column without nulls
        return _rfc3339_column(table.column(f.name))
    return f.column_to_wire(list(map(attrgetter(f.name), events)))


_VERDICT: Final = _WireValues(_VERDICT_WIRE)


class Reason(enum.StrEnum):
    """Why a record became a dead letter. Stable codes: dashboards and alerts key on them."""

    BAD_UTF8 = "bad_utf8"  #: not UTF-8, or a string with an unpaired surrogate (``\\ud800``)
    NOT_JSON = "not_json"  #: not one JSON value (NaN, numbers out of range, too deep)
    NOT_OBJECT = "not_object"  #: JSON, but not an object
    MISSING_FIELD = "missing_field"  #: a required field absent or null
    WRONG_TYPE = "wrong_type"  #: a field of the wrong JSON type
    INVALID_VALUE = "invalid_value"  #: a value outside the contract (channel, rating, ids)
    OVERSIZE_TEXT = "oversize_text"  #: review_text over the configured UTF-8 bytes
    BAD_TIMESTAMP = "bad_timestamp"  #: event_time not RFC 3339 with an offset
    UNSUPPORTED_VERSION = "unsupported_version"  #: a schema_version other than 1
    SCORING_REJECTED = "scoring_rejected"  #: the endpoint refused the review for good
    OVERSIZE_RECORD = "oversize_record"  #: the record, or its unknown fields, over the limits
    EVENT_TIME_OUT_OF_RANGE = "event_time_out_of_range"  #: before the floor or too far ahead
    DUPLICATE_FIELD = "duplicate_field"  #: a contract field given twice


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where a record came from: ``stream`` (topic, Kinesis stream or replay name),
    ``partition`` (Kafka partition or Kinesis shard id) and ``offset`` (Kafka offset, Kinesis
    sequence number or replay index). Ordered within one (stream, partition). Kinesis sequence
    numbers exceed 64 bits, so the lake stores offsets as decimal strings."""

    source: str
    stream: str
    partition: str
    offset: int

    @property
    def key(self) -> tuple[str, str, str]:
        """The (source, stream, partition) a position belongs to."""
        return (self.source, self.stream, self.partition)


@dataclass(frozen=True, slots=True)
class ReviewEvent:
    """A customer review as published by producers (JSON, ``schema_version`` 1).

    ``event_time`` is timezone-aware UTC. ``extra`` keeps unknown fields, which the pipeline
    carries but ignores.
    """

    review_id: str
    product_id: str
    product_category: str
    review_text: str
    channel: str
    event_time: datetime
    rating: int | None = None
    language: str | None = None
    customer_segment: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def true_sentiment(self) -> int | None:
        """The ground-truth class when a rating came with the review."""
        return None if self.rating is None else sentiment_from_rating(self.rating)

    def to_json_dict(self) -> dict[str, Any]:
        """The wire form producers publish (unknown fields first, contract fields win)."""
        out: dict[str, Any] = dict(self.extra)
        out["schema_version"] = SCHEMA_VERSION
        out.update(zip(_EVENT_REQUIRED, _GET_REQUIRED(self), strict=True))
        for name, encode in _ENCODE_REQUIRED:
            out[name] = encode(out[name])  # in place: the key keeps its position
        for (name, encoder), value in zip(_EVENT_OPTIONAL, _GET_OPTIONAL(self), strict=True):
            if value is not None:  # optional fields are left out rather than null
                out[name] = value if encoder is None else encoder(value)
        return out

    @classmethod
    def from_json_dict(cls, doc: Mapping[str, Any], known: frozenset[str] | None = None) -> Self:
        """An event from the wire form :meth:`to_json_dict` writes (records from producers
        go through :func:`stream.validation.decode_event` instead); keys not in ``known``
        (default: :data:`EVENT_WIRE_KEYS`) become ``extra``. A missing required field raises
        :class:`KeyError`."""
        known = EVENT_WIRE_KEYS if known is None else known
        values = {
            f.name: f.from_wire(doc[f.name] if f.required else doc.get(f.name))
            for f in EVENT_FIELDS
        }
        return cls(**values, extra={k: v for k, v in doc.items() if k not in known})


@dataclass(frozen=True, slots=True)
class ScoredReview:
    """A review with the model's verdict and where it came from."""

    event: ReviewEvent
    sentiment: int
    p_negative: float
    p_neutral: float
    p_positive: float
    model_name: str
    model_version: str
    scored_at: datetime
    endpoint_latency_ms: float
    position: SourcePosition

    @property
    def sentiment_label(self) -> str:
        return LABELS[self.sentiment]

    # The position's and the partition's lake columns (see VERDICT_FIELDS).
    @property
    def source(self) -> str:
        return self.position.source

    @property
    def source_stream(self) -> str:
        return self.position.stream

    @property
    def source_partition(self) -> str:
        return self.position.partition

    @property
    def source_offset(self) -> str:
        """The offset as the lake and JSON hold it: decimal text (Kinesis's exceed 64 bits)."""
        return str(self.position.offset)

    @property
    def dt(self) -> str:
        """The event's UTC date, ``YYYY-MM-DD``: the lake's date partition."""
        return self.event.event_time.date().isoformat()

    def to_json_dict(self) -> dict[str, Any]:
        """The wire form of ``reviews.enriched``: the event's fields plus the verdict."""
        out = self.event.to_json_dict()
        # Like dict.update: an unknown field of a verdict key's name is replaced in place.
        out.update(zip(_VERDICT_KEYS, _verdict_values(_VERDICT.of(self)), strict=True))
        return out

    @classmethod
    def from_json_dict(cls, doc: Mapping[str, Any]) -> ScoredReview:
        """Inverse of :meth:`to_json_dict` (for consumers of ``reviews.enriched``)."""
        event = ReviewEvent.from_json_dict(doc, _SCORED_WIRE_KEYS)
        v: dict[str, Any] = {}
        for f in _VERDICT_WIRE:
            if f.name == "sentiment_label":
                continue  # follows from sentiment
            value: Any = doc
            for key in f.path:
                value = value[key]
            v[f.name] = f.from_wire(value)
        return cls(
            event=event,
            sentiment=v["sentiment"],
            p_negative=v["p_negative"],
            p_neutral=v["p_neutral"],
            p_positive=v["p_positive"],
            model_name=v["model_name"],
            model_version=v["model_version"],
            scored_at=v["scored_at"],
            endpoint_latency_ms=v["endpoint_latency_ms"],
            position=SourcePosition(
                v["source"], v["source_stream"], v["source_partition"], int(v["source_offset"])
            ),
        )

    @property
    def confidence(self) -> float:
        return max(self.p_negative, self.p_neutral, self.p_positive)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not become a :class:`ReviewEvent`.

    ``raw`` holds the record's bytes as they came, or their first bytes when the record was
    too large to keep whole (see :meth:`truncated`); ``raw_size`` and ``raw_sha256`` always
    describe the whole record (left out, they are computed from ``raw``).
    """

    raw: bytes
    reason: Reason
    detail: str
    position: SourcePosition
    received_at: datetime
    raw_size: int = -1
    raw_sha256: str = ""

    def __post_init__(self) -> None:
        if self.raw_size < 0:
            object.__setattr__(self, "raw_size", len(self.raw))
        if not self.raw_sha256:
            object.__setattr__(self, "raw_sha256", hashlib.sha256(self.raw).hexdigest())

    @classmethod
    def truncated(
        cls,
        raw: bytes,
        reason: Reason,
        detail: str,
        position: SourcePosition,
        received_at: datetime,
        *,
        max_raw_bytes: int,
    ) -> DeadLetter:
        """A dead letter keeping at most ``max_raw_bytes`` of ``raw``, with the size and
        SHA-256 of all of it."""
        return cls(
            raw=raw[:max_raw_bytes] if len(raw) > max_raw_bytes else raw,
            reason=reason,
            detail=detail,
            position=position,
            received_at=received_at,
            raw_size=len(raw),
            raw_sha256=hashlib.sha256(raw).hexdigest(),
        )

    @property
    def is_truncated(self) -> bool:
        """Whether ``raw`` holds only the first bytes of the record."""
        return self.raw_size > len(self.raw)


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Alert:
    """A monitor's finding. ``alert_id`` is stable for one episode (fired ... resolved) so that
    the in-app alert stream and the Prometheus rule of the same name can be correlated.

    ``status`` is ``"firing"`` or ``"resolved"``. ``evidence`` holds JSON-serialisable values
    (window, baseline and current share with interval, counts, example review ids, terms).
    """

    alert_id: str
    name: str
    status: str
    severity: Severity
    category: str
    summary: str
    window_start: datetime
    window_end: datetime
    raised_at: datetime
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "name": self.name,
            "status": self.status,
            "severity": str(self.severity),
            "category": self.category,
            "summary": self.summary,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "raised_at": self.raised_at.isoformat(),
            "evidence": dict(self.evidence),
        }


@dataclass(slots=True)
class Batch:
    """One micro-batch after scoring: what the sinks write and the monitors saw.

    ``positions`` holds, per (source, stream, partition), the last position the batch covers
    (valid and dead records alike): what the source commits once every sink has the batch.
    """

    scored: Sequence[ScoredReview]  #: a :class:`ScoredBatch` on the hot path
    dead: list[DeadLetter]
    positions: dict[tuple[str, str, str], SourcePosition]
    alerts: list[Alert] = field(default_factory=list)
    seq: int = -1  #: delivery order within one pipeline run, set by the core

    @property
    def first_position(self) -> SourcePosition | None:
        """The smallest position of the batch's first partition (names its alert file)."""
        if not self.positions:
            return None
        key = min(self.positions)
        scored_positions = (
            self.scored.positions
            if isinstance(self.scored, ScoredBatch)
            else [r.position for r in self.scored]
        )
        offsets = [p.offset for p in scored_positions if p.key == key]
        offsets += [d.position.offset for d in self.dead if d.position.key == key]
        if not offsets:  # a batch of alerts alone (the Kafka monitor): its one position
            return self.positions[key]
        return SourcePosition(*key, min(offsets))


#: The one lake schema of scored reviews: :data:`EVENT_FIELDS` then :data:`VERDICT_FIELDS`.
#: Partition columns (``dt``, ``product_category``) are part of it so a file read alone is
#: still complete.
SCORED_SCHEMA: Final = pa.schema([f.arrow_field for f in (*EVENT_FIELDS, *VERDICT_FIELDS)])

DEAD_LETTER_SCHEMA: Final = pa.schema(
    [
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("raw", pa.binary(), nullable=False),
        pa.field("raw_size", pa.int64(), nullable=False),
        pa.field("raw_sha256", pa.string(), nullable=False),
        pa.field("received_at", _TS, nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_stream", pa.string(), nullable=False),
        pa.field("source_partition", pa.string(), nullable=False),
        pa.field("source_offset", pa.string(), nullable=False),
        pa.field("dt", pa.string(), nullable=False),
    ]
)

ALERT_SCHEMA: Final = pa.schema(
    [
        pa.field("alert_id", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("severity", pa.string(), nullable=False),
        pa.field("category", pa.string(), nullable=False),
        pa.field("summary", pa.string(), nullable=False),
        pa.field("window_start", _TS, nullable=False),
        pa.field("window_end", _TS, nullable=False),
        pa.field("raised_at", _TS, nullable=False),
        pa.field("evidence_json", pa.string(), nullable=False),
        pa.field("dt", pa.string(), nullable=False),
    ]
)

#: Labels people gave in Label Studio (lake ``labels/``, partitioned by the labelling date):
#: the class (-1/0/1), who (a salted hash of the annotator's id), when, ``source`` ``human``,
#: and from the task: the category, the model's class, why the review was picked and the
#: probability that the audit draw picked it.
LABEL_SCHEMA: Final = pa.schema(
    [
        pa.field("review_id", pa.string(), nullable=False),
        pa.field("label", pa.int8(), nullable=False),
        pa.field("annotator", pa.string(), nullable=False),
        pa.field("labeled_at", _TS, nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("product_category", pa.string(), nullable=False),
        pa.field("predicted", pa.int8(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("inclusion_probability", pa.float64(), nullable=False),
        pa.field("event_time", _TS, nullable=False),
        pa.field("dt", pa.string(), nullable=False),
    ]
)


def _label_names() -> pa.Array:
    # Built on first use: a pa.array at import time would load pandas (pyarrow looks for it).
    return pa.array([LABELS[-1], LABELS[0], LABELS[1]], pa.string())


class ScoredBatch(Sequence[ScoredReview]):
    """The scored reviews of one micro-batch as columns.

    The hot path carries this instead of one :class:`ScoredReview` per event: the decoded
    events, their positions, and the model's verdict as numpy arrays. :attr:`table` is the
    batch as the lake's Arrow table (:data:`SCORED_SCHEMA`), built once, column by column, and
    shared by the lake, the monitor feed and the monitors. Indexing or iterating gives
    :class:`ScoredReview` rows, built on demand, for code (and people) that look at one.

    Built from the scorer's output (:meth:`from_predictions`) or from an Arrow table that
    travelled (:meth:`from_table`, the Kafka monitor feed); a batch from a table has no unknown
    fields (``extra``), which the lake does not keep either.
    """

    def __init__(
        self,
        table: pa.Table | None = None,
        *,
        events: Sequence[ReviewEvent] | None = None,
        positions: Sequence[SourcePosition] | None = None,
        sentiment: npt.NDArray[np.int8] | None = None,
        probabilities: npt.NDArray[np.float32] | None = None,
        model: tuple[str, str] = ("", ""),
        scored_at: datetime | None = None,
        latency_ms: float = 0.0,
    ) -> None:
        self._events = None if events is None else list(events)
        self._positions = None if positions is None else list(positions)
        if table is not None:
            if table.schema != SCORED_SCHEMA:
                table = table.select(SCORED_SCHEMA.names).cast(SCORED_SCHEMA)
            self.__dict__["table"] = table
            self._n = int(table.num_rows)
            self._from_table = True
            return
        self._from_table = False
        if self._events is None or self._positions is None:
            raise ValueError("ScoredBatch needs a table, or events with positions")
        if sentiment is None or probabilities is None or scored_at is None:
            raise ValueError("ScoredBatch needs sentiment, probabilities and scored_at")
        self._n = len(self._events)
        if len(self._positions) != self._n or len(sentiment) != self._n:
            raise ValueError("events, positions and predictions must have one row each")
        self._sentiment = np.asarray(sentiment, dtype=np.int8)
        self._probabilities = np.asarray(probabilities, dtype=np.float32).reshape(self._n, 3)
        self._model = model
        self._scored_at = scored_at
        self._latency_ms = float(latency_ms)

    @classmethod
    def from_predictions(
        cls,
        events: Sequence[ReviewEvent],
        positions: Sequence[SourcePosition],
        sentiment: npt.NDArray[np.int8],
        probabilities: npt.NDArray[np.float32],
        *,
        model: tuple[str, str],
        scored_at: datetime,
        latency_ms: float,
    ) -> ScoredBatch:
        """The verdict of one scoring call: ``sentiment`` in -1/0/1 and ``probabilities``
        (n x 3, negative / neutral / positive), for ``events`` in order."""
        return cls(
            events=events,
            positions=positions,
            sentiment=sentiment,
            probabilities=probabilities,
            model=model,
            scored_at=scored_at,
            latency_ms=latency_ms,
        )

    @classmethod
    def from_table(cls, table: pa.Table) -> ScoredBatch:
        """A batch from its Arrow table (the inverse of :attr:`table`)."""
        return cls(table)

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> ScoredReview: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[ScoredReview]: ...
    def __getitem__(self, index: int | slice) -> ScoredReview | Sequence[ScoredReview]:
        if isinstance(index, slice):
            return [self._row(i) for i in range(*index.indices(self._n))]
        i = int(index)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("ScoredBatch index out of range")
        return self._row(i)

    def __iter__(self) -> Iterator[ScoredReview]:
        for i in range(self._n):
            yield self._row(i)

    @property
    def positions(self) -> list[SourcePosition]:
        """Each row's source position."""
        if self._positions is None:
            t = self.table
            self._positions = [
                SourcePosition(src, stream, part, int(off))
                for src, stream, part, off in zip(
                    t.column("source").to_pylist(),
                    t.column("source_stream").to_pylist(),
                    t.column("source_partition").to_pylist(),
                    t.column("source_offset").to_pylist(),
                    strict=True,
                )
            ]
        return self._positions

    @property
    def events(self) -> list[ReviewEvent]:
        """Each row's event (without unknown fields when the batch came from a table)."""
        if self._events is None:
            # EVENT_FIELDS are ReviewEvent's fields in order (a test checks).
            columns = [self.table.column(f.name).to_pylist() for f in EVENT_FIELDS]
            self._events = [ReviewEvent(*values) for values in zip(*columns, strict=True)]
        return self._events

    @cached_property
    def _verdict(
        self,
    ) -> tuple[list[int], list[list[float]], list[str], list[str], list[Any], list[float]]:
        t = self.table
        probs = np.column_stack(
            [t.column(c).to_numpy() for c in ("p_negative", "p_neutral", "p_positive")]
        )
        return (
            t.column("sentiment").to_pylist(),
            probs.tolist(),
            t.column("model_name").to_pylist(),
            t.column("model_version").to_pylist(),
            t.column("scored_at").to_pylist(),
            t.column("endpoint_latency_ms").to_pylist(),
        )

    def _row(self, i: int) -> ScoredReview:
        event, position = self.events[i], self.positions[i]
        if not self._from_table:
            p = self._probabilities[i]
            return ScoredReview(
                event=event,
                sentiment=int(self._sentiment[i]),
                p_negative=float(p[0]),
                p_neutral=float(p[1]),
                p_positive=float(p[2]),
                model_name=self._model[0],
                model_version=self._model[1],
                scored_at=self._scored_at,
                endpoint_latency_ms=self._latency_ms,
                position=position,
            )
        sentiment, probs, names, versions, scored_at, latency = self._verdict
        return ScoredReview(
            event=event,
            sentiment=int(sentiment[i]),
            p_negative=probs[i][0],
            p_neutral=probs[i][1],
            p_positive=probs[i][2],
            model_name=names[i],
            model_version=versions[i],
            scored_at=scored_at[i],
            endpoint_latency_ms=latency[i],
            position=position,
        )

    def to_json_values(self) -> list[bytes]:
        """Each review's ``reviews.enriched`` value: the msgspec JSON of
        :meth:`ScoredReview.to_json_dict`, byte for byte, with the verdict read from
        :attr:`table` and written from its columns rather than one dict per review."""
        t = self.table
        columns = [_json_column(f, t.column(f.name)) for f in _VERDICT_WIRE]
        # each event field's JSON forms a column at a time (the struct's order: required,
        # then optional), then per review one encode of the struct, unknown fields before it
        events = self.events
        own_columns = [_wire_column(f, events, t) for f in _EVENT_WIRE_FIELDS]
        wire, encode = _EVENT_WIRE, _JSON.encode
        out = []
        for event, own_values, verdict in zip(
            events, zip(*own_columns, strict=True), zip(*columns, strict=True), strict=True
        ):
            tail = _VERDICT_TEMPLATE % verdict
            extra = event.extra
            if extra and not _VERDICT_KEY_SET.isdisjoint(extra):
                # an unknown field of a verdict key's name: replaced where it stands
                doc = event.to_json_dict()
                doc.update(msgspec.json.decode(b"{" + tail[1:]))
                out.append(encode(doc))
                continue
            own = encode(wire(SCHEMA_VERSION, *own_values))
            if extra:
                own = encode(extra)[:-1] + b"," + own[1:]
            out.append(own[:-1] + tail)
        return out

    @cached_property
    def table(self) -> pa.Table:
        """The batch as the lake's table (:data:`SCORED_SCHEMA`), built column by column."""
        import pyarrow.compute as pc

        events, positions, n = self.events, self.positions, self._n
        columns: dict[str, pa.Array] = {
            f.name: pa.array(list(map(attrgetter(f.name), events)), f.arrow) for f in EVENT_FIELDS
        }
        event_time = columns["event_time"]
        label_index = pa.array(self._sentiment.astype(np.int8) + 1, pa.int8())
        probs = self._probabilities
        columns.update(
            sentiment=pa.array(self._sentiment, pa.int8()),
            sentiment_label=pc.take(_label_names(), label_index),
            p_negative=pa.array(probs[:, 0], pa.float32()),
            p_neutral=pa.array(probs[:, 1], pa.float32()),
            p_positive=pa.array(probs[:, 2], pa.float32()),
            model_name=pa.array([self._model[0]] * n, pa.string()),
            model_version=pa.array([self._model[1]] * n, pa.string()),
            scored_at=pa.array([self._scored_at] * n, _TS),
            endpoint_latency_ms=pa.array(np.full(n, self._latency_ms, np.float32)),
            source=pa.array([p.source for p in positions], pa.string()),
            source_stream=pa.array([p.stream for p in positions], pa.string()),
            source_partition=pa.array([p.partition for p in positions], pa.string()),
            source_offset=pa.array([str(p.offset) for p in positions], pa.string()),
            dt=pc.cast(pc.cast(event_time, pa.date32()), pa.string()),
        )
        return pa.Table.from_arrays(
            [columns[name] for name in SCORED_SCHEMA.names], schema=SCORED_SCHEMA
        )


def scored_table(scored: Sequence[ScoredReview]) -> pa.Table:
    """Scored reviews as the lake's table: a :class:`ScoredBatch`'s own, else built row by
    row (rows from tests and from consumers of ``reviews.enriched``)."""
    if isinstance(scored, ScoredBatch):
        return scored.table
    events = [s.event for s in scored]
    cols = {f.name: list(map(attrgetter(f.name), events)) for f in EVENT_FIELDS}
    cols.update({f.name: list(map(attrgetter(f.name), scored)) for f in VERDICT_FIELDS})
    return pa.table(cols, schema=SCORED_SCHEMA)


def source_offsets(table: pa.Table | pa.RecordBatch) -> npt.NDArray[Any]:
    """The rows' source offsets (the ``source_offset`` column, decimal strings) as integers:
    int64, or Python ints where they do not fit (Kinesis sequence numbers exceed 64 bits)."""
    import pyarrow.compute as pc

    column = table.column("source_offset")
    try:
        return np.asarray(pc.cast(column, pa.int64()).to_numpy(), dtype=np.int64)
    except pa.ArrowInvalid:
        return np.array([int(v) for v in column.to_pylist()], dtype=object)
