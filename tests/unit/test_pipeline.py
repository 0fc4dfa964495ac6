"""The pipeline core with in-process parts: ordering, commits after sinks, backpressure,
clean stop, rejected scoring. Real transports are exercised in tests/integration."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from endpoint.model import InvalidInput
from stream.errors import ScoringRejected
from stream.events import Alert, Batch, Reason, ReviewEvent, ScoredReview, Severity, SourcePosition
from stream.pipeline import (
    FIRST_BATCH_EVENTS,
    SUMMARY_ALERTS,
    Pipeline,
    PipelineOptions,
    Prediction,
    PredictionColumns,
    RawRecord,
    ScoringResult,
    Summary,
)
from stream.scoring import InProcessScorer

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event_bytes(i: int, text: str = "lovely dress") -> bytes:
    return json.dumps(
        {
            "review_id": f"r-{i}",
            "product_id": f"p-{i % 7}",
            "product_category": "Dresses" if i % 2 else "Knits",
            "review_text": text,
            "channel": "web",
            "event_time": (T0 + timedelta(seconds=i)).isoformat(),
        }
    ).encode()


class ListSource:
    def __init__(self, values: Sequence[bytes], partitions: int = 1) -> None:
        self.values = values
        self.partitions = partitions
        self.pulled = 0
        self.commits: list[dict[tuple[str, str, str], SourcePosition]] = []

    async def records(self) -> AsyncIterator[RawRecord]:
        for i, v in enumerate(self.values):
            self.pulled += 1
            part = str(i % self.partitions)
            yield RawRecord(v, SourcePosition("test", "reviews", part, i), T0)
            await asyncio.sleep(0)

    async def commit(self, positions: Mapping[tuple[str, str, str], SourcePosition]) -> None:
        self.commits.append(dict(positions))


class EndlessSource(ListSource):
    async def records(self) -> AsyncIterator[RawRecord]:
        i = 0
        while True:
            self.pulled += 1
            yield RawRecord(event_bytes(i), SourcePosition("test", "reviews", "0", i), T0)
            i += 1
            await asyncio.sleep(0)


class KeywordScorer:
    """Negative when the text says 'bad', else positive; optional gate to hold requests."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.reject_if: str | None = None

    async def score(self, events: Sequence[ReviewEvent]) -> ScoringResult:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.reject_if and any(self.reject_if in e.review_text for e in events):
            raise ScoringRejected("endpoint said 400")
        preds = [
            Prediction(-1, 0.8, 0.1, 0.1) if "bad" in e.review_text else Prediction(1, 0, 0, 1)
            for e in events
        ]
        return ScoringResult(preds, "kw", "1", 1.5)


class MemorySink:
    def __init__(self, source: ListSource | None = None) -> None:
        self.batches: list[Batch] = []
        self.flushed = 0
        self.closed = 0
        self.source = source
        self.commits_seen_at_write: list[int] = []
        self.fail = False
        self.durable = -1

    def durable_seq(self) -> int:
        return self.durable

    async def write(self, batch: Batch) -> None:
        if self.fail:
            raise OSError("disk full")
        if self.source is not None:
            self.commits_seen_at_write.append(len(self.source.commits))
        self.batches.append(batch)
        self.durable = batch.seq

    async def flush(self) -> None:
        self.flushed += 1

    async def close(self) -> None:
        self.closed += 1

    @property
    def scored(self) -> list[ScoredReview]:
        return [s for b in self.batches for s in b.scored]


class CountingMonitor:
    def __init__(self) -> None:
        self.seen = 0

    def observe(self, batch: Sequence[ScoredReview], now: datetime) -> list[Alert]:
        self.seen += len(batch)
        if any(s.sentiment == -1 for s in batch):
            return [
                Alert("a", "SentimentShift", "firing", Severity.CRITICAL, "all", "x", T0, T0, now)
            ]
        return []


class MemoryAlerts:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def emit(self, alerts: Sequence[Alert]) -> None:
        self.alerts.extend(alerts)


def opts(**kw: object) -> PipelineOptions:
    base: dict[str, object] = {"max_batch_events": 10, "max_batch_wait_s": 0.01, "queue_batches": 2}
    base.update(kw)
    return PipelineOptions(**base)  # type: ignore[arg-type]


