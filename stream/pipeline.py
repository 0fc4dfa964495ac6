"""The transport-agnostic pipeline core.

Sources only turn raw records into :class:`RawRecord` values with a position; everything after
that is here, the same for replay, Kafka and Kinesis::

    source ─► [raw queue] ─► batcher: decode + validate, cut micro-batches
                                 │ (dead letters ride along with their batch)
                                 ▼
                   [in-flight queue of scoring tasks, in order]  ◄── bounded: backpressure
                                 │
                                 ▼
            deliver: monitors.observe(batch), in order
                                 │
                                 ▼
            one lane per sink (and one for the alert outputs): a bounded queue whose task
            stores the batches in order; the lanes work side by side
                                 │
                                 ▼
            committer: source.commit(positions)  (in the background, only what every sink
                                                  reports durable), then each sink that
                                                  listens: sink.committed(positions)

The unit of work is the micro-batch: sources hand over whole chunks of records (a Kafka fetch,
a Kinesis page, a slice of a replay), the batcher decodes a batch at a time, and scored batches
travel as columns (:class:`~stream.events.ScoredBatch`) to every sink and to the monitors.

Every queue is bounded, so a slow endpoint or store makes the source stop pulling instead of
buffering without limit. A stage that fails ends the run at once, without committing anything
the sinks do not hold; the caller decides whether to restart from the committed positions.
:meth:`Pipeline.stop` (wired to SIGINT/SIGTERM by the CLI) stops
pulling, drains what was accepted through scoring and the sinks, flushes them and commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, overload, runtime_checkable

import numpy as np
import numpy.typing as npt

from stream.errors import ScoringRejected, describe
from stream.events import (
    Alert,
    Batch,
    DeadLetter,
    Reason,
    ReviewEvent,
    ScoredBatch,
    ScoredReview,
    SourcePosition,
    category_or_other,
)
from stream.validation import DecodeLimits, decode_batch

log = logging.getLogger(__name__)

__all__ = [
    "AlertSink",
    "BatchSource",
    "Monitor",
    "Pipeline",
    "PipelineOptions",
    "Prediction",
    "PredictionColumns",
    "RawRecord",
    "Scorer",
    "ScoringResult",
    "Sink",
    "Source",
    "Summary",
]


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as a source delivers it: bytes, where it came from, when it arrived."""

    value: bytes
    position: SourcePosition
    received_at: datetime
    key: bytes | None = None


class Source(Protocol):
    """Yields raw records until stopped or exhausted; commits positions the sinks hold."""

    def records(self) -> AsyncIterator[RawRecord]: ...

    async def commit(self, positions: Mapping[tuple[str, str, str], SourcePosition]) -> None:
        """Mark every record up to and including each position as done."""
        ...


@runtime_checkable
class BatchSource(Protocol):
    """A source that hands over whole chunks of records (what one fetch returned), in order.
    The core prefers this to :meth:`Source.records`: no per-record hand-over."""

    def batches(self) -> AsyncIterator[Sequence[RawRecord]]: ...

    async def commit(self, positions: Mapping[tuple[str, str, str], SourcePosition]) -> None: ...


@dataclass(frozen=True, slots=True)
class Prediction:
    sentiment: int
    p_negative: float
    p_neutral: float
    p_positive: float


class PredictionColumns(Sequence[Prediction]):
    """Predictions held as columns (labels -1/0/1 and probabilities n x 3, class order
    negative, neutral, positive), read as :class:`Prediction` values only when asked."""

    __slots__ = ("labels", "probabilities")

    def __init__(self, labels: npt.ArrayLike, probabilities: npt.ArrayLike) -> None:
        self.labels = np.asarray(labels, dtype=np.int8)
        self.probabilities = np.asarray(probabilities, dtype=np.float64)
        if self.probabilities.shape != (len(self.labels), 3):
            raise ValueError("one label and three probabilities per prediction")

    def __len__(self) -> int:
        return len(self.labels)

    @overload
    def __getitem__(self, index: int) -> Prediction: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Prediction]: ...
    def __getitem__(self, index: int | slice) -> Prediction | Sequence[Prediction]:
        if isinstance(index, slice):
            return PredictionColumns(self.labels[index], self.probabilities[index])
        p = self.probabilities[index].tolist()
        return Prediction(int(self.labels[index]), p[0], p[1], p[2])


