"""The Kafka path: a faust app whose scoring side reads ``reviews`` in batches.

Scoring scales out; monitoring needs one global view. So a worker runs two things:

* **scoring** (:class:`KafkaScoring`): a member of the consumer group ``kafka.group_id`` that
  fetches many records per call from ``reviews`` (N partitions shared by every worker) and runs
  the core over them: validate, score, write the lake, publish ``reviews.enriched`` and
  ``reviews.dlq`` in per-partition batches, and forward each scored batch to the monitor feed as
  Arrow IPC. Offsets are committed per batch, only once every sink holds it. The hot path
  has no per-message dispatch: faust provides the worker's lifecycle, the monitor agent and the
  timers, not the scoring loop.
* **monitoring**: a faust agent on the monitor feed, a topic with ONE partition, so exactly one
  worker at a time runs the monitors over the whole stream. Its state lives in a compacted
  topic, saved after each group of feed messages before they are acknowledged, and fenced: each
  owner claims the topic with a transactional producer, so an evicted owner that has not heard
  yet cannot overwrite its successor's state (:class:`MonitorStateStore`). Before a group
  is observed, the agent reads each ``reviews`` partition's log range from the broker (at most
  every ``SOURCE_LOG_INTERVAL_S``), so a partition with records the monitors have not had holds
  their watermark until its first event arrives: workers that start at different times do not
  make each other's backlog late. Alerts go to
  every alert output: ``sentiment.alerts``, the lake's ``alerts/``, the alert log and the
  configured notifiers.
* **the review loop** (when ``review.enabled``) runs beside the monitors, on the feed owner
  only: the feed carries every scored review and every alert, so selection sees the whole
  stream once, and one worker at a time sends tasks to Label Studio (and syncs annotations).
  Each group's picks are stored in the worker's outbox (SQLite, ``review.state_path``) and
  sent, within a time limit, before the group is acknowledged; when Label Studio is down the
  send fails, the picks stay in that outbox and the group is acknowledged all the same, so
  they reach Label Studio from that worker's later sends (a timer retries) and, should the
  feed move meanwhile, only once that worker owns it again. Losing the feed pauses the
  sender (after the request in flight) before the partition moves on; taking it over first
  adopts every review id the project already holds, so neither the previous owner's tasks nor
  picks of a replayed feed message become a second task. The selector's spent budget is saved
  with the monitor state, so a replay meets the same budget and (the audit draw hashes the
  review id) picks the same reviews.

Failures inside a worker never commit past unstored data: the scoring pipeline commits only
what every sink holds; when any stage fails, the pipeline is torn down, the worker seeks every
partition back to its committed offset (read from the broker, never assumed), the lake drops
that generation's uncommitted leftovers, and a fresh pipeline starts after a backoff. A
rebalance drains the pipeline first (delivers and commits what was read) so the next owner
replays as little as possible.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import faust
import pyarrow as pa
import pyarrow.ipc as ipc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import ProducerFenced

from monitors.review import ReviewSelector
from sinks.topics import KafkaTopicsSink
from stream.app import discard_saved_state, sink_name
from stream.errors import MonitorStateFenced, ServiceUnavailable, describe
from stream.events import (
    SCORED_SCHEMA,
    Alert,
    Batch,
    ScoredBatch,
    ScoredReview,
    SourcePosition,
    scored_table,
)
from stream.lease import StallLease
from stream.monitor_state import UnusableMonitorState, decode_state, encode_state
from stream.pipeline import Pipeline
from stream.producer import idempotent_producer, kafka_client_options
from stream.retry import Backoff, RetryStopped, retrying
from stream.settings import KafkaSettings, Settings
from stream.sources.kafka import ConsumerLag, KafkaBatchSource, log_ranges

if TYPE_CHECKING:
    from stream.app import Runtime
    from stream.review import ReviewLoop

__all__ = [
    "KafkaScoring",
    "MonitorFeedSink",
    "MonitorStateStore",
    "NoMonitor",
    "create_app",
    "feed_messages",
    "read_feed_message",
    "worker_producer",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

STATE_KEY = b"suite"
#: the review selector's state (its spent budget), saved beside the monitor suite's
SELECTOR_KEY = "review_selector"
LAG_INTERVAL_S = 5.0
#: the scoring consumer's group session: a worker silent that long loses its partitions
SESSION_TIMEOUT_S = 10.0
#: the longest a worker given the feed waits to fence the previous owner before going on (its
#: first group then retries the claim)
CLAIM_TIMEOUT_S = 10.0
#: how often the monitor agent reads the source partitions' log ranges (first and end offset)
SOURCE_LOG_INTERVAL_S = 1.0
#: the longest a group of feed messages waits for its review tasks to be sent
REVIEW_SEND_TIMEOUT_S = 10.0
#: the longest a stopping worker waits for the monitor agent's group in hand to end
WIND_DOWN_S = 15.0
#: records from the end of the state topic that :meth:`MonitorStateStore.load` reads first
#: (a save is a record and its transaction's commit marker)
_STATE_TAIL = 16
#: the longest loading the state may take before the try counts as failed (and is retried)
_STATE_READ_TIMEOUT_S = 30.0
#: a feed message stays well under the broker's default 1 MB limit
FEED_MAX_BYTES = 512 * 1024
_IPC_OPTIONS = ipc.IpcWriteOptions(compression="zstd")


class MonitorStateStore:
    """The monitor suite's state in a compacted one-partition topic, fenced.

    Only the worker that owns the monitor feed's single partition writes it, after each group
    of feed messages and before those messages are acknowledged, so a restart (or the next
    owner after a rebalance) continues from the last saved state and re-observes at most the
    unacknowledged messages. (A faust table would do the same, but faust only lets tables be
    written while a single event is being handled, not after a group.)

    Each owner :meth:`claim`-s the topic when it is given the feed: a transactional producer
    whose id is the group's, so that claiming fences the previous owner's producer (Kafka's
    producer epoch). A worker evicted from the group without knowing it yet (frozen past its
    session) may still read feed messages, but its next save fails with
    :class:`~stream.errors.MonitorStateFenced` instead of overwriting the new owner's state.
    Every save is one transaction, and :meth:`load` reads committed records only.
    """

    def __init__(self, settings: Settings) -> None:
        self._k = settings.kafka
        self.topic = settings.kafka.monitor_state_topic
        #: one id per feed: each owner's claim fences the one before
        self.transactional_id = f"{settings.kafka.group_id}.monitor-state"
        self._writer: AIOKafkaProducer | None = None

    async def claim(self) -> None:
        """Become the topic's only writer: start a transactional producer, which fences any
        earlier producer of this id (an earlier owner's, or this worker's own)."""
        await self.close()
        writer = AIOKafkaProducer(
            transactional_id=self.transactional_id,
            enable_idempotence=True,
            acks="all",
            **kafka_client_options(self._k),
        )
        try:
            await writer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await writer.stop()
            raise
        self._writer = writer

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):  # a fenced producer may fail to stop cleanly
                await writer.stop()

    async def load(self) -> dict[str, Any] | None:
        """The last committed state (None when there is none). Reads the tail of the
        partition up to its end: a transaction's commit marker takes the last offset, and
        records of aborted transactions are skipped."""
        from aiokafka import TopicPartition

        consumer = AIOKafkaConsumer(
            enable_auto_commit=False,
            isolation_level="read_committed",
            **kafka_client_options(self._k),
        )
        try:  # a start that fails or is cancelled (the feed revoked) leaves no client open
            await consumer.start()
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            if end == 0:
                return None
            last = None
            async with asyncio.timeout(_STATE_READ_TIMEOUT_S):
                start = max(0, end - _STATE_TAIL)
                while True:
                    last = await _last_record(consumer, tp, start, end)
                    if last is not None or start == 0:
                        break
                    start = 0  # the tail held markers and aborted saves only: read it all
            if last is None:
                return None
            return decode_state(last.value, f"topic {self.topic} offset {last.offset}")
        finally:
            await consumer.stop()

    async def save(self, state: Mapping[str, Any]) -> None:
        """Write ``state`` in one transaction. Raises
        :class:`~stream.errors.MonitorStateFenced` when another owner has claimed the topic
        since this worker did, and :class:`~stream.errors.ServiceUnavailable` (retriable) when
        this worker holds no writer (closed, or never claimed)."""
        writer = self._writer
        if writer is None:  # closed (the worker stops): not a fence, the group stays unsaved
            raise ServiceUnavailable("the monitor state topic's writer is closed")
        value = encode_state(state, compress=True)
        try:
            async with writer.transaction():
                await writer.send_and_wait(self.topic, value=value, key=STATE_KEY, partition=0)
        except ProducerFenced as err:
            self._writer = None  # fenced for good: a new claim makes a new producer
            with contextlib.suppress(Exception):
                await writer.stop()
            raise MonitorStateFenced(
                "another worker has taken the monitor feed: this worker's state is not saved"
            ) from err


async def _last_record(
    consumer: AIOKafkaConsumer, tp: Any, start: int, end: int
) -> ConsumerRecord[bytes, bytes] | None:
    """The last committed state record between offsets ``start`` and ``end``."""
    consumer.seek(tp, start)
    last = None
    while await consumer.position(tp) < end:
        got = await consumer.getmany(tp, timeout_ms=1000)
        for record in got.get(tp, []):
            if record.key == STATE_KEY:
                last = record
    return last


class NoMonitor:
    """The scoring side's monitor: monitoring happens in the ``monitor`` agent."""

    def observe(self, batch: Sequence[ScoredReview], now: datetime) -> list[Alert]:
        return []