async def test_every_record_is_delivered_once_in_order_and_committed() -> None:
    values = [event_bytes(i, "bad fit" if i % 5 == 0 else "nice") for i in range(95)]
    values[17] = b"{broken"
    values[40] = b'{"review_id": 1}'
    source = ListSource(values, partitions=3)
    sink, monitor, alerts = MemorySink(), CountingMonitor(), MemoryAlerts()
    summary = await Pipeline(
        source, KeywordScorer(), [sink], monitor, [alerts], options=opts()
    ).run()

    ids = [s.event.review_id for s in sink.scored]
    expected = [f"r-{i}" for i in range(95) if i not in (17, 40)]
    assert ids == expected
    dead = [d for b in sink.batches for d in b.dead]
    assert [(d.position.offset, d.reason) for d in dead] == [
        (17, Reason.NOT_JSON),
        (40, Reason.WRONG_TYPE),
    ]
    assert [s.sentiment for s in sink.scored[:6]] == [-1, 1, 1, 1, 1, -1]
    assert summary.scored == 93 and summary.records_in == 95
    assert summary.dead_letters == {"not_json": 1, "wrong_type": 1}
    assert monitor.seen == 93
    assert len(alerts.alerts) == len([b for b in sink.batches if b.alerts]) > 0
    # The last commit covers the last record of every partition.
    last: dict[tuple[str, str, str], int] = {}
    for c in source.commits:
        for key, pos in c.items():
            last[key] = max(last.get(key, -1), pos.offset)
    assert last == {
        ("test", "reviews", "0"): 93,
        ("test", "reviews", "1"): 94,
        ("test", "reviews", "2"): 92,
    }
    assert sink.flushed == 1 and sink.closed == 1


async def test_commit_happens_only_after_the_sinks_have_the_batch() -> None:
    source = ListSource([event_bytes(i) for i in range(30)])
    sink = MemorySink(source)
    await Pipeline(source, KeywordScorer(), [sink], CountingMonitor(), options=opts()).run()
    # When batch k is written, exactly k earlier batches have been committed.
    assert sink.commits_seen_at_write == list(range(len(sink.batches)))
    assert len(source.commits) == len(sink.batches)


async def test_slow_endpoint_stops_the_source_pulling() -> None:
    source = EndlessSource([])
    scorer = KeywordScorer()
    scorer.gate = asyncio.Event()
    sink = MemorySink()
    pipeline = Pipeline(source, scorer, [sink], CountingMonitor(), options=opts())
    task = asyncio.create_task(pipeline.run())
    await asyncio.sleep(0.3)
    pulled_while_blocked = source.pulled
    await asyncio.sleep(0.3)
    # Bounded: raw queue (2 x batch) + batches in flight + the batcher's own + one in hand.
    assert source.pulled == pulled_while_blocked
    assert pulled_while_blocked <= 10 * 2 + 10 * (2 + 2) + 1
    assert sink.batches == []
    pipeline.stop()
    scorer.gate.set()
    summary = await asyncio.wait_for(task, 5)
    # Everything accepted before the stop went through; nothing was dropped. The one
    # record in the source's hand when it was cancelled was never accepted (nor committed).
    assert summary.records_in == len(sink.scored)
    assert source.pulled - 1 <= summary.records_in <= source.pulled
    assert [s.position.offset for s in sink.scored] == list(range(summary.records_in))


async def test_stop_drains_accepted_records_and_flushes() -> None:
    source = EndlessSource([])
    sink = MemorySink()
    pipeline = Pipeline(source, KeywordScorer(), [sink], CountingMonitor(), options=opts())
    task = asyncio.create_task(pipeline.run())
    await asyncio.sleep(0.2)
    pipeline.stop()
    pipeline.stop()  # idempotent
    summary = await asyncio.wait_for(task, 5)
    offsets = [s.position.offset for s in sink.scored]
    assert offsets == list(range(len(offsets)))
    assert summary.records_in == len(offsets) >= source.pulled - 1
    assert sink.flushed == 1 and sink.closed == 1


async def test_rejected_scoring_turns_the_batch_into_dead_letters() -> None:
    values = [event_bytes(i, "poison" if i == 3 else "fine") for i in range(10)]
    scorer = KeywordScorer()
    scorer.reject_if = "poison"
    sink = MemorySink()
    summary = await Pipeline(
        ListSource(values), scorer, [sink], CountingMonitor(), options=opts()
    ).run()
    dead = [d for b in sink.batches for d in b.dead]
    assert len(dead) == 10 and {d.reason for d in dead} == {Reason.SCORING_REJECTED}
    assert json.loads(dead[3].raw)["review_text"] == "poison"
    assert summary.dead_letters == {"scoring_rejected": 10}


async def test_a_failing_sink_ends_the_run_without_committing() -> None:
    source = ListSource([event_bytes(i) for i in range(30)])
    sink = MemorySink()
    sink.fail = True
    with pytest.raises(OSError, match="disk full"):
        await Pipeline(source, KeywordScorer(), [sink], CountingMonitor(), options=opts()).run()
    assert source.commits == []
    assert sink.closed == 1


