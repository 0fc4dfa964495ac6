"""Wiring: builds the pipeline's parts from :class:`~stream.settings.Settings` and runs it.

The CLI and the transport workers call these functions; nothing here knows about the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.abc
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from prometheus_client import start_http_server

from stream.events import Alert, Batch, SourcePosition
from stream.metrics import PipelineMetrics, ReadingsCollector, ReadingSource
from stream.pipeline import (
    AlertSink,
    BatchSource,
    CommitListener,
    Monitor,
    Pipeline,
    PipelineOptions,
    Scorer,
    Sink,
    Source,
)
from stream.settings import Settings
from stream.validation import DecodeLimits

if TYPE_CHECKING:
    from sinks.lake import LakeSink
    from stream.review import ReviewLoop

__all__ = [
    "MetricsServer",
    "MetricsUnavailable",
    "Runtime",
    "TimedSink",
    "build_monitor",
    "build_review_loop",
    "build_scorer",
    "close_scorer",
    "discard_saved_state",
    "keep_pandas_unloaded",
    "pipeline_options",
    "run_pipeline",
]

log = logging.getLogger(__name__)


class TimedSink:
    """Wraps a sink to time its writes into the metrics (keeps sinks free of Prometheus)."""

    def __init__(self, sink: Sink, name: str, metrics: PipelineMetrics) -> None:
        self._sink = sink
        self._name = name
        self._metrics = metrics
        self._bytes = 0
        self._retries = 0

    async def write(self, batch: Batch) -> None:
        started = time.perf_counter()
        try:
            await self._sink.write(batch)
        except Exception:
            self._metrics.sink_errors.labels(self._name).inc()
            raise
        finally:
            self._observe_counters()
        self._metrics.sink_latency.labels(self._name).observe(time.perf_counter() - started)

    def _observe_counters(self) -> None:
        """Carry the sink's own counters (bytes written, retried writes) into the metrics."""
        written = getattr(self._sink, "bytes_written", None)
        if isinstance(written, int) and written > self._bytes:
            self._metrics.lake_bytes.inc(written - self._bytes)
            self._bytes = written
        retries = getattr(getattr(self._sink, "writer", None), "retries", None)
        if isinstance(retries, int) and retries > self._retries:
            self._metrics.sink_errors.labels(self._name).inc(retries - self._retries)
            self._retries = retries

    def durable_seq(self) -> int:
        return self._sink.durable_seq()

    async def committed(self, positions: Mapping[tuple[str, str, str], SourcePosition]) -> None:
        """Passed on to a sink that listens for commits (a :class:`CommitListener`)."""
        if isinstance(self._sink, CommitListener):
            await self._sink.committed(positions)

    async def flush(self) -> None:
        try:
            await self._sink.flush()
        finally:
            self._observe_counters()

    async def close(self) -> None:
        await self._sink.close()


def sink_name(sink: Sink | AlertSink) -> str:
    """The ``sink`` label of a sink or alert output: ``lake``, ``topics``, ``alert_log``, ...
    (the same on every path)."""
    names = {
        "LakeSink": "lake",
        "KafkaTopicsSink": "topics",
        "MonitorFeedSink": "monitor_feed",
        "JsonlAlertSink": "alert_log",
        "WebhookAlertSink": "webhook",
        "SnsAlertSink": "sns",
        "ReviewQueue": "review_queue",
    }
    return names.get(type(sink).__name__, type(sink).__name__.lower())


def build_scorer(settings: Settings, metrics: PipelineMetrics | None = None) -> Scorer:
    """The scorer the settings ask for. With ``metrics``, an endpoint scorer reports failed
    requests to ``sentiment_endpoint_errors_total`` and its circuit breaker's state to the
    same registry. Close what this returns with :func:`close_scorer`."""
    from stream.scoring import InProcessScorer

    if settings.endpoint.mode == "inprocess":
        return InProcessScorer(settings.endpoint.model_dir)
    from stream.endpoint_client import EndpointScorer

    if metrics is None:
        return EndpointScorer(settings.endpoint)
    errors = metrics.endpoint_errors
    scorer = EndpointScorer(settings.endpoint, on_error=lambda kind: errors.labels(kind).inc())
    metrics.registry.register(ReadingsCollector(scorer))
    return scorer


