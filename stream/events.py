"""The event contract: what producers publish and what the pipeline emits.

This module is the one piece of ``stream/`` that ``monitors/`` and ``sinks/`` may import, so it
imports nothing else of this project. It holds:

* :class:`ReviewEvent` (schema_version 1), the record producers publish;
* :class:`SourcePosition`, where a record came from (Kafka offset, Kinesis sequence, replay index);
* :class:`ScoredReview`, the event enriched with the model's verdict;
* :class:`DeadLetter`, a record that failed validation, with a :class:`Reason` code;
* :class:`Alert`, what the monitors raise for the business and operations;
* the Arrow schemas of the lake tables (:data:`SCORED_SCHEMA`, :data:`DEAD_LETTER_SCHEMA`,
  :data:`ALERT_SCHEMA`).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import pyarrow as pa

__all__ = [
    "ALERT_SCHEMA",
    "CHANNELS",
    "DEAD_LETTER_SCHEMA",
    "LABELS",
    "SCHEMA_VERSION",
    "SCORED_SCHEMA",
    "Alert",
    "Batch",
    "DeadLetter",
    "Reason",
    "ReviewEvent",
    "ScoredReview",
    "Severity",
    "SourcePosition",
    "sentiment_from_rating",
]

SCHEMA_VERSION: Final = 1

#: The channels a review can arrive through. Anything else is a dead letter.
CHANNELS: Final = ("web", "app", "email", "chat", "call", "social", "partner")

#: Sentiment classes in model column order, and their names.
LABELS: Final[Mapping[int, str]] = {-1: "negative", 0: "neutral", 1: "positive"}


def sentiment_from_rating(rating: int) -> int:
    """Ground truth from a star rating: 1-2 negative (-1), 3 neutral (0), 4-5 positive (1)."""
    if not 1 <= rating <= 5:
        raise ValueError(f"rating must be 1..5, got {rating}")
    if rating <= 2:
        return -1
    return 0 if rating == 3 else 1


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
        out.update(
            schema_version=SCHEMA_VERSION,
            review_id=self.review_id,
            product_id=self.product_id,
            product_category=self.product_category,
            review_text=self.review_text,
            channel=self.channel,
            event_time=self.event_time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        )
        for name in ("rating", "language", "customer_segment"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


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

    def to_json_dict(self) -> dict[str, Any]:
        """The wire form of ``reviews.enriched``: the event's fields plus the verdict."""
        out = self.event.to_json_dict()
        out.update(
            sentiment=self.sentiment,
            sentiment_label=self.sentiment_label,
            probabilities={
                "negative": self.p_negative,
                "neutral": self.p_neutral,
                "positive": self.p_positive,
            },
            model_name=self.model_name,
            model_version=self.model_version,
            scored_at=self.scored_at.isoformat(),
            endpoint_latency_ms=self.endpoint_latency_ms,
            source={
                "source": self.position.source,
                "stream": self.position.stream,
                "partition": self.position.partition,
                "offset": str(self.position.offset),
            },
        )
        return out

    @classmethod
    def from_json_dict(cls, doc: Mapping[str, Any]) -> ScoredReview:
        """Inverse of :meth:`to_json_dict` (for consumers of ``reviews.enriched``)."""
        known = {
            "schema_version", "review_id", "product_id", "product_category", "review_text",
            "channel", "event_time", "rating", "language", "customer_segment", "sentiment",
            "sentiment_label", "probabilities", "model_name", "model_version", "scored_at",
            "endpoint_latency_ms", "source",
        }  # fmt: skip
        event = ReviewEvent(
            review_id=doc["review_id"],
            product_id=doc["product_id"],
            product_category=doc["product_category"],
            review_text=doc["review_text"],
            channel=doc["channel"],
            event_time=datetime.fromisoformat(doc["event_time"]),
            rating=doc.get("rating"),
            language=doc.get("language"),
            customer_segment=doc.get("customer_segment"),
            extra={k: v for k, v in doc.items() if k not in known},
        )
        probs, src = doc["probabilities"], doc["source"]
        return cls(
            event=event,
            sentiment=int(doc["sentiment"]),
            p_negative=float(probs["negative"]),
            p_neutral=float(probs["neutral"]),
            p_positive=float(probs["positive"]),
            model_name=doc["model_name"],
            model_version=doc["model_version"],
            scored_at=datetime.fromisoformat(doc["scored_at"]),
            endpoint_latency_ms=float(doc["endpoint_latency_ms"]),
            position=SourcePosition(
                src["source"], src["stream"], src["partition"], int(src["offset"])
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

    scored: list[ScoredReview]
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
        offsets = [r.position.offset for r in self.scored if r.position.key == key]
        offsets += [d.position.offset for d in self.dead if d.position.key == key]
        return SourcePosition(*key, min(offsets))


_TS = pa.timestamp("us", tz="UTC")

#: The one lake schema of scored reviews. Partition columns (``dt``, ``product_category``) are
#: part of it so a file read alone is still complete.
SCORED_SCHEMA: Final = pa.schema(
    [
        pa.field("review_id", pa.string(), nullable=False),
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("product_category", pa.string(), nullable=False),
        pa.field("review_text", pa.string(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("event_time", _TS, nullable=False),
        pa.field("rating", pa.int8()),
        pa.field("language", pa.string()),
        pa.field("customer_segment", pa.string()),
        pa.field("sentiment", pa.int8(), nullable=False),
        pa.field("sentiment_label", pa.string(), nullable=False),
        pa.field("p_negative", pa.float32(), nullable=False),
        pa.field("p_neutral", pa.float32(), nullable=False),
        pa.field("p_positive", pa.float32(), nullable=False),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("scored_at", _TS, nullable=False),
        pa.field("endpoint_latency_ms", pa.float32(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_stream", pa.string(), nullable=False),
        pa.field("source_partition", pa.string(), nullable=False),
        pa.field("source_offset", pa.string(), nullable=False),
        pa.field("dt", pa.string(), nullable=False),
    ]
)

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