@dataclass(frozen=True, slots=True)
class ScoringResult:
    predictions: Sequence[Prediction]
    model_name: str
    model_version: str
    latency_ms: float

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The predictions as columns: sentiment (int8, -1/0/1) and probabilities (n x 3)."""
        if isinstance(self.predictions, PredictionColumns):
            return self.predictions.labels, self.predictions.probabilities.astype(np.float32)
        n = len(self.predictions)
        sentiment = np.fromiter((p.sentiment for p in self.predictions), np.int8, count=n)
        probs = np.array(
            [(p.p_negative, p.p_neutral, p.p_positive) for p in self.predictions], np.float32
        ).reshape(n, 3)
        return sentiment, probs


class Scorer(Protocol):
    """Scores events, one prediction per event in order. Retriable failures (throttling,
    5xx, endpoint down) are retried inside, so a call may take as long as an outage lasts;
    a request the endpoint rejects for good raises :class:`~stream.errors.ScoringRejected`."""

    async def score(self, events: Sequence[ReviewEvent]) -> ScoringResult: ...


class Sink(Protocol):
    """An output. ``write`` stores the batch or buffers it (retrying outages inside);
    ``durable_seq`` is the highest :attr:`Batch.seq` whose data, and every earlier batch's,
    is stored durably (-1 for none): the core commits source positions only up to the lowest
    such value over all sinks. ``flush`` forces buffered data out; ``close`` is idempotent."""

    async def write(self, batch: Batch) -> None: ...

    def durable_seq(self) -> int: ...

    async def flush(self) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class CommitListener(Protocol):
    """A sink told what the source committed, once it has (the lake deletes the pending
    markers of files whose rows are all committed). A failure there must not fail the run."""

    async def committed(self, positions: Mapping[tuple[str, str, str], SourcePosition]) -> None: ...


class AlertSink(Protocol):
    async def emit(self, alerts: Sequence[Alert]) -> None: ...


class Monitor(Protocol):
    """What the monitors look like to the core (pure, synchronous)."""

    def observe(self, batch: Sequence[ScoredReview], now: datetime) -> list[Alert]: ...


#: The most records of a batch unless told otherwise: ``SENTIMENT_BATCH__MAX_EVENTS``'s default
#: (the settings do not import the core; a unit test keeps the two equal).
DEFAULT_BATCH_EVENTS = 2000
#: The most records of a pipeline's first batch (see :meth:`Pipeline._batch`).
FIRST_BATCH_EVENTS = 500


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    max_batch_events: int = DEFAULT_BATCH_EVENTS
    max_batch_wait_s: float = 0.2
    queue_batches: int = 4
    max_text_bytes: int = 5_000
    decode_limits: DecodeLimits | None = None  #: all limits (max_text_bytes is then unused)
    idle_flush_s: float = 1.0
    #: after a failure, how long closing each sink (a last flush) may take before it is dropped
    close_timeout_s: float = 10.0
    #: the product categories the :class:`Summary` counts by name, the rest as ``other`` (as
    #: the metrics do); None counts every category by name
    categories: tuple[str, ...] | None = None


#: The firing alerts a :class:`Summary` keeps, the latest.
SUMMARY_ALERTS = 20


@dataclass(slots=True)
class Summary:
    """What a run did, for the CLI's closing table and for tests.

    ``mix`` counts the reviews per product category and predicted sentiment. With
    ``categories`` given, a category outside it counts as ``other``, as in the metrics:
    producers choose the category, and a run (a Kafka worker's lasts until a rebalance) would
    otherwise keep an entry for every category ever sent. For the same reason it counts every
    firing alert but keeps only the latest :data:`SUMMARY_ALERTS` (the alert outputs have
    them all)."""

    records_in: int = 0
    scored: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    mix: dict[str, Counter[int]] = field(default_factory=dict)
    alerts_fired: int = 0
    firing: deque[Alert] = field(default_factory=lambda: deque(maxlen=SUMMARY_ALERTS))
    batches: int = 0
    categories: frozenset[str] | None = None

    def add(self, batch: Batch) -> None:
        self.batches += 1
        self.records_in += len(batch.scored) + len(batch.dead)
        self.scored += len(batch.scored)
        for d in batch.dead:
            self.dead_letters[d.reason.value] += 1
        allowed = self.categories
        for (category, sentiment), n in mix_counts(batch.scored).items():
            key = category if allowed is None else category_or_other(category, allowed)
            self.mix.setdefault(key, Counter())[sentiment] += n
        for alert in batch.alerts:
            if alert.status == "firing":
                self.alerts_fired += 1
                self.firing.append(alert)


def mix_counts(scored: Sequence[ScoredReview]) -> dict[tuple[str, int], int]:
    """Reviews per (product category, predicted sentiment), counted on the batch's columns."""
    if not isinstance(scored, ScoredBatch):
        counts: Counter[tuple[str, int]] = Counter(
            (s.event.product_category, s.sentiment) for s in scored
        )
        return dict(counts)
    if not len(scored):
        return {}
    import pyarrow.compute as pc

    # A dictionary code per category and a bincount: an Arrow group_by costs milliseconds
    # a call, more than the batch's own work.
    table = scored.table
    encoded = pc.dictionary_encode(table.column("product_category")).combine_chunks()
    categories = encoded.dictionary.to_pylist()
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    classes = np.asarray(table.column("sentiment").to_numpy(), dtype=np.int64) + 1
    table_counts = np.bincount(codes * 3 + classes, minlength=3 * len(categories)).reshape(-1, 3)
    return {
        (categories[c], int(k) - 1): int(table_counts[c, k])
        for c, k in zip(*np.nonzero(table_counts), strict=True)
    }


@dataclass(slots=True)
class _Decoded:
    events: list[ReviewEvent]
    event_positions: list[SourcePosition]
    dead: list[DeadLetter]
    positions: dict[tuple[str, str, str], SourcePosition]


class _Stop:
    """End of stream marker on the internal queues."""


_STOP = _Stop()

BatchHook = Callable[[Batch], None]


class _Lane:
    """One output's ordered queue of batches and the task that stores them, one at a time:
    each output sees the batches in order, while the outputs (and the monitors) work side by
    side. Bounded, so a slow output holds the whole pipeline back instead of buffering."""

    def __init__(
        self,
        write: Callable[[Batch], Awaitable[None]],
        depth: int,
        on_written: Callable[[], None],
        *,
        is_alerts: bool = False,
    ) -> None:
        self._write = write
        self._queue: asyncio.Queue[Batch] = asyncio.Queue(max(1, depth))
        self._on_written = on_written
        self.is_alerts = is_alerts
        self.written = -1  #: the seq of the last batch this output stored

    async def put(self, batch: Batch) -> None:
        await self._queue.put(batch)

    async def drained(self) -> None:
        """Return once every batch put so far is stored."""
        await self._queue.join()

    async def run(self) -> None:
        while True:
            batch = await self._queue.get()
            await self._write(batch)
            self.written = batch.seq
            self._queue.task_done()
            self._on_written()


class _Committer:
    """Commits positions in the background, one commit at a time: positions that arrive
    while one is in flight are merged into the next, so a slow commit never holds up
    delivery and a commit never goes past what it was given."""

    def __init__(
        self, source: Source | BatchSource, listeners: Sequence[CommitListener] = ()
    ) -> None:
        self._source = source
        self._listeners = tuple(listeners)
        self._positions: dict[tuple[str, str, str], SourcePosition] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, positions: Mapping[tuple[str, str, str], SourcePosition]) -> None:
        self._positions.update(positions)
        self._idle.clear()
        self._wake.set()

    async def drained(self) -> None:
        """Return once everything added so far is committed."""
        await self._idle.wait()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._positions:
                positions, self._positions = self._positions, {}
                await self._source.commit(positions)
                for listener in self._listeners:
                    try:
                        await listener.committed(positions)
                    except Exception:
                        log.exception("a sink failed to take a commit; the run goes on")
            self._idle.set()


