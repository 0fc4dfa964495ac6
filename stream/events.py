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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from operator import attrgetter
from typing import Any, Final, overload

import numpy as np
import numpy.typing as npt
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
    "ScoredBatch",
    "ScoredReview",
    "Severity",
    "SourcePosition",
    "scored_table",
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


def _label_names() -> pa.Array:
    # Built on first use: a pa.array at import time would load pandas (pyarrow looks for it).
    return pa.array([LABELS[-1], LABELS[0], LABELS[1]], pa.string())


_EVENT_COLUMNS: Final = (
    "review_id",
    "product_id",
    "product_category",
    "review_text",
    "channel",
    "language",
    "customer_segment",
)


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
            cols = {name: self.table.column(name).to_pylist() for name in _EVENT_COLUMNS}
            times = self.table.column("event_time").to_pylist()
            ratings = self.table.column("rating").to_pylist()
            self._events = [
                ReviewEvent(
                    review_id=cols["review_id"][i],
                    product_id=cols["product_id"][i],
                    product_category=cols["product_category"][i],
                    review_text=cols["review_text"][i],
                    channel=cols["channel"][i],
                    event_time=times[i],
                    rating=ratings[i],
                    language=cols["language"][i],
                    customer_segment=cols["customer_segment"][i],
                )
                for i in range(self._n)
            ]
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

    @cached_property
    def table(self) -> pa.Table:
        """The batch as the lake's table (:data:`SCORED_SCHEMA`), built column by column."""
        import pyarrow.compute as pc

        events, positions, n = self.events, self.positions, self._n
        event_time = pa.array([e.event_time for e in events], _TS)
        sentiment = pa.array(self._sentiment, pa.int8())
        label_index = pa.array(self._sentiment.astype(np.int8) + 1, pa.int8())
        probs = self._probabilities
        columns: dict[str, pa.Array] = {
            name: pa.array(list(map(attrgetter(name), events)), pa.string())
            for name in _EVENT_COLUMNS
        }
        columns.update(
            event_time=event_time,
            rating=pa.array([e.rating for e in events], pa.int8()),
            sentiment=sentiment,
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
    cols: dict[str, list[Any]] = {name: [] for name in SCORED_SCHEMA.names}
    for s in scored:
        ev, pos = s.event, s.position
        for name in _EVENT_COLUMNS:
            cols[name].append(getattr(ev, name))
        cols["event_time"].append(ev.event_time)
        cols["rating"].append(ev.rating)
        cols["sentiment"].append(s.sentiment)
        cols["sentiment_label"].append(s.sentiment_label)
        cols["p_negative"].append(s.p_negative)
        cols["p_neutral"].append(s.p_neutral)
        cols["p_positive"].append(s.p_positive)
        cols["model_name"].append(s.model_name)
        cols["model_version"].append(s.model_version)
        cols["scored_at"].append(s.scored_at)
        cols["endpoint_latency_ms"].append(s.endpoint_latency_ms)
        cols["source"].append(pos.source)
        cols["source_stream"].append(pos.stream)
        cols["source_partition"].append(pos.partition)
        cols["source_offset"].append(str(pos.offset))
        cols["dt"].append(ev.event_time.date().isoformat())
    return pa.table(cols, schema=SCORED_SCHEMA)
