"""Prometheus metrics of the pipeline, on a registry of its own (no globals).

Naming follows Prometheus practice: prefix ``sentiment_``, base units, ``_total`` on counters.
Labels come only from bounded sets: product categories outside the configured allow-list are
reported as ``other``; review ids and texts never become labels. Monitor statistics are
exported through :class:`ReadingsCollector`, a one-method collector over the monitors' own
readings, so the monitors stay free of Prometheus.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitors.readings import Reading
from stream.events import LABELS, Batch, Reason, category_or_other, scored_table
from stream.pipeline import mix_counts

__all__ = [
    "ENDPOINT_ERROR_KINDS",
    "LATENCY_BUCKETS",
    "READINGS_TIMEOUT_S",
    "PipelineMetrics",
    "Reading",
    "ReadingSource",
    "ReadingsCollector",
]

#: the ``kind`` values of ``sentiment_endpoint_errors_total``
ENDPOINT_ERROR_KINDS = ("throttled", "server", "timeout", "connection", "rejected")
#: How long a scrape waits for the monitors' event loop to take their readings.
READINGS_TIMEOUT_S = 5.0
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@runtime_checkable
class ReadingSource(Protocol):
    def readings(self) -> Sequence[Reading]: ...


class ReadingsCollector(Collector):
    """Exposes whatever the monitors currently report, grouped into metric families.

    ``/metrics`` is answered from the HTTP server's thread, while the monitors change on
    ``loop``'s thread: read from there, the suite could change under the reading (a window's
    panes added mid-sum raised ``dictionary changed size during iteration``, so the scrape
    failed, and a scrape could mix two batches). So when ``loop`` is given and running, the
    readings are taken on it, between two of its steps, and a scrape waits up to ``timeout_s``
    for them (:class:`TimeoutError` past that: the scrape fails rather than read a suite being
    changed)."""

    def __init__(
        self,
        source: ReadingSource,
        loop: asyncio.AbstractEventLoop | None = None,
        timeout_s: float = READINGS_TIMEOUT_S,
    ) -> None:
        self._source = source
        self._loop = loop
        self._timeout_s = timeout_s

    def readings(self) -> list[Reading]:
        """The source's readings, taken on ``loop`` when it runs in another thread."""
        loop = self._loop
        if loop is None or not loop.is_running() or _running_loop() is loop:
            return list(self._source.readings())
        taken: concurrent.futures.Future[list[Reading]] = concurrent.futures.Future()

        def take() -> None:
            if taken.set_running_or_notify_cancel():  # not given up on by the scrape
                try:
                    taken.set_result(list(self._source.readings()))
                except Exception as err:  # noqa: BLE001 - the scrape reports it
                    taken.set_exception(err)

        loop.call_soon_threadsafe(take)
        try:
            return taken.result(self._timeout_s)
        finally:
            taken.cancel()  # a no-op once taken

    def collect(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for r in self.readings():
            family = families.get(r.name)
            if family is None:
                names = sorted(r.labels)
                if r.kind == "counter":
                    base = r.name.removesuffix("_total")
                    family = CounterMetricFamily(base, r.documentation, labels=names)
                else:
                    family = GaugeMetricFamily(r.name, r.documentation, labels=names)
                families[r.name] = family
            family.add_metric([r.labels[k] for k in sorted(r.labels)], r.value)
        yield from families.values()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _Metric(NamedTuple):
    """One row of :data:`_METRICS`: a metric of :class:`PipelineMetrics` and its attribute."""

    attribute: str
    kind: type[Counter] | type[Gauge] | type[Histogram]
    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None


#: Every metric of :class:`PipelineMetrics`: a new metric is one row here (and one annotation).
_METRICS: tuple[_Metric, ...] = (
    _Metric(
        "records_in",
        Counter,
        "sentiment_records_received_total",
        "Raw records taken from the source (valid and invalid).",
        ("source",),
    ),
    _Metric(
        "scored",
        Counter,
        "sentiment_reviews_scored_total",
        "Reviews scored, by product category and predicted sentiment.",
        ("product_category", "sentiment"),
    ),
    _Metric(
        "dead_letters",
        Counter,
        "sentiment_dead_letters_total",
        "Records sent to the dead-letter output, by reason code.",
        ("reason",),
    ),
    _Metric(
        "batch_records",
        Histogram,
        "sentiment_batch_records",
        "Records per micro-batch.",
        buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000),
    ),
    _Metric(
        "endpoint_latency",
        Histogram,
        "sentiment_endpoint_latency_seconds",
        "Time to score one request (all retries included).",
        buckets=LATENCY_BUCKETS,
    ),
    _Metric(
        "endpoint_errors",
        Counter,
        "sentiment_endpoint_errors_total",
        "Failed scoring requests, by kind (throttled, server, timeout, connection, rejected).",
        ("kind",),
    ),
    _Metric(
        "sink_latency",
        Histogram,
        "sentiment_sink_write_seconds",
        "Time for one sink to store one batch.",
        ("sink",),
        LATENCY_BUCKETS,
    ),
    _Metric(
        "sink_errors",
        Counter,
        "sentiment_sink_errors_total",
        "Failed sink writes (retried), by sink.",
        ("sink",),
    ),
    _Metric(
        "lake_bytes",
        Counter,
        "sentiment_lake_written_bytes_total",
        "Parquet bytes written to the lake.",
    ),
    _Metric(
        "end_to_end_lag",
        Histogram,
        "sentiment_end_to_end_lag_seconds",
        "Time from a review's event_time to its scoring.",
        buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 21600, 86400),
    ),
    _Metric(
        "event_lag",
        Gauge,
        "sentiment_event_lag_seconds",
        "Processing time minus the newest event_time of the last batch (end-to-end lag).",
    ),
    _Metric(
        "alerts",
        Counter,
        "sentiment_alerts_total",
        "Alert transitions raised by the monitors, by alert name and status.",
        ("alertname", "status"),
    ),
    _Metric(
        "last_batch",
        Gauge,
        "sentiment_last_batch_timestamp_seconds",
        "Unix time at which the last batch was delivered.",
    ),
    _Metric(
        "queue_depth",
        Gauge,
        "sentiment_inflight_batches",
        "Batches accepted but not yet delivered (backpressure when at its limit).",
    ),
    _Metric(
        "consumer_lag",
        Gauge,
        "sentiment_consumer_lag_records",
        "Kafka records of the reviews topic not yet committed by this worker's group (log "
        "end offset minus committed offset), by partition.",
        ("partition",),
    ),
    _Metric(
        "feed_owned",
        Gauge,
        "sentiment_monitor_feed_owned",
        "Kafka: 1 while this worker holds the monitor feed (it runs the monitors, selects "
        "reviews and saves the monitor state), else 0.",
    ),
    _Metric(
        "state_discarded",
        Counter,
        "sentiment_monitor_state_discarded_total",
        "Saved monitor states the monitors could not continue from (not JSON, another "
        "version, other categories, malformed): the monitors started afresh instead.",
    ),
    _Metric(
        "restarts",
        Counter,
        "sentiment_pipeline_restarts_total",
        "Times a worker's pipeline failed inside and restarted from the committed offsets.",
    ),
    _Metric(
        "newest_event",
        Gauge,
        "sentiment_newest_event_timestamp_seconds",
        "Newest event_time accepted so far (Unix time): compare with time() to see events "
        "from the future or a stalled stream.",
    ),
)