async def close_scorer(scorer: Scorer) -> None:
    """Release what a scorer holds (the endpoint client's connections), if it has a ``close``."""
    close = getattr(scorer, "close", None)
    if close is not None:
        await close()


def monitor_config(settings: Settings) -> Any:
    """The monitors' plain-value config, with the model's validation confusion matrix; the
    model's vocabulary; and its explainer (each text's per-term contributions to the negative
    score, for alert evidence; None for a transformer flavour)."""
    from functools import partial

    from endpoint.explain import negative_contributions
    from endpoint.model import SentimentModel
    from stream.scoring import load_model

    model = load_model(settings.endpoint.model_dir)  # the in-process scorer's, when it runs
    cm = model.confusion_matrix
    confusion = None if cm is None else tuple(tuple(int(v) for v in row) for row in cm.T)
    config = plain_monitor_config(settings, confusion)
    # per-term evidence is the TF-IDF flavour's; a transformer's alerts carry none
    explainer = (
        partial(negative_contributions, model) if isinstance(model, SentimentModel) else None
    )
    return config, model.vocabulary, explainer


def plain_monitor_config(settings: Settings, confusion: Any = None) -> Any:
    """The monitors' config from the settings alone (``confusion``: the model's validation
    confusion matrix [predicted][true], when the caller has the model): what the pipeline
    tests with, and the levels the report draws."""
    from monitors import MonitorConfig

    m = settings.monitor
    return MonitorConfig(
        categories=tuple(settings.categories),
        window=m.window,
        allowed_lateness=m.allowed_lateness,
        min_count=m.min_count,
        false_alarm_rate=m.false_alarm_rate,
        baseline_events=m.baseline_events,
        confusion=confusion,
    )


def build_monitor(settings: Settings, state: Mapping[str, Any] | None = None) -> Monitor:
    """The monitor suite, fresh (baseline from a file or the first events) or restored from
    a saved ``state``; :class:`~stream.monitor_state.UnusableMonitorState` when the suite
    cannot continue from it (another version, other categories, a malformed part)."""
    from monitors import MonitorSuite, loads_baseline
    from stream.errors import describe
    from stream.monitor_state import UnusableMonitorState

    config, vocabulary, explainer = monitor_config(settings)
    if state:
        try:
            return MonitorSuite.from_state(
                config, state, vocabulary=vocabulary, explainer=explainer
            )
        except Exception as err:  # whatever a malformed state makes one of its parts raise
            reason = f"the monitors cannot continue from it: {describe(err)}"
            raise UnusableMonitorState(reason) from err
    baseline = None
    if settings.monitor.baseline_path is not None:
        baseline = loads_baseline(settings.monitor.baseline_path.read_text())
    return MonitorSuite(config, baseline, vocabulary=vocabulary, explainer=explainer)


class MetricsUnavailable(RuntimeError):
    """``/metrics`` could not be served (its port is taken, or the host is not this one's)."""


@dataclass(slots=True)
class MetricsServer:
    """The ``/metrics`` HTTP endpoint, served from a thread while the pipeline runs."""

    metrics: PipelineMetrics
    host: str
    port: int
    _server: Any = None

    def start(
        self,
        sources: Sequence[ReadingSource] = (),
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Serve; the readings of ``sources`` are taken on ``loop``, the event loop that
        changes them (see :class:`~stream.metrics.ReadingsCollector`)."""
        for source in sources:
            self.metrics.registry.register(ReadingsCollector(source, loop))
        try:
            self._server, _thread = start_http_server(
                self.port, addr=self.host, registry=self.metrics.registry
            )
        except OSError as err:
            raise MetricsUnavailable(
                f"cannot serve /metrics on {self.host}:{self.port}: {err.strerror or err}; "
                "set SENTIMENT_METRICS_PORT to a free port (0: any)"
            ) from err
        self.port = self._server.server_port  # the port taken, when asked for any (0)
        log.info("serving /metrics on http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@contextlib.contextmanager
def _signals(stop: Callable[[], None]) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


class _NoPandas(importlib.abc.MetaPathFinder):
    """``import pandas`` fails while this finder is first on ``sys.meta_path``."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: object = None
    ) -> ModuleSpec | None:
        if fullname == "pandas":
            raise ModuleNotFoundError("not loaded by a streaming process", name=fullname)
        return None


