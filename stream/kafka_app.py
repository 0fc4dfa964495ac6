"""The Kafka path: a faust app whose agents run the pipeline core.

Two agents, because scoring scales out and monitoring needs one global view:

* ``score`` consumes ``reviews`` (N partitions, shared by every worker of the consumer group)
  and runs the core: validate, score, write the lake, publish ``reviews.enriched`` and
  ``reviews.dlq``, and forward the scored batch to the monitor feed. Offsets are acknowledged
  only after all of that is stored (see :class:`~stream.sources.kafka.FaustSource`).
* ``monitor`` consumes the monitor feed, a topic with ONE partition, so exactly one worker at a
  time runs the monitors over the whole stream; its state is kept in a faust table (changelog
  topic), so it moves with that partition on a rebalance and survives a restart. Alerts go to
  ``sentiment.alerts``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaProducer

from sinks.topics import KafkaTopicsSink
from sinks.webhook import build_notifiers
from stream.events import Alert, Batch, ScoredReview
from stream.lake_factory import build_lake_sink
from stream.metrics import PipelineMetrics
from stream.pipeline import Scorer
from stream.producer import kafka_client_options
from stream.settings import Settings

__all__ = ["MonitorFeedSink", "NoMonitor", "create_app"]

log = logging.getLogger(__name__)

FEED_CHUNK = 100
STATE_KEY = b"suite"


class MonitorStateStore:
    """The monitor suite's state in a compacted one-partition topic.

    Only the worker that owns the monitor feed's single partition writes it, after each group
    of feed messages and before those messages are acknowledged, so a restart (or the next
    owner after a rebalance) continues from the last saved state and re-observes at most the
    unacknowledged messages. (A faust table would do the same, but faust only lets tables be
    written while a single event is being handled, not after a group.)
    """

    def __init__(self, settings: Settings) -> None:
        self._k = settings.kafka
        self.topic = settings.kafka.monitor_state_topic

    async def load(self) -> dict[str, Any] | None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(enable_auto_commit=False, **kafka_client_options(self._k))
        await consumer.start()
        try:
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            if end == 0:
                return None
            consumer.seek(tp, end - 1)
            msg = await consumer.getone()
            state: dict[str, Any] = json.loads(msg.value or b"null")
            return state
        finally:
            await consumer.stop()

    async def save(self, producer: AIOKafkaProducer, state: Mapping[str, Any]) -> None:
        value = json.dumps(state, separators=(",", ":")).encode()
        await producer.send_and_wait(self.topic, value=value, key=STATE_KEY, partition=0)


LAG_INTERVAL_S = 5.0


class NoMonitor:
    """The scoring agent's monitor: monitoring happens in the ``monitor`` agent."""

    def observe(self, batch: Sequence[ScoredReview], now: datetime) -> list[Alert]:
        return []