def _register(row: _Metric, registry: CollectorRegistry) -> Counter | Gauge | Histogram:
    if row.kind is Histogram:
        if row.buckets is None:
            raise ValueError(f"histogram {row.name} needs its buckets")
        return Histogram(row.name, row.help, row.labels, buckets=row.buckets, registry=registry)
    if row.buckets is not None:
        raise ValueError(f"{row.name}: only a histogram has buckets")
    return row.kind(row.name, row.help, row.labels, registry=registry)


class PipelineMetrics:
    """Counters and histograms the core and its adapters update once per batch (one attribute
    per row of :data:`_METRICS`)."""

    records_in: Counter
    scored: Counter
    dead_letters: Counter
    batch_records: Histogram
    endpoint_latency: Histogram
    endpoint_errors: Counter
    sink_latency: Histogram
    sink_errors: Counter
    lake_bytes: Counter
    end_to_end_lag: Histogram
    event_lag: Gauge
    alerts: Counter
    last_batch: Gauge
    queue_depth: Gauge
    consumer_lag: Gauge
    feed_owned: Gauge
    state_discarded: Counter
    restarts: Counter
    newest_event: Gauge

    def __init__(
        self,
        categories: Collection[str],
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self._categories = frozenset(categories)
        self._clock = clock
        self._newest = 0.0
        for row in _METRICS:
            setattr(self, row.attribute, _register(row, self.registry))
        for reason in Reason:  # every code exists from the start, so rate() sees the 0
            self.dead_letters.labels(reason.value)
        for kind in ENDPOINT_ERROR_KINDS:  # likewise: the first error is not lost to rate()
            self.endpoint_errors.labels(kind)

    def category(self, value: str) -> str:
        """The label value for a product category: itself if allowed, else ``other``."""
        return category_or_other(value, self._categories)

    def observe_batch(self, batch: Batch, source: str) -> None:
        """Count one delivered batch (on its columns: no per-review objects)."""
        now = self._clock()
        self.records_in.labels(source).inc(len(batch.scored) + len(batch.dead))
        self.batch_records.observe(len(batch.scored) + len(batch.dead))
        counts: dict[tuple[str, str], int] = {}
        for (category, sentiment), n in mix_counts(batch.scored).items():
            key = (self.category(category), LABELS[sentiment])
            counts[key] = counts.get(key, 0) + n
        for (cat, label), n in counts.items():
            self.scored.labels(cat, label).inc(n)
        for d in batch.dead:
            self.dead_letters.labels(d.reason.value).inc()
        for a in batch.alerts:
            self.alerts.labels(a.name, a.status).inc()
        if batch.scored:
            table = scored_table(batch.scored)
            self.endpoint_latency.observe(batch.scored[0].endpoint_latency_ms / 1000.0)
            event_us = table.column("event_time").cast(pa.int64()).to_numpy()
            scored_us = table.column("scored_at").cast(pa.int64()).to_numpy()
            newest = float(event_us.max()) / 1e6
            self.event_lag.set(max(0.0, now - newest))
            self.newest_event.set(max(newest, self._newest))
            self._newest = max(newest, self._newest)
            lags = np.maximum(0.0, (scored_us - event_us) / 1e6)
            for lag in lags.tolist():
                self.end_to_end_lag.observe(lag)
        self.last_batch.set(now)