@pytest.mark.parametrize(
    ("fault", "refused"),
    [(InvalidInput("the request holds no instances"), True), (ValueError("a bug"), False)],
)
async def test_the_in_process_model_refuses_a_batch_only_for_the_handlers_reasons(
    monkeypatch: pytest.MonkeyPatch, fault: ValueError, refused: bool
) -> None:
    # the handler's InvalidInput is a refusal for good: the batch becomes dead letters and is
    # committed; any other ValueError (numpy's, Arrow's) is a fault of this process: the run
    # ends and nothing is committed, so the reviews are read again, not lost to the lake
    scorer = InProcessScorer()

    def broken(*args: object, **kwargs: object) -> object:
        raise fault

    monkeypatch.setattr(scorer._model, "predict_proba", broken)
    source = ListSource([event_bytes(i) for i in range(10)])
    sink = MemorySink(source)
    pipeline = Pipeline(source, scorer, [sink], CountingMonitor(), options=opts())
    if refused:
        summary = await pipeline.run()
        assert summary.dead_letters == {"scoring_rejected": 10}
        assert source.commits
    else:
        with pytest.raises(ValueError, match="a bug"):
            await pipeline.run()
        assert source.commits == []
        assert [d for b in sink.batches for d in b.dead] == []


def test_options_are_plain_values() -> None:
    """The core's default batch size is the settings' (the core does not import them)."""
    from stream.settings import BatchSettings

    assert PipelineOptions().max_batch_events == BatchSettings().max_events == 2000


class ChunkSource(ListSource):
    """Hands every record over in one chunk: a backlog that one fetch returns."""

    async def batches(self) -> AsyncIterator[Sequence[RawRecord]]:
        self.pulled = len(self.values)
        yield [
            RawRecord(v, SourcePosition("test", "reviews", "0", i), T0)
            for i, v in enumerate(self.values)
        ]


async def test_batches_start_small_and_double_up_to_the_limit() -> None:
    """A slow start: the first batch is delivered as soon as a small one would be, and a
    backlog then moves in batches of the configured size."""
    source = ChunkSource([event_bytes(i) for i in range(5_200)])
    sink = MemorySink()
    options = opts(max_batch_events=2_000, max_batch_wait_s=1.0)
    await Pipeline(source, KeywordScorer(), [sink], CountingMonitor(), options=options).run()
    assert [len(b.scored) for b in sink.batches] == [500, 1_000, 2_000, 1_700]
    assert FIRST_BATCH_EVENTS == 500
    small = ChunkSource([event_bytes(i) for i in range(25)])
    sink = MemorySink()
    await Pipeline(small, KeywordScorer(), [sink], CountingMonitor(), options=opts()).run()
    assert [len(b.scored) for b in sink.batches] == [10, 10, 5]  # a limit below the start


class BufferingSink(MemorySink):
    """Holds batches until three are buffered (or a flush), like a lake buffering files."""

    def __init__(self) -> None:
        super().__init__()
        self.buffered: list[Batch] = []

    async def write(self, batch: Batch) -> None:
        self.buffered.append(batch)
        if len(self.buffered) == 3:
            await self.flush()

    async def flush(self) -> None:
        self.flushed += 1
        if self.buffered:
            self.batches.extend(self.buffered)
            self.durable = self.buffered[-1].seq
            self.buffered = []


async def test_positions_are_committed_only_once_a_buffering_sink_made_them_durable() -> None:
    source = ListSource([event_bytes(i) for i in range(70)])
    buffering, direct = BufferingSink(), MemorySink()
    # Batches cut by size only (a busy machine must not cut one by time): exactly 10 each.
    await Pipeline(
        source,
        KeywordScorer(),
        [buffering, direct],
        CountingMonitor(),
        options=opts(max_batch_wait_s=60),
    ).run()
    committed = [c[("test", "reviews", "0")].offset for c in source.commits]
    # Batches of 10: durable after the 3rd and 6th batch, then the final flush at the end.
    assert committed == [29, 59, 69]
    assert [b.seq for b in buffering.batches] == list(range(7))