class MonitorFeedSink:
    """Forwards scored batches to the single-partition monitor feed, in chunks."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._durable = -1

    def durable_seq(self) -> int:
        return self._durable

    async def write(self, batch: Batch) -> None:
        futures = []
        for i in range(0, len(batch.scored), FEED_CHUNK):
            chunk = [s.to_json_dict() for s in batch.scored[i : i + FEED_CHUNK]]
            value = json.dumps(chunk, ensure_ascii=False).encode("utf-8")
            futures.append(await self._producer.send(self._topic, value=value, partition=0))
        for fut in futures:
            await fut
        self._durable = batch.seq

    async def flush(self) -> None:
        await self._producer.flush()

    async def close(self) -> None:
        """The producer belongs to the app."""


def _broker_url(settings: Settings) -> list[str]:
    return [f"kafka://{h.strip()}" for h in settings.kafka.bootstrap_servers.split(",")]


def _credentials(settings: Settings) -> Any:
    k = settings.kafka
    if k.sasl_mechanism:
        return faust.SASLCredentials(
            username=k.sasl_username,
            password=k.sasl_password.get_secret_value() if k.sasl_password else None,
            mechanism=k.sasl_mechanism,
            ssl_context=(
                faust.ssl.create_default_context(cafile=str(k.ssl_cafile))  # type: ignore[attr-defined]
                if k.security_protocol == "SASL_SSL"
                else None
            ),
        )
    if k.security_protocol == "SSL":
        import ssl

        return faust.SSLCredentials(
            ssl.create_default_context(cafile=str(k.ssl_cafile) if k.ssl_cafile else None)
        )
    return None


def create_app(
    settings: Settings,
    *,
    scorer_factory: Callable[[], Scorer],
    monitor_factory: Callable[[dict[str, Any] | None], Any],
    metrics: PipelineMetrics,
    datadir: Path | None = None,
) -> faust.App:
    """Build the faust app. ``monitor_factory(state)`` returns a monitor suite restored from
    ``state`` (or fresh when None) with ``observe``, ``state()`` and ``readings()``."""
    from stream.app import TimedSink
    from stream.pipeline import Pipeline, PipelineOptions
    from stream.sources.kafka import ConsumerLag, FaustSource

    k = settings.kafka
    datadir = datadir or Path(".faust") / k.group_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        k.group_id,
        broker=_broker_url(settings),
        broker_credentials=_credentials(settings),
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=k.partitions,
        topic_replication_factor=k.replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # A worker that dies is noticed in seconds, so its partitions move on quickly.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        web_enabled=False,
        store="memory://",
        table_cleanup_interval=60.0,
        datadir=str(datadir),
    )
    reviews = app.topic(k.reviews_topic, key_type=bytes, value_type=bytes, partitions=k.partitions)
    feed = app.topic(k.monitor_feed_topic, value_type=bytes, partitions=1)
    state_store = MonitorStateStore(settings)
    holder: dict[str, Any] = {}
    notifiers = build_notifiers(settings.alerts)  # webhook / SNS, when configured

    async def producer() -> AIOKafkaProducer:
        if "producer" not in holder:
            p = AIOKafkaProducer(
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                compression_type="zstd",
                max_request_size=8 * 1024 * 1024,
                **kafka_client_options(k),
            )
            await p.start()
            holder["producer"] = p
        started: AIOKafkaProducer = holder["producer"]
        return started

    @app.agent(reviews)
    async def score(stream: Any) -> None:
        out = await producer()
        topics = KafkaTopicsSink(
            out, enriched_topic=k.enriched_topic, dlq_topic=k.dlq_topic, alerts_topic=k.alerts_topic
        )
        lake = build_lake_sink(settings)
        sinks = [
            TimedSink(lake, "lake", metrics),
            TimedSink(topics, "topics", metrics),
            TimedSink(MonitorFeedSink(out, k.monitor_feed_topic), "monitor_feed", metrics),
        ]
        pipeline = Pipeline(
            FaustSource(stream, on_rewind=lake.rewind, commit_now=app.consumer.commit),
            holder.setdefault("scorer", scorer_factory()),
            sinks,
            NoMonitor(),
            options=PipelineOptions(
                max_batch_events=settings.batch.max_events,
                max_batch_wait_s=settings.batch.max_wait_ms / 1000.0,
                queue_batches=settings.batch.queue_batches,
                max_text_bytes=settings.max_text_bytes,
            ),
            on_batch=lambda b: metrics.observe_batch(b, "kafka"),
        )
        metrics.queue_depth.set_function(lambda: pipeline.inflight_batches)
        await pipeline.run()

    @app.agent(feed)
    async def monitor(stream: Any) -> None:
        out = await producer()
        alerts_out = KafkaTopicsSink(
            out, enriched_topic=k.enriched_topic, dlq_topic=k.dlq_topic, alerts_topic=k.alerts_topic
        )
        suite = holder.get("monitor")
        # Messages come in groups (up to 50, or what arrived within state_save_s); the state
        # is saved after each group, so a burst that ends is always saved at its end.
        async for values in stream.take(50, within=settings.monitor.state_save_s):
            if suite is None:
                suite = monitor_factory(await state_store.load())
                holder["monitor"] = suite
            for value in values:
                batch = [ScoredReview.from_json_dict(d) for d in json.loads(value)]
                alerts = suite.observe(batch, datetime.now(UTC))
                if alerts:
                    await alerts_out.emit(alerts)
                    for notifier in notifiers:
                        await notifier.emit(alerts)
                    for a in alerts:
                        metrics.alerts.labels(a.name, a.status).inc()
                        log.warning("ALERT %s %s [%s] %s", a.status, a.name, a.category, a.summary)
            await state_store.save(out, suite.state())

    lag = ConsumerLag(k.reviews_topic, metrics.consumer_lag)

    async def consumer_lag() -> None:
        await lag.update(app.consumer)

    app.timer(interval=LAG_INTERVAL_S)(consumer_lag)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _close(_app: Any, **_kw: Any) -> None:
        from stream.app import close_scorer

        for notifier in notifiers:
            await notifier.close()
        scorer = holder.pop("scorer", None)
        if scorer is not None:
            await close_scorer(scorer)
        p = holder.pop("producer", None)
        if p is not None:
            await p.stop()

    return app