class Pipeline:
    """Runs one source through scoring, sinks and monitors until the source ends or
    :meth:`stop` is called. Use ``await pipeline.run()``; it returns a :class:`Summary`."""

    def __init__(
        self,
        source: Source | BatchSource,
        scorer: Scorer,
        sinks: Sequence[Sink],
        monitor: Monitor,
        alert_sinks: Sequence[AlertSink] = (),
        *,
        options: PipelineOptions | None = None,
        on_batch: BatchHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._scorer = scorer
        self._sinks = tuple(sinks)
        self._monitor = monitor
        self._alert_sinks = tuple(alert_sinks)
        self._opts = options or PipelineOptions()
        self._on_batch = on_batch
        self._clock = clock
        self._stopping = asyncio.Event()
        self._read_task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Queue[asyncio.Task[Batch] | _Stop] | None = None
        # One lane per sink, one for the alert outputs, and the committer: created once, their
        # tasks run for the length of run().
        depth = self._opts.queue_batches
        self._lanes = [_Lane(sink.write, depth, self._written) for sink in self._sinks]
        if self._alert_sinks:
            self._lanes.append(_Lane(self._emit, depth, self._written, is_alerts=True))
        self._committer = _Committer(
            source, [s for s in self._sinks if isinstance(s, CommitListener)]
        )
        self._handed: deque[Batch] = deque()  # handed to the lanes, not yet stored by all
        # Stored by every lane, not yet committed: only each batch's seq and positions. A sink
        # that buffers (the lake, up to a minute) holds its rows until they are durable; the
        # batch itself (events, columns, encodings) is not kept that long.
        self._unsettled: deque[tuple[int, Mapping[tuple[str, str, str], SourcePosition]]] = deque()
        categories = self._opts.categories
        self.summary = Summary(categories=None if categories is None else frozenset(categories))

    @property
    def inflight_batches(self) -> int:
        """Batches accepted and waiting for delivery (at ``queue_batches``: backpressure)."""
        return 0 if self._inflight is None else self._inflight.qsize()

    def stop(self) -> None:
        """Stop pulling new records; what was accepted still goes through. Idempotent."""
        self._stopping.set()
        if self._read_task is not None:
            self._read_task.cancel()

    async def run(self) -> Summary:
        raw_q: asyncio.Queue[Sequence[RawRecord] | _Stop] = asyncio.Queue(2)
        inflight: asyncio.Queue[asyncio.Task[Batch] | _Stop] = asyncio.Queue(
            self._opts.queue_batches
        )
        self._inflight = inflight
        self._read_task = asyncio.create_task(self._read(raw_q), name="pipeline-read")
        if self._stopping.is_set():
            self._read_task.cancel()
        stages = [
            self._read_task,
            asyncio.create_task(self._batch(raw_q, inflight), name="pipeline-batch"),
            asyncio.create_task(self._deliver(inflight), name="pipeline-deliver"),
        ]
        # The lanes and the committer serve the stages until the last one ends.
        helpers = [asyncio.create_task(lane.run(), name="pipeline-sink") for lane in self._lanes]
        helpers.append(asyncio.create_task(self._committer.run(), name="pipeline-commit"))
        failed = False
        try:
            # Any task failing ends the run; the others are cancelled below.
            waiting = {*stages, *helpers}
            while not all(t.done() for t in stages):
                done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    t.result()
        except BaseException:
            failed = True
            raise
        finally:
            for t in stages + helpers:
                t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*stages, *helpers, return_exceptions=True)
            self._drain_inflight(inflight)
            await self._close_sinks(failed)
        return self.summary

    async def _emit(self, batch: Batch) -> None:
        for alert_sink in self._alert_sinks:
            await alert_sink.emit(batch.alerts)

    async def _close_sinks(self, failed: bool) -> None:
        """Close every sink. After a failure a close (its last flush) is bounded in time and
        its error only logged: nothing of the failed run is committed, so what a sink could
        not store comes again from the source."""
        for sink in self._sinks:
            if not failed:
                await sink.close()
                continue
            try:
                async with asyncio.timeout(self._opts.close_timeout_s):
                    await sink.close()
            except (Exception, asyncio.CancelledError) as err:  # noqa: BLE001 - already failing
                log.warning("closing %s after a failure: %s", type(sink).__name__, describe(err))

    # -- stages ---------------------------------------------------------------------------

    async def _read(self, raw_q: asyncio.Queue[Sequence[RawRecord] | _Stop]) -> None:
        try:
            async for chunk in _chunks(self._source, self._opts.max_batch_events):
                if chunk:
                    await raw_q.put(chunk)
                if self._stopping.is_set():
                    break
        except asyncio.CancelledError:
            # stop() cancels a source that is waiting for records. A record in hand but not
            # queued was not accepted: it is not committed and comes again after a restart.
            # A cancel for any other reason (a stage failed) ends here without a marker: the
            # run is being torn down and nobody waits for one.
            if not self._stopping.is_set():
                raise
        await raw_q.put(_STOP)

    async def _batch(
        self,
        raw_q: asyncio.Queue[Sequence[RawRecord] | _Stop],
        inflight: asyncio.Queue[asyncio.Task[Batch] | _Stop],
    ) -> None:
        # A slow start: the first batch holds at most FIRST_BATCH_EVENTS records and each
        # next one twice as many, up to max_batch_events. The first batch is then delivered
        # as soon as a small one would be (the monitors learn their baseline, and the first
        # calls of every stage warm up, on fewer records), and a backlog still moves in
        # large batches after a few.
        limit = min(self._opts.max_batch_events, FIRST_BATCH_EVENTS)
        held: list[RawRecord] = []
        ended = False
        while not ended or held:
            if not held:
                first = await raw_q.get()
                if isinstance(first, _Stop):
                    break
                held = list(first)
            deadline = time.monotonic() + self._opts.max_batch_wait_s
            while len(held) < limit and not ended:
                # Take what is already queued without waiting; wait only for the rest.
                try:
                    item = raw_q.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        # asyncio.timeout, not wait_for: wait_for (3.11) can swallow the
                        # cancel that tears a failed run down when a record arrives with it.
                        async with asyncio.timeout(remaining):
                            item = await raw_q.get()
                    except TimeoutError:
                        break
                if isinstance(item, _Stop):
                    ended = True
                else:
                    held.extend(item)
            records, held = held[:limit], held[limit:]
            limit = min(self._opts.max_batch_events, 2 * limit)
            decoded = self._decode(records)
            task = asyncio.create_task(self._score(decoded), name="pipeline-score")
            await inflight.put(task)
        await inflight.put(_STOP)

    def _decode(self, records: Sequence[RawRecord]) -> _Decoded:
        limits = self._opts.decode_limits or DecodeLimits(max_text_bytes=self._opts.max_text_bytes)
        decoded = decode_batch(
            [r.value for r in records],
            [r.position for r in records],
            [r.received_at for r in records],
            limits,
        )
        out = _Decoded(decoded.events, decoded.event_positions, decoded.dead, {})
        for rec in records:
            out.positions[rec.position.key] = rec.position
        return out

    async def _score(self, decoded: _Decoded) -> Batch:
        scored: Sequence[ScoredReview] = []
        dead = decoded.dead
        if decoded.events:
            try:
                result = await self._scorer.score(decoded.events)
            except ScoringRejected as err:
                now = datetime.fromtimestamp(self._clock(), UTC)
                dead = dead + [
                    DeadLetter(
                        raw=_event_bytes(ev),
                        reason=Reason.SCORING_REJECTED,
                        detail=str(err),
                        position=pos,
                        received_at=now,
                    )
                    for ev, pos in zip(decoded.events, decoded.event_positions, strict=True)
                ]
            else:
                scored = ScoredBatch.from_predictions(
                    decoded.events,
                    decoded.event_positions,
                    *result.arrays(),
                    model=(result.model_name, result.model_version),
                    scored_at=datetime.fromtimestamp(self._clock(), UTC),
                    latency_ms=result.latency_ms,
                )
        return Batch(scored=scored, dead=dead, positions=decoded.positions)

    async def _deliver(self, inflight: asyncio.Queue[asyncio.Task[Batch] | _Stop]) -> None:
        """Monitor each scored batch in order and hand it to every lane without waiting for
        the sinks: the sinks store batch n while the monitors look at batch n+1, and the
        commits follow in the background as the sinks report batches durable."""
        seq = 0
        while True:
            try:
                async with asyncio.timeout(self._opts.idle_flush_s):
                    item = await inflight.get()
            except TimeoutError:
                # The stream is idle: push buffered sink data out so it can be committed.
                await self._flush_and_commit()
                continue
            if isinstance(item, _Stop):
                break
            batch = await item
            batch.seq = seq
            seq += 1
            now = datetime.fromtimestamp(self._clock(), UTC)
            batch.alerts = self._monitor.observe(batch.scored, now) if batch.scored else []
            self._handed.append(batch)
            for lane in self._lanes:
                await lane.put(batch)
            if not self._lanes:
                self._written()
        await self._flush_and_commit()

    def _written(self) -> None:
        """A lane stored a batch: finish the batches every lane has (in order) and commit
        what every sink holds durably."""
        last = self._handed[-1].seq if self._handed else -1
        done = min((lane.written for lane in self._lanes), default=last)
        while self._handed and self._handed[0].seq <= done:
            batch = self._handed.popleft()
            self._unsettled.append((batch.seq, batch.positions))
            self.summary.add(batch)
            if self._on_batch is not None:
                self._on_batch(batch)
        self._commit_durable()

    def _commit_durable(self) -> None:
        """Queue the positions of every batch that all sinks hold durably (in order); an
        alert output counts as holding a batch once its alerts went out."""
        if not self._unsettled:
            return
        durable = min(
            [sink.durable_seq() for sink in self._sinks]
            + [lane.written for lane in self._lanes if lane.is_alerts]
            + [self._unsettled[-1][0]]
        )
        positions: dict[tuple[str, str, str], SourcePosition] = {}
        while self._unsettled and self._unsettled[0][0] <= durable:
            positions.update(self._unsettled.popleft()[1])
        if positions:
            self._committer.add(positions)

    async def _flush_and_commit(self) -> None:
        """Wait for every lane to store what it was handed, flush the sinks, and wait for
        the commit of everything they then hold."""
        for lane in self._lanes:
            await lane.drained()
        for sink in self._sinks:
            await sink.flush()
        self._commit_durable()
        await self._committer.drained()

    def _drain_inflight(self, inflight: asyncio.Queue[asyncio.Task[Batch] | _Stop]) -> None:
        # Only reached after a failure: cancel scoring that nobody will deliver. Those records
        # were never committed, so the source hands them out again after a restart.
        while not inflight.empty():
            item = inflight.get_nowait()
            if isinstance(item, asyncio.Task):
                item.cancel()


async def _chunks(source: Source | BatchSource, size: int) -> AsyncIterator[Sequence[RawRecord]]:
    """The source's records in chunks: its own (a :class:`BatchSource`, split at ``size``),
    or one record at a time from a plain :class:`Source`."""
    if isinstance(source, BatchSource):
        async for chunk in source.batches():
            for i in range(0, len(chunk), size):
                yield chunk[i : i + size]
        return
    async for record in source.records():
        yield (record,)


def _event_bytes(event: ReviewEvent) -> bytes:
    import json

    return json.dumps(event.to_json_dict(), ensure_ascii=False).encode("utf-8")