async def test_batches_a_buffering_sink_holds_are_not_kept_by_the_core() -> None:
    """A sink that buffers (the lake holds its rows up to a minute) keeps a batch's commit
    waiting, but the core keeps only the batch's positions meanwhile, not the batch: whole
    batches (events, columns, encodings) kept for the lake's minute grew a worker with every
    event of it. Counted when the sink has taken 25 batches of 10 and made none durable."""

    class HoldsItsOwn(MemorySink):
        def __init__(self) -> None:
            super().__init__()
            self.live: list[int] = []
            self.last = -1

        async def write(self, batch: Batch) -> None:
            self.last = batch.seq  # its rows would be copied into a buffer; the batch let go
            if batch.seq == 24:
                gc.collect()
                self.live.append(sum(isinstance(o, Batch) for o in gc.get_objects()))

        async def flush(self) -> None:
            self.durable = self.last

    source = ListSource([event_bytes(i) for i in range(300)])
    sink = HoldsItsOwn()
    await Pipeline(
        source, KeywordScorer(), [sink], CountingMonitor(), options=opts(max_batch_wait_s=60)
    ).run()
    assert len(sink.live) == 1
    # the one being written and those queued behind it (2 a queue), not the 25 handed over
    assert sink.live[0] <= 6, sink.live
    assert source.commits[-1][("test", "reviews", "0")].offset == 299  # the final flush


async def test_the_summary_counts_unlisted_categories_as_other() -> None:
    """Producers choose the category: a run keeps one count per listed category, and the
    rest together (as the metrics label them), not one per category ever sent."""
    values = [event_bytes(i) for i in range(40)]  # Dresses when i is odd, else Knits
    values += [
        json.dumps({**json.loads(event_bytes(40 + i)), "product_category": f"made-up-{i}"}).encode()
        for i in range(30)
    ]
    listed = Pipeline(
        ListSource(values),
        KeywordScorer(),
        [],
        CountingMonitor(),
        options=opts(categories=("Dresses",)),
    )
    summary = await listed.run()
    assert {c: sum(n.values()) for c, n in summary.mix.items()} == {"Dresses": 20, "other": 50}
    unlisted = await Pipeline(ListSource(values), KeywordScorer(), [], CountingMonitor()).run()
    assert len(unlisted.mix) == 32  # without a list: every category by name


async def test_an_idle_stream_flushes_buffers_and_commits() -> None:
    sink = BufferingSink()

    class TwoBatchesThenIdle(ListSource):
        async def records(self) -> AsyncIterator[RawRecord]:
            for i in range(15):
                yield RawRecord(event_bytes(i), SourcePosition("test", "reviews", "0", i), T0)
            await asyncio.Event().wait()  # no more records, but the stream stays open

    idle = TwoBatchesThenIdle([])
    pipeline = Pipeline(
        idle, KeywordScorer(), [sink], CountingMonitor(), options=opts(idle_flush_s=0.05)
    )
    task = asyncio.create_task(pipeline.run())
    for _ in range(100):
        await asyncio.sleep(0.02)
        if idle.commits:
            break
    assert idle.commits[-1][("test", "reviews", "0")].offset == 14
    pipeline.stop()
    await asyncio.wait_for(task, 5)