def feed_messages(table: pa.Table, max_bytes: int = FEED_MAX_BYTES) -> list[bytes]:
    """A scored table as Arrow IPC stream messages (zstd), each under ``max_bytes`` of
    uncompressed Arrow data unless a single row is larger (texts are bounded by the decoder,
    so a row is small)."""
    rows = table.num_rows
    if rows == 0:
        return []
    per_row = max(1, table.nbytes // rows)
    step = max(1, max_bytes // per_row)
    out = []
    for start in range(0, rows, step):
        sink = io.BytesIO()
        part = table.slice(start, step)
        with ipc.new_stream(sink, part.schema, options=_IPC_OPTIONS) as writer:
            writer.write_table(part)
        out.append(sink.getvalue())
    return out


def read_feed_message(value: bytes) -> pa.Table:
    """The inverse of :func:`feed_messages` for one message."""
    with ipc.open_stream(value) as reader:
        table = reader.read_all()
    return table.cast(SCORED_SCHEMA)


class MonitorFeedSink:
    """Forwards scored batches to the single-partition monitor feed as Arrow IPC."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._durable = -1

    def durable_seq(self) -> int:
        return self._durable

    async def write(self, batch: Batch) -> None:
        futures = [
            await self._producer.send(self._topic, value=value, partition=0)
            for value in feed_messages(scored_table(batch.scored))
        ]
        for fut in futures:
            await fut
        self._durable = batch.seq

    async def flush(self) -> None:
        await self._producer.flush()

    async def close(self) -> None:
        """The producer belongs to the app."""


class KafkaScoring:
    """The scoring side of a worker: one pipeline per generation of the group's assignment.

    :meth:`run` joins the group and loops: wait for partitions, start a generation (seek to
    the committed offsets, rewind the lake, run the core), and on an in-process failure count
    a restart, back off and start again from the committed offsets. :meth:`stop` drains the
    running generation (deliver and commit what was read) and ends :meth:`run`.
    """

    def __init__(
        self,
        settings: Settings,
        runtime: Runtime,
        producer: Callable[[], Any],
        *,
        max_backoff_s: float = 30.0,
        drain_timeout_s: float = 20.0,
    ) -> None:
        self._settings = settings
        self._rt = runtime
        self._producer = producer
        self._max_backoff = max_backoff_s
        self._drain_timeout = drain_timeout_s
        self._assigned = asyncio.Event()
        self._stopped = asyncio.Event()
        self._generation_done = asyncio.Event()
        self._generation_done.set()
        self._source: KafkaBatchSource | None = None
        self._pipeline: Pipeline | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.generations = 0
        self.lag = ConsumerLag(settings.kafka.reviews_topic, runtime.metrics.consumer_lag)

    def _new_consumer(self) -> AIOKafkaConsumer:
        k, b = self._settings.kafka, self._settings.batch
        return AIOKafkaConsumer(
            group_id=k.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=b.max_events,
            # A worker that dies is noticed in seconds, so its partitions move on quickly.
            session_timeout_ms=int(SESSION_TIMEOUT_S * 1000),
            heartbeat_interval_ms=1_000,
            max_poll_interval_ms=300_000,
            **kafka_client_options(k),
        )

    async def run(self) -> None:
        consumer = self.consumer = self._new_consumer()
        consumer.subscribe([self._settings.kafka.reviews_topic], listener=_Listener(self))
        await consumer.start()
        failures = 0
        try:
            while not self._stopped.is_set():
                await _first(self._assigned.wait(), self._stopped.wait())
                if self._stopped.is_set():
                    break
                try:
                    await self._generation(consumer)
                    failures = 0
                except Exception as err:  # noqa: BLE001 - restart from the committed offsets
                    failures += 1
                    self._rt.metrics.restarts.inc()
                    delay = min(self._max_backoff, 0.5 * 2 ** min(failures, 10))
                    log.error(  # noqa: TRY400 - no traceback: it may quote a record
                        "scoring pipeline failed (%s); restarting from the committed offsets "
                        "in %.1f s",
                        describe(err),
                        delay,
                    )
                    await _first(asyncio.sleep(delay), self._stopped.wait())
        finally:
            await consumer.stop()

    async def _generation(self, consumer: AIOKafkaConsumer) -> None:
        self._generation_done.clear()
        ticking: asyncio.Task[None] | None = None
        try:
            k = self._settings.kafka
            self.generations += 1
            # Half the session: a loop that never stops that long keeps heartbeating in time
            # (every second); one that did may have been evicted (stream/lease.py).
            lease = StallLease(SESSION_TIMEOUT_S / 2)
            ticking = asyncio.create_task(lease.run(0.25), name="scoring-lease")
            lake = self._rt.lake(guard=lease.check)
            source = KafkaBatchSource(consumer, k.reviews_topic, max_records=self._max_records)
            started = await source.start(on_rewind=lake.rewind_many)
            if not started:
                self._assigned.clear()
                return
            producer = await self._producer()
            topics = KafkaTopicsSink(
                producer,
                enriched_topic=k.enriched_topic,
                dlq_topic=k.dlq_topic,
                alerts_topic=k.alerts_topic,
            )
            feed = MonitorFeedSink(producer, k.monitor_feed_topic)
            self._source = source
            self._pipeline = self._rt.pipeline(
                source, [lake, topics, feed], NoMonitor(), source_name="kafka", alert_sinks=()
            )
            await self._pipeline.run()
        finally:
            if ticking is not None:
                ticking.cancel()
            self._source = None
            self._pipeline = None
            self._generation_done.set()

    @property
    def _max_records(self) -> int:
        return self._settings.batch.max_events

    async def drain(self) -> None:
        """Stop pulling and let the running generation deliver and commit what it read,
        waiting at most ``drain_timeout_s``. Past that the rebalance goes on while the
        generation still finishes: its commits for revoked partitions then fail (the group
        moved on), which fails it, and what it still writes to the lake can only duplicate
        rows of the next owner, never lose one (see :mod:`sinks.lake`). A generation whose
        process stopped for half the session (frozen, evicted without hearing of it) writes
        nothing more to the lake (:mod:`stream.lease`)."""
        source, pipeline = self._source, self._pipeline
        if source is None or pipeline is None:
            return
        source.stop()
        pipeline.stop()
        try:
            async with asyncio.timeout(self._drain_timeout):
                await self._generation_done.wait()
        except TimeoutError:
            log.warning("draining the scoring pipeline took over %.0f s", self._drain_timeout)

    def assigned(self, partitions: set[Any]) -> None:
        if partitions:
            self._assigned.set()
        else:
            self._assigned.clear()

    async def stop(self) -> None:
        """Drain and end :meth:`run` (safe to call twice)."""
        self._stopped.set()
        await self.drain()

    async def update_lag(self) -> None:
        if self.consumer is not None:
            await self.lag.update(self.consumer)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, scoring: KafkaScoring) -> None:
        self._scoring = scoring

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        self._scoring.assigned(set())  # the next generation waits for the new assignment
        await self._scoring.drain()

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        self._scoring.assigned(set(assigned))


async def _first(*aws: Any) -> None:
    """Wait until the first of ``aws`` completes; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


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


class _Monitoring:
    """The monitor agent's work on one group of feed messages: observe, send alerts to every
    output, store alerts in the lake (files named by the feed position, so a replayed feed
    message rewrites its own file), select reviews for people and send them, save the state.

    Every step that leaves the process for a store (loading and saving the state, the
    reviews queued for people, the alerts' lake file, each alert output) is retried until it
    succeeds, whatever the error (but a saved state that cannot be continued from, which
    starts the suite afresh, see :func:`stream.app.discard_saved_state`, and a save refused
    because another worker has claimed the state since, see :class:`MonitorStateStore`): the
    group is neither acknowledged nor followed by the next one meanwhile, so a store that
    refuses an alert file or a broker that refuses the state stalls the monitors (each failed
    try logged and counted in ``sentiment_sink_errors_total``) and loses nothing. The agent
    acknowledges a group only once it is handled, so a worker stopped mid-group leaves it to the
    next owner, which continues from the last saved state. So does a worker given the feed
    back after another owner held it: each assignment of the feed loads the saved state anew
    (its suite in memory would miss what the other owner observed), as soon as it has claimed
    the state topic: an idle feed brings no group to load it, and the worker exports the
    monitors' readings only once it has. (A failure that escaped,
    a bug, would crash the agent; its replacement reads on, and the group, not acknowledged,
    holds the feed's commit back until the next owner reads it again.)
    """

    def __init__(
        self,
        settings: Settings,
        runtime: Runtime,
        monitor_factory: Callable[[dict[str, Any] | None], Any],
        review: ReviewLoop | None = None,
    ) -> None:
        self._settings = settings
        self._rt = runtime
        self._factory = monitor_factory
        self._store = MonitorStateStore(settings)
        self._lake = runtime.lake()
        self._log_client: AIOKafkaConsumer | None = None
        self._log_read_at = float("-inf")
        self._closed = False
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._backoff = Backoff(initial_s=0.5, max_s=settings.lake.retry_max_backoff_s)
        self.suite: Any = None
        self.review = review
        self.owns_reviews = False
        self._selector_loaded = False
        self._reload = False
        self._holds_feed = False
        #: this worker's producer is the state topic's current writer (see MonitorStateStore)
        self._claimed = False
        #: a save was refused: another worker has the feed; nothing is saved until it is
        #: given back (a new claim)
        self._fenced = False
        #: one load of the saved state at a time: the agent's next group, or the load that
        #: follows an assignment of the feed (:meth:`feed_assigned`)
        self._load_lock = asyncio.Lock()
        self._preload: asyncio.Task[None] | None = None
        self._next_sync = 0.0
        if review is not None:
            review.sender.paused = True  # until this worker owns the feed
            review.reference = lambda: getattr(self.suite, "baseline", None)

    async def feed_assigned(self) -> None:
        """This worker holds the feed (again): its next group starts from the saved state, not
        from the suite in memory, which another owner may have moved past since this worker
        last held the feed."""
        self._reload = True
        self._holds_feed = True
        self._fenced = False
        self._claimed = False
        self._rt.metrics.feed_owned.set(1)
        try:  # fence the previous owner before anything else; the first group retries it
            async with asyncio.timeout(CLAIM_TIMEOUT_S):
                await self._store.claim()
            self._claimed = True
        except Exception as err:  # noqa: BLE001 - claimed before the first group instead
            log.warning("claiming the monitor state topic failed (%s); retried", describe(err))
        else:
            # The feed may stay idle for long (everything was read before the rebalance): the
            # saved state is loaded now, not at the next group, so that this worker exports
            # the monitors' readings as they were saved rather than none or stale ones.
            await self._stop_preload()
            self._preload = asyncio.create_task(self._load_in_background())
        await self.take_reviews()

    async def feed_revoked(self) -> None:
        """The feed leaves this worker (a rebalance, which may give it straight back)."""
        self._holds_feed = False
        self._rt.metrics.feed_owned.set(0)
        await self._stop_preload()
        await self.release_reviews()

    def exported_suite(self) -> Any:
        """The suite whose readings this worker exports: the one it runs while it holds the
        feed and once it has loaded the saved state, else none. A suite kept from an earlier
        hold would export what it last had, beside the owner's or past what the owner saved
        since (an alert it had firing would never resolve)."""
        return self.suite if self._holds_feed and not self._reload else None

    async def _load_in_background(self) -> None:
        try:
            await self._load_suite()
        except RetryStopped:
            pass  # the worker stops
        except Exception as err:  # noqa: BLE001 - the next group loads it
            log.warning("loading the monitor state after the assignment failed: %s", describe(err))

    async def _stop_preload(self) -> None:
        task, self._preload = self._preload, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _load_suite(self) -> dict[str, Any] | None:
        """Build the suite from the saved state when there is none yet or the feed was
        (re)assigned since (:attr:`_reload`); returns the state it loaded (``{}`` for one it
        discarded), or None when the suite was current."""
        async with self._load_lock:
            if self.suite is not None and not self._reload:
                return None
            state: dict[str, Any] | None
            try:
                state = await self._load_state()
                self.suite = self._factory(state)
            except UnusableMonitorState as err:
                discard_saved_state(err, self._rt.metrics)
                state = {}
                self.suite = self._factory(None)
            self._reload = False
            self._selector_loaded = False
            self._log_read_at = float("-inf")  # the new suite is told the source's partitions
            return state

    async def take_reviews(self) -> None:
        """This worker owns the feed: it selects, sends and syncs from now on."""
        if self.review is not None and not self.owns_reviews:
            self.review.sender.take_over()
            self.owns_reviews = True

    async def release_reviews(self) -> None:
        """The feed moves away: no task leaves this worker once this returns."""
        if self.review is not None:
            await self.review.sender.pause()
        self.owns_reviews = False
        self._selector_loaded = False

    async def review_tick(self) -> None:
        """Periodically on the owner: send what waits (the server was down, or the feed is
        idle), and sync annotations every ``review.sync_interval_s``."""
        if self.review is None or not self.owns_reviews:
            return
        await self.review.send_now(REVIEW_SEND_TIMEOUT_S)
        now = time.monotonic()
        if now >= self._next_sync:
            self._next_sync = now + self._settings.review.sync_interval_s
            await self.review.sync_now()

    async def expect_source(self) -> None:
        """Tell the suite which ``reviews`` partitions hold records (see the module doc), at
        most every ``SOURCE_LOG_INTERVAL_S``. Best effort: when the broker does not answer in
        time, the suite keeps what it was last told."""
        now = time.monotonic()
        if self._closed or now - self._log_read_at < SOURCE_LOG_INTERVAL_S:
            return
        self._log_read_at = now
        k = self._settings.kafka
        client = self._log_client
        try:
            async with asyncio.timeout(5.0):
                if client is None:
                    client = AIOKafkaConsumer(enable_auto_commit=False, **kafka_client_options(k))
                    await client.start()
                ranges = await log_ranges(client, k.reviews_topic)
        except Exception as err:  # noqa: BLE001 - the watermark then follows seen partitions
            log.warning("the source's log ranges are not available now: %s", describe(err))
            if client is not None and client is not self._log_client:
                with contextlib.suppress(Exception):  # one that did not start is not kept
                    await client.stop()
            return
        self._log_client = client
        self.suite.expect(ranges, datetime.now(UTC))

    async def _until_done(self, what: str, sink: str, call: Callable[[], Awaitable[_T]]) -> _T:
        """``await call()`` until it succeeds, and its result (see the class doc); each failed
        try counts against ``sink``. Shutdown ends the waiting."""

        def failed(_err: BaseException, _delay: float) -> None:
            self._rt.metrics.sink_errors.labels(sink).inc()

        return await retrying(
            call,
            what=what,
            backoff=self._backoff,
            # an unusable saved state stays unusable: the suite starts afresh instead; a
            # fenced save stays fenced: the feed is another worker's
            is_retriable=lambda err: (
                isinstance(err, Exception)
                and not isinstance(err, UnusableMonitorState | MonitorStateFenced)
            ),
            stop=self._stopping,
            on_retry=failed,
            log=log,
        )

    async def _load_state(self) -> dict[str, Any] | None:
        return await self._until_done(
            "loading the monitor state", "monitor_state", self._store.load
        )

    @contextlib.asynccontextmanager
    async def busy(self) -> AsyncIterator[None]:
        """Around the handling and acknowledgement of one group (see :meth:`wind_down`)."""
        self._idle.clear()
        try:
            yield
        finally:
            self._idle.set()

    async def wind_down(self) -> None:
        """The worker stops: a step being retried gives up now (:class:`RetryStopped` from
        :meth:`handle`; the agent leaves its group unacknowledged for the next owner), and a
        group being handled otherwise gets up to ``WIND_DOWN_S`` to end."""
        self._stopping.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WIND_DOWN_S):
                await self._idle.wait()

    async def close(self) -> None:
        """Stop the log-range client (the agent reads no more ranges after this)."""
        self._closed = True
        self._stopping.set()
        await self._stop_preload()
        await self._store.close()
        if self._log_client is not None:
            await self._log_client.stop()
            self._log_client = None

    async def handle(self, events: Sequence[Any], producer: AIOKafkaProducer) -> None:
        """Handle one group of feed messages (see the class doc). Raises
        :class:`~stream.errors.MonitorStateFenced` when another worker has taken the feed
        since this one was given it: its save was refused, and every later group is refused
        unread until the feed is assigned here again."""
        k = self._settings.kafka
        state: dict[str, Any] | None = None
        if self._fenced:
            raise MonitorStateFenced("another worker holds the monitor feed")
        if not self._claimed:
            await self._until_done(
                "claiming the monitor state topic", "monitor_state", self._store.claim
            )
            self._claimed = True
        state = await self._load_suite()
        if self.review is not None and not self._selector_loaded:
            # The budget spent so far travels with the feed: a replayed message meets the
            # budget its first owner met, so it picks the same reviews.
            if state is None:  # the suite was not loaded with this group: load the state
                try:
                    state = await self._load_state()
                except UnusableMonitorState as err:
                    discard_saved_state(err, self._rt.metrics)
            saved = (state or {}).get(SELECTOR_KEY)
            if saved is not None:
                queue = self.review.queue
                try:
                    queue.selector = ReviewSelector.from_state(queue.selector.config, saved)
                except Exception as err:  # noqa: BLE001 - as a malformed suite state
                    discard_saved_state(
                        UnusableMonitorState(f"its review selector's part: {describe(err)}"),
                        self._rt.metrics,
                        "the review selector starts afresh (its spent budget begins again)",
                    )
            self._selector_loaded = True
        await self.take_reviews()
        await self.expect_source()
        topics = KafkaTopicsSink(
            producer,
            enriched_topic=k.enriched_topic,
            dlq_topic=k.dlq_topic,
            alerts_topic=k.alerts_topic,
        )
        outputs = [topics, *self._rt.alert_sinks()]
        for event in events:
            msg = event.message
            try:
                table = read_feed_message(bytes(event.value))
            except (pa.ArrowException, OSError, ValueError) as err:
                log.error("skipping an unreadable feed message: %s", describe(err))  # noqa: TRY400
                continue
            scored = ScoredBatch.from_table(table)
            alerts = self.suite.observe(scored, datetime.now(UTC))
            position = SourcePosition("kafka", msg.topic, str(msg.partition), msg.offset)
            if self.review is not None:
                await self._until_done(
                    "queueing the reviews picked for people",
                    "review_queue",
                    functools.partial(
                        self.review.queue.write,
                        Batch(scored, [], {position.key: position}, list(alerts)),
                    ),
                )
            await asyncio.sleep(0)  # let the scoring side run between feed messages
            if not alerts:
                continue
            found = Batch([], [], {position.key: position}, list(alerts))
            n = len(alerts)
            await self._until_done(
                f"storing {n} alerts in the lake",
                "lake",
                functools.partial(self._store_alerts, found),
            )
            for output in outputs:
                name = sink_name(output)
                await self._until_done(
                    f"sending {n} alerts to {name}", name, functools.partial(output.emit, alerts)
                )
            for a in alerts:
                self._rt.metrics.alerts.labels(a.name, a.status).inc()
                log.warning("ALERT %s %s", a.status, a.name)
        if self.review is not None:
            await self.review.send_now(REVIEW_SEND_TIMEOUT_S)
        state = self.suite.state()
        if self.review is not None:
            state = {**state, SELECTOR_KEY: self.review.queue.selector.state()}
        try:
            await self._until_done(
                "saving the monitor state",
                "monitor_state",
                functools.partial(self._store.save, state),
            )
        except MonitorStateFenced:
            self._fenced = True
            self._reload = True  # the suite in memory went past the saved state
            raise

    async def _store_alerts(self, batch: Batch) -> None:
        # a retried write adds nothing the sink holds already (its marks by source position);
        # the flush writes what a failed try put back
        await self._lake.write(batch)
        await self._lake.flush()


class _App(faust.App):
    """faust's app, changed in how it stops: the ``before_stop`` callbacks run first, and the
    consumer then does not wait for the messages taken but not acknowledged.

    faust waits for those before anything else (its own shutdown signal,
    ``on_before_shutdown``, comes after), for as long as it takes: a monitor agent retrying a
    refused alert file would hold the stop until the store heals. Here the agent finishes or
    gives up its group in a ``before_stop`` callback, and a group given up stays
    unacknowledged, so uncommitted: the next owner reads it again. Rebalances still wait."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.before_stop: list[Callable[[], Awaitable[None]]] = []

    async def on_stop(self) -> None:
        for callback in self.before_stop:
            await callback()
        await super().on_stop()

    async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
        if self.should_stop:
            return  # stopping: see the class doc
        await super()._consumer_wait_empty(consumer, logger)


def _faust_app(settings: Settings, datadir: Path) -> _App:
    """The worker's faust app (its tables in memory, its data under ``datadir``)."""
    k = settings.kafka
    datadir.mkdir(parents=True, exist_ok=True)
    return _App(
        f"{k.group_id}-monitor",
        broker=_broker_url(settings),
        broker_credentials=_credentials(settings),
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=1,
        topic_replication_factor=k.replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        web_enabled=False,
        store="memory://",
        datadir=str(datadir),
    )


def worker_producer(settings: KafkaSettings) -> AIOKafkaProducer:
    """The worker's producer (not started): our producers' configuration, with requests of
    up to 8 MiB."""
    return idempotent_producer(settings, max_request_size=8 * 1024 * 1024)


class _SharedProducer:
    """The worker's one idempotent Kafka producer, started on first use (``await shared()``)
    and shared by the scoring side and the monitor agent."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings.kafka
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                p = worker_producer(self._settings)
                await p.start()
                self._producer = p
            return self._producer

    async def stop(self) -> None:
        p, self._producer = self._producer, None
        if p is not None:
            await p.stop()


def create_app(
    settings: Settings,
    runtime: Runtime,
    *,
    monitor_factory: Callable[[dict[str, Any] | None], Any],
    datadir: Path | None = None,
    review: ReviewLoop | None = None,
) -> tuple[faust.App, KafkaScoring, Callable[[], Any]]:
    """Build the faust app (the monitor agent, the lag timer, the lifecycle) and the scoring
    side it runs. ``monitor_factory(state)`` returns a monitor suite restored from ``state``
    (or fresh when None) with ``observe``, ``state()`` and ``readings()``; ``review`` is the
    review loop the feed owner runs. ``settings.kafka.role`` picks what the app runs: the
    scoring side, the monitor agent, or both. Returns the app, the scoring side and a function
    that gives the monitor suite whose readings this worker exports (None while it does not
    hold the feed)."""
    app = _faust_app(settings, datadir or Path(".faust") / settings.kafka.group_id)
    feed = app.topic(settings.kafka.monitor_feed_topic, value_type=bytes, partitions=1)
    producer = _SharedProducer(settings)
    scoring = KafkaScoring(settings, runtime, producer)
    monitoring = _Monitoring(settings, runtime, monitor_factory, review)
    app.before_stop.append(monitoring.wind_down)

    role = settings.kafka.role
    if role != "monitor":

        @app.task  # type: ignore[untyped-decorator]
        async def score() -> None:
            await scoring.run()

        async def consumer_lag() -> None:
            await scoring.update_lag()

        app.timer(interval=LAG_INTERVAL_S)(consumer_lag)

    if role != "scoring":

        @app.agent(feed)
        async def monitor(stream: Any) -> None:
            # Messages come in groups (up to 50, or what arrived within state_save_s); the
            # state is saved after each group, so a burst that ends is always saved at its end.
            # A group is acknowledged only once handled: take_events would acknowledge it as
            # a cancelled agent unwinds (a worker stopping mid-group), past unsaved state.
            async for events in stream.noack_take(50, within=settings.monitor.state_save_s):
                async with monitoring.busy():
                    try:
                        await monitoring.handle(events, await producer())
                    except RetryStopped:
                        log.warning(
                            "stopping while a step was retried: %d feed messages left to the "
                            "next owner",
                            len(events),
                        )
                        return
                    except MonitorStateFenced as err:
                        # Evicted without knowing it yet (frozen past its session, say): the
                        # feed and its state are another worker's. The group is acknowledged
                        # so that the coming rebalance does not wait for it; the commit is
                        # refused (this member's generation is gone), and the owner reads
                        # these messages from the committed offset.
                        log.warning(
                            "%s: %d feed messages not saved here, left to the owner",
                            describe(err),
                            len(events),
                        )
                    for event in events:
                        await stream.ack(event)

    if role != "scoring":
        feed_tp = (settings.kafka.monitor_feed_topic, 0)

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def _feed_revoked(_app: Any, revoked: set[Any], **_kw: Any) -> None:
            # Awaited before the rebalance goes on: the next owner starts after the fence.
            if any((tp.topic, tp.partition) == feed_tp for tp in revoked):
                await monitoring.feed_revoked()

        @app.on_partitions_assigned.connect  # type: ignore[arg-type]
        async def _feed_assigned(_app: Any, assigned: set[Any], **_kw: Any) -> None:
            # The outbox leaves even while the feed is idle (sent by the timer).
            if any((tp.topic, tp.partition) == feed_tp for tp in assigned):
                await monitoring.feed_assigned()

    if review is not None and role != "scoring":

        async def review_tick() -> None:
            await monitoring.review_tick()

        app.timer(interval=settings.review.send_interval_s)(review_tick)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _close(_app: Any, **_kw: Any) -> None:
        started = time.monotonic()
        await scoring.stop()
        log.info("scoring drained in %.1f s", time.monotonic() - started)
        if review is not None:
            # A last send from the owner, then the fence. The store stays open: the agent may
            # still select from a feed message it was handling (kept in the outbox, and the
            # message, not acknowledged, goes to the next owner).
            if monitoring.owns_reviews:
                await review.send_now(REVIEW_SEND_TIMEOUT_S)
            await monitoring.release_reviews()
            await review.client.close()
        await monitoring.close()
        await runtime.close()
        await producer.stop()

    return app, scoring, monitoring.exported_suite