def keep_pandas_unloaded(settings: Settings) -> None:
    """Keep pandas (40 MB and 0.8 s) out of a streaming process, unless its lake is on S3,
    where awswrangler brings it anyway.

    pyarrow imports pandas the first time it converts any Python list or numpy array:
    ``pa.array`` first asks whether the value is a pandas object. This lets that one probe
    find no pandas, so pyarrow treats values as the plain lists and arrays they are. A later
    explicit conversion (``to_pandas``, ``from_pandas``) still imports pandas, and pandas
    objects still convert (tests/unit/test_startup_imports.py)."""
    from stream.lake_factory import is_s3_lake

    if "pandas" in sys.modules or is_s3_lake(settings):
        return
    finder = _NoPandas()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([0])  # pyarrow's one probe for pandas
    finally:
        sys.meta_path.remove(finder)


class Runtime:
    """The parts every path shares, built once from :class:`Settings`: metrics, the scorer,
    the lake, the alert outputs (alert log, webhook, SNS) and the ``/metrics`` server. A path
    (embedded replay, Kafka, Kinesis) only chooses its source and adds the outputs its
    transport has (Kafka topics); :meth:`pipeline` assembles the core from the rest.

    Use ``async with Runtime(settings) as rt:``; leaving closes the scorer (when this runtime
    built it), the notifiers and the metrics server.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: PipelineMetrics | None = None,
        scorer: Scorer | None = None,
    ) -> None:
        from sinks.webhook import build_notifiers

        keep_pandas_unloaded(settings)
        self.settings = settings
        self.metrics = metrics or PipelineMetrics(settings.categories)
        self._own_scorer = scorer is None
        self.scorer = scorer or build_scorer(settings, self.metrics)
        self.notifiers = build_notifiers(settings.alerts)  # webhook / SNS, when configured
        self._server = MetricsServer(self.metrics, settings.metrics_host, settings.metrics_port)

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def serve_metrics(
        self,
        monitor: object | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        review: ReviewLoop | None = None,
    ) -> None:
        """Serve ``/metrics``, with the readings of ``monitor`` (when it has any) and of the
        ``review`` loop taken on ``loop``, the event loop that runs them. The review store's
        outbox depth is read on the scrape's thread (:class:`stream.review.OutboxReadings`)."""
        sources = [monitor] if isinstance(monitor, ReadingSource) else []
        if review is not None:
            self.metrics.registry.register(ReadingsCollector(review.outbox))
            sources.append(review)
        self._server.start(sources, loop)

    def lake(self, guard: Callable[[], None] | None = None) -> LakeSink:
        """A fresh lake sink (a Kafka generation gets its own, so nothing of a failed one
        is carried over); ``guard``: see :class:`sinks.lake.LakeSink`."""
        from stream.lake_factory import build_lake_sink

        return build_lake_sink(self.settings, guard=guard)

    def alert_sinks(self) -> list[AlertSink]:
        """Where alerts go besides the lake: the alert log (``alerts_path``, when set) and
        every configured notifier."""
        from sinks import JsonlAlertSink

        return [JsonlAlertSink(self.settings.alerts_path), *self.notifiers]

    def pipeline(
        self,
        source: Source | BatchSource,
        sinks: Sequence[Sink],
        monitor: Monitor,
        *,
        source_name: str,
        alert_sinks: Sequence[AlertSink] | None = None,
        on_batch: Callable[[Batch], None] | None = None,
    ) -> Pipeline:
        """The core over ``source`` with every sink timed into the metrics."""
        metrics = self.metrics

        def batch_done(batch: Batch) -> None:
            metrics.observe_batch(batch, source_name)
            if on_batch is not None:
                on_batch(batch)

        pipeline = Pipeline(
            source,
            self.scorer,
            [TimedSink(s, sink_name(s), metrics) for s in sinks],
            monitor,
            self.alert_sinks() if alert_sinks is None else alert_sinks,
            options=pipeline_options(self.settings),
            on_batch=batch_done,
        )
        metrics.queue_depth.set_function(lambda: pipeline.inflight_batches)
        return pipeline

    async def close(self) -> None:
        self._server.stop()
        for notifier in self.notifiers:
            await notifier.close()
        if self._own_scorer:
            await close_scorer(self.scorer)