class GatedSink(MemorySink):
    """Writes a batch only once ``gate`` is set; records when each write began."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.started: list[int] = []

    async def write(self, batch: Batch) -> None:
        self.started.append(batch.seq)
        await self.gate.wait()
        await super().write(batch)


async def test_each_sink_stores_batches_in_its_own_lane_side_by_side() -> None:
    source = ListSource([event_bytes(i) for i in range(40)])
    slow, fast = GatedSink(), MemorySink(source)
    run = asyncio.create_task(
        Pipeline(
            source,
            KeywordScorer(),
            [slow, fast],
            CountingMonitor(),
            options=opts(max_batch_wait_s=60, queue_batches=2),
        ).run()
    )
    # The slow sink holds its first batch; the fast one goes ahead by up to its lane's depth
    # plus the batch in hand, and nothing is committed: the slow sink holds nothing yet.
    for _ in range(200):
        await asyncio.sleep(0.01)
        if len(fast.batches) >= 3:
            break
    assert [b.seq for b in fast.batches] == [0, 1, 2]
    assert slow.started == [0] and slow.batches == []
    assert source.commits == []
    slow.gate.set()
    summary = await asyncio.wait_for(run, 5)
    assert [b.seq for b in slow.batches] == [b.seq for b in fast.batches] == [0, 1, 2, 3]
    assert summary.records_in == 40
    assert source.commits[-1][("test", "reviews", "0")].offset == 39


async def test_a_failing_commit_ends_the_run() -> None:
    class RefusingSource(ListSource):
        async def commit(self, positions: Mapping[tuple[str, str, str], SourcePosition]) -> None:
            raise RuntimeError("CommitFailedError: the group rebalanced")

    source = RefusingSource([event_bytes(i) for i in range(30)])
    sink = MemorySink()
    with pytest.raises(RuntimeError, match="rebalanced"):
        await asyncio.wait_for(
            Pipeline(source, KeywordScorer(), [sink], CountingMonitor(), options=opts()).run(), 5
        )
    assert sink.closed == 1


async def test_alert_outputs_are_a_lane_that_commits_wait_for() -> None:
    class StuckAlerts(MemoryAlerts):
        def __init__(self) -> None:
            super().__init__()
            self.gate = asyncio.Event()

        async def emit(self, alerts: Sequence[Alert]) -> None:
            await self.gate.wait()
            await super().emit(alerts)

    source = ListSource([event_bytes(i, "bad fit") for i in range(20)])
    sink, alerts = MemorySink(), StuckAlerts()
    run = asyncio.create_task(
        Pipeline(source, KeywordScorer(), [sink], CountingMonitor(), [alerts], options=opts()).run()
    )
    for _ in range(100):
        await asyncio.sleep(0.01)
        if len(sink.batches) == 2:
            break
    # The lake-like sink holds both batches, but their alerts have not gone out: no commit.
    assert len(sink.batches) == 2 and source.commits == []
    alerts.gate.set()
    await asyncio.wait_for(run, 5)
    assert len(alerts.alerts) == 2
    assert source.commits[-1][("test", "reviews", "0")].offset == 19


def test_prediction_columns_read_as_predictions_and_as_arrays() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25]])
    columns = PredictionColumns([-1, 1, 0], probs)
    assert len(columns) == 3
    assert list(columns) == [
        Prediction(-1, 0.7, 0.2, 0.1),
        Prediction(1, 0.1, 0.3, 0.6),
        Prediction(0, 0.25, 0.5, 0.25),
    ]
    assert columns[-1] == Prediction(0, 0.25, 0.5, 0.25)
    assert list(columns[1:]) == list(columns)[1:]
    with pytest.raises(IndexError):
        columns[3]
    # the same columns as the row path builds from Prediction values
    as_rows = ScoringResult(list(columns), "m", "1", 1.0).arrays()
    as_columns = ScoringResult(columns, "m", "1", 1.0).arrays()
    for mine, theirs in zip(as_columns, as_rows, strict=True):
        assert mine.dtype == theirs.dtype
        np.testing.assert_array_equal(mine, theirs)
    with pytest.raises(ValueError, match="three probabilities"):
        PredictionColumns([1, 0], probs)


def test_the_summary_counts_every_firing_alert_and_keeps_the_latest() -> None:
    def alert(i: int, status: str) -> Alert:
        return Alert(f"a{i}", "SentimentShift", status, Severity.CRITICAL, "all", "x", T0, T0, T0)

    summary = Summary()
    for start in range(0, 50, 10):  # 5 batches of 10 alerts, every third resolved
        alerts = [
            alert(i, "resolved" if i % 3 == 0 else "firing") for i in range(start, start + 10)
        ]
        summary.add(Batch([], [], {}, alerts))
    firing = [i for i in range(50) if i % 3]
    assert summary.alerts_fired == len(firing) == 33
    assert [a.alert_id for a in summary.firing] == [f"a{i}" for i in firing[-SUMMARY_ALERTS:]]
    assert SUMMARY_ALERTS == 20


class ListeningSink(MemorySink):
    """A sink told of each commit once the source has made it; ``fail`` makes it raise."""

    def __init__(self, source: ListSource, fail: bool = False) -> None:
        super().__init__()
        self.told: list[dict[tuple[str, str, str], SourcePosition]] = []
        self.listen_source = source
        self.listen_fails = fail

    async def committed(self, positions: Mapping[tuple[str, str, str], SourcePosition]) -> None:
        assert dict(positions) in self.listen_source.commits  # after the source committed
        self.told.append(dict(positions))
        if self.listen_fails:
            raise OSError("store refused")


async def test_sinks_that_listen_hear_each_commit_after_it_and_their_failure_stops_nothing() -> (
    None
):
    source = ListSource([event_bytes(i) for i in range(60)], partitions=2)
    failing, listening = ListeningSink(source, fail=True), ListeningSink(source)
    summary = await Pipeline(
        source, KeywordScorer(), [failing, listening, MemorySink()], CountingMonitor(),
        options=opts(),
    ).run()  # fmt: skip
    assert summary.scored == 60
    assert source.commits and listening.told == failing.told == source.commits
    assert source.commits[-1] == {
        ("test", "reviews", p): SourcePosition("test", "reviews", p, 58 + int(p)) for p in "01"
    }