def pipeline_options(settings: Settings) -> PipelineOptions:
    return PipelineOptions(
        max_batch_events=settings.batch.max_events,
        max_batch_wait_s=settings.batch.max_wait_ms / 1000.0,
        queue_batches=settings.batch.queue_batches,
        max_text_bytes=settings.max_text_bytes,
        decode_limits=DecodeLimits.from_settings(settings),
        categories=tuple(settings.categories),
    )


def discard_saved_state(
    err: Exception,
    metrics: PipelineMetrics,
    afresh: str = "the monitors start afresh (windows, counts and baseline begin again)",
) -> None:
    """Say that the saved monitor state cannot be continued from (``err``, an
    :class:`~stream.monitor_state.UnusableMonitorState`) and what starts ``afresh``
    instead: logged, and counted in ``sentiment_monitor_state_discarded_total``. A worker
    that stopped on it instead would stop the stream (Kinesis) or retry the monitor feed
    for ever (Kafka); this way only the windows, counts and baseline begin again. The next
    save replaces the unusable state."""
    log.error("the saved monitor state cannot be continued from, so %s: %s", afresh, err)
    metrics.state_discarded.inc()


async def run_pipeline(
    settings: Settings,
    source: Source | BatchSource,
    sinks: Sequence[Sink] | None = None,
    *,
    source_name: str,
    scorer: Scorer | None = None,
    monitor: Monitor | None = None,
    metrics: PipelineMetrics | None = None,
    on_batch: Callable[[Batch], None] | None = None,
    on_alert: Callable[[Alert], None] | None = None,
    serve_metrics: bool = True,
    linger_s: float = 0.0,
    lake: LakeSink | None = None,
    alert_sinks: Sequence[AlertSink] | None = None,
) -> Pipeline:
    """Runs the core over ``source`` with every output the settings configure (lake, alert
    log, notifiers, monitors, metrics) until the source ends or SIGINT/SIGTERM; returns the
    finished pipeline (its ``summary`` says what happened). The embedded replay and the
    Kinesis worker both run through here; they differ only in their source. ``sinks``
    replaces the lake (``lake`` gives the lake sink to use); ``alert_sinks`` replaces the
    configured alert outputs."""
    async with Runtime(settings, metrics=metrics, scorer=scorer) as rt:
        monitor = monitor or build_monitor(settings)
        review = build_review_loop(settings)
        if serve_metrics:
            rt.serve_metrics(monitor, asyncio.get_running_loop(), review)

        def batch_done(batch: Batch) -> None:
            if on_alert is not None:
                for alert in batch.alerts:
                    on_alert(alert)
            if on_batch is not None:
                on_batch(batch)

        outputs: list[Sink] = list(sinks) if sinks is not None else [lake or rt.lake()]
        if review is not None:
            outputs.append(review.queue)
            review.reference = lambda: getattr(monitor, "baseline", None)
        pipeline = rt.pipeline(
            source,
            outputs,
            monitor,
            source_name=source_name,
            alert_sinks=alert_sinks,
            on_batch=batch_done,
        )
        stopped = asyncio.Event()

        def stop() -> None:
            stopped.set()
            pipeline.stop()

        try:
            if review is not None:
                review.start()
            with _signals(stop):
                await pipeline.run()
                if linger_s > 0 and not stopped.is_set():
                    # Keep /metrics up so a scraper sees the final values; a signal ends it early.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopped.wait(), linger_s)
        finally:
            if review is not None:
                await review.close()
    return pipeline


def build_review_loop(settings: Settings) -> ReviewLoop | None:
    """The review queue (a sink, and its send and sync tasks) when the settings enable it;
    :meth:`Runtime.serve_metrics` exports its ``sentiment_review_*`` metrics."""
    if not settings.review.enabled:
        return None
    from stream.review import ReviewLoop

    return ReviewLoop(settings)
