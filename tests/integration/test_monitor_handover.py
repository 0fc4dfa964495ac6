"""The Kafka monitor agent when the feed moves between workers and back, and when the saved
state cannot be continued from, on a real broker.

Two workers' monitor agents (``stream.kafka_app._Monitoring``, as ``create_app`` builds it) are
driven through the order of events a consumer group produces: m1 holds the feed, the feed
moves to m2, then back to m1. Each handles real feed messages (Arrow IPC, read back from the
feed topic with their offsets) and saves its state to the real state topic. A group's
timing decides when the feed moves in a live worker (a member frozen past its session comes
back and takes the feed back at once, after catching up as a zombie), so the moves are made
here, in order. A member frozen past its session is m1 handling a group after the feed
moved, without being told.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from monitors.simulate import StreamSpec, batches, synthetic_stream
from stream.app import Runtime, build_monitor
from stream.errors import MonitorStateFenced
from stream.events import scored_table
from stream.kafka_app import (
    STATE_KEY,
    MonitorStateStore,
    _Monitoring,
    feed_messages,
    read_feed_message,
)
from stream.kafka_topics import ensure_topics
from stream.retry import RetryStopped
from stream.settings import KafkaSettings, Settings
from tests.servers.kafka import KafkaBroker

pytestmark = [pytest.mark.integration]

#: what the monitors count: every event, in a window or too late for one
SEEN = {"sentiment_monitor_events_total", "sentiment_monitor_late_events_total"}


@dataclass(frozen=True)
class FeedEvent:
    """What the agent reads of a faust event: the record and its value."""

    message: ConsumerRecord[bytes, bytes]

    @property
    def value(self) -> bytes:
        return self.message.value or b""


@pytest.fixture
def settings(kafka_broker: KafkaBroker, unique_group: str, tmp_path: Path) -> Settings:
    def topic(name: str) -> str:
        return f"{unique_group}.{name}"

    return Settings(
        lake_path=str(tmp_path / "lake"),
        metrics_port=0,
        kafka=KafkaSettings(
            bootstrap_servers=kafka_broker.bootstrap,
            group_id=unique_group,
            reviews_topic=topic("reviews"),
            enriched_topic=topic("enriched"),
            dlq_topic=topic("dlq"),
            alerts_topic=topic("alerts"),
            monitor_feed_topic=topic("feed"),
            monitor_state_topic=topic("state"),
        ),
    )


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await p.start()
    yield p
    await p.stop()


async def feed(settings: Settings, producer: AIOKafkaProducer, events: int) -> list[FeedEvent]:
    """``events`` synthetic scored reviews on the feed topic, in batches of 200, as the
    scoring side sends them; returns the feed's records."""
    topic = settings.kafka.monitor_feed_topic
    reviews = synthetic_stream(StreamSpec(events=events, seed=31))
    for batch in batches(reviews, 200):
        for value in feed_messages(scored_table(batch)):
            await producer.send_and_wait(topic, value, partition=0)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        records: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(60):
            while len(records) < end:
                got = await consumer.getmany(tp, timeout_ms=1000)
                records += got.get(tp, [])
    finally:
        await consumer.stop()
    return [FeedEvent(r) for r in records]


def agent(settings: Settings, runtime: Runtime) -> _Monitoring:
    """A worker's monitor agent, as ``create_app`` builds it."""
    return _Monitoring(settings, runtime, lambda state: build_monitor(settings, state))


def rows(part: Sequence[FeedEvent]) -> int:
    return sum(read_feed_message(e.value).num_rows for e in part)


def counted(suite: Any) -> float:
    """Events a monitor suite has counted."""
    return float(sum(r.value for r in suite.readings() if r.name in SEEN))


def seen(agent: _Monitoring) -> float:
    """Events the agent's monitor suite has counted."""
    return counted(agent.suite)


def discarded(runtime: Runtime) -> float | None:
    """The worker's ``sentiment_monitor_state_discarded_total``."""
    return runtime.metrics.registry.get_sample_value("sentiment_monitor_state_discarded_total")


def owned(runtime: Runtime) -> float | None:
    """The worker's ``sentiment_monitor_feed_owned``."""
    return runtime.metrics.registry.get_sample_value("sentiment_monitor_feed_owned")


async def test_an_owner_given_the_feed_back_continues_from_the_saved_state(
    settings: Settings, producer: AIOKafkaProducer
) -> None:
    await ensure_topics(settings.kafka)
    events = await feed(settings, producer, 3_000)
    a, b, c = events[:5], events[5:10], events[10:]
    runtimes = [Runtime(settings), Runtime(settings)]
    m1, m2 = (agent(settings, rt) for rt in runtimes)
    try:
        await m1.feed_assigned()
        await m1.handle(a, producer)
        assert seen(m1) == rows(a)
        # The feed moves to m2, which goes on from the state m1 saved.
        await m1.feed_revoked()
        await m2.feed_assigned()
        assert [owned(rt) for rt in runtimes] == [0, 1]
        await m2.handle(b, producer)
        assert seen(m2) == rows(a) + rows(b)
        # Only the owner exports its suite's readings: m1's would stay at what it had.
        assert m1.exported_suite() is None
        assert m2.exported_suite() is m2.suite
        # And back to m1, which still holds its suite of a alone.
        await m2.feed_revoked()
        await m1.feed_assigned()
        assert [owned(rt) for rt in runtimes] == [1, 0]
        await m1.handle(c, producer)
        # From the state m2 saved: with the suite it held, m1 would count a and c only.
        assert seen(m1) == rows(a) + rows(b) + rows(c)
        assert (m1.exported_suite(), m2.exported_suite()) == (m1.suite, None)
    finally:
        for m, rt in zip((m1, m2), runtimes, strict=True):
            await m.close()
            await rt.close()


async def exported_seen(agent: _Monitoring, within_s: float = 30) -> float:
    """Events counted by the suite the agent exports, once it exports one."""
    deadline = time.monotonic() + within_s
    suite = agent.exported_suite()
    while suite is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        suite = agent.exported_suite()
    assert suite is not None, f"the agent exported no suite in {within_s:.0f} s"
    return counted(suite)


async def test_an_owner_given_an_idle_feed_exports_the_saved_state_at_once(
    settings: Settings, producer: AIOKafkaProducer
) -> None:
    """The feed moves while it has nothing more to read (everything was handled before the
    rebalance): the new owner exports the monitors' readings as last saved without waiting
    for a feed message, never none and never the stale suite of an earlier hold."""
    await ensure_topics(settings.kafka)
    events = await feed(settings, producer, 2_000)
    a, b = events[:5], events[5:]
    runtimes = [Runtime(settings), Runtime(settings)]
    m1, m2 = (agent(settings, rt) for rt in runtimes)
    try:
        await m1.feed_assigned()
        await m1.handle(a, producer)
        await m1.feed_revoked()
        # m2 has never held the feed, and no message follows: it exports m1's saved counts
        await m2.feed_assigned()
        assert await exported_seen(m2) == rows(a)
        await m2.handle(b, producer)
        await m2.feed_revoked()
        # m1 holds a suite of ``a`` alone from its first hold: it exports what m2 saved
        await m1.feed_assigned()
        assert await exported_seen(m1) == rows(a) + rows(b)
        assert m2.exported_suite() is None
    finally:
        for m, rt in zip((m1, m2), runtimes, strict=True):
            await m.close()
            await rt.close()


@pytest.mark.parametrize(
    ("unusable", "reason"),
    [
        (b"\x00\x9c{not json", "offset 0: not JSON"),
        (b"[]", "offset 0: a JSON list, not an object"),
        (b'{"version": 99}', "unsupported monitor state version 99"),
        (b'{"version": 1, "groups": ["Dresses"]}', "written with other categories"),
    ],
    ids=["not-json", "not-an-object", "other-version", "other-categories"],
)
async def test_an_unusable_saved_state_starts_the_monitors_afresh(
    settings: Settings,
    producer: AIOKafkaProducer,
    unusable: bytes,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not retried for ever (the feed would stall) nor raised (the agent would crash on every
    group): the suite starts without it, says so, and its next save replaces it."""
    await ensure_topics(settings.kafka)
    events = await feed(settings, producer, 1_000)
    state_topic = settings.kafka.monitor_state_topic
    await producer.send_and_wait(state_topic, unusable, key=STATE_KEY, partition=0)
    runtimes = [Runtime(settings), Runtime(settings)]
    m1, m2 = (agent(settings, rt) for rt in runtimes)
    try:
        await m1.feed_assigned()
        async with asyncio.timeout(60):
            await m1.handle(events, producer)
        assert seen(m1) == rows(events)
        assert discarded(runtimes[0]) == 1
        logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(logged) == 1, logged
        assert "the saved monitor state cannot be continued from" in logged[0]
        assert reason in logged[0]
        # The state m1 saved replaced the unusable one: the next owner continues from it.
        await m1.feed_revoked()
        await m2.feed_assigned()
        await m2.handle([], producer)
        assert seen(m2) == rows(events)
        assert discarded(runtimes[1]) == 0
    finally:
        for m, rt in zip((m1, m2), runtimes, strict=True):
            await m.close()
            await rt.close()


async def test_an_evicted_owner_cannot_overwrite_the_new_owners_state(
    settings: Settings, producer: AIOKafkaProducer
) -> None:
    """m1 is frozen past its session: the group gives the feed to m2 without m1 hearing of
    it, and m1 then handles the messages it had taken (as a zombie does before it learns it
    was evicted). Its save is refused (the new owner's claim fenced its producer), so the
    state topic keeps m2's, and a third owner continues from a and b, not from m1's a and c.
    Before the fence, m1's save overwrote m2's: the third owner counted a and c."""
    await ensure_topics(settings.kafka)
    events = await feed(settings, producer, 3_000)
    a, b, c = events[:4], events[4:6], events[6:]  # 800, 400 and 1,800 events: a+b != a+c
    runtimes = [Runtime(settings), Runtime(settings), Runtime(settings)]
    m1, m2, m3 = (agent(settings, rt) for rt in runtimes)
    try:
        await m1.feed_assigned()
        await m1.handle(a, producer)
        await m2.feed_assigned()  # m1 is not told: it is frozen
        await m2.handle(b, producer)
        assert seen(m2) == rows(a) + rows(b)
        assert rows(b) != rows(c)
        with pytest.raises(MonitorStateFenced, match="another worker"):
            await m1.handle(c, producer)
        assert seen(m1) == rows(a) + rows(c)  # it observed c, and saved none of it
        with pytest.raises(MonitorStateFenced):  # later groups are refused unread
            await m1.handle(c[:1], producer)
        assert seen(m1) == rows(a) + rows(c)
        errors = runtimes[0].metrics.registry.get_sample_value(
            "sentiment_sink_errors_total", {"sink": "monitor_state"}
        )
        assert not errors  # refused once, not retried
        # the state topic holds m2's state: the next owner continues from a and b
        state = await MonitorStateStore(settings).load()
        assert state is not None
        await m3.feed_assigned()
        await m3.handle([], producer)
        assert seen(m3) == rows(a) + rows(b)
        # m1 given the feed back (it rejoined) claims it anew and goes on from m3's state
        await m1.feed_assigned()
        await m1.handle(c, producer)
        assert seen(m1) == rows(a) + rows(b) + rows(c)
    finally:
        for m, rt in zip((m1, m2, m3), runtimes, strict=True):
            await m.close()
            await rt.close()


async def test_a_worker_stopping_mid_group_leaves_it_unsaved_not_fenced(
    settings: Settings, producer: AIOKafkaProducer
) -> None:
    """A group still in hand when the stopping worker closes its state writer gives up
    (``RetryStopped``: the agent leaves it unacknowledged for the next owner), and is not
    taken for a fence (which the agent acknowledges)."""
    await ensure_topics(settings.kafka)
    events = await feed(settings, producer, 1_000)
    runtime = Runtime(settings)
    m1 = agent(settings, runtime)
    try:
        await m1.feed_assigned()
        await m1.handle(events[:2], producer)
        await m1.wind_down()
        await m1.close()
        with pytest.raises(RetryStopped):
            await m1.handle(events[2:], producer)
        # the next owner continues from the last save: the unsaved group is its to read
        m2 = agent(settings, runtime)
        await m2.feed_assigned()
        await m2.handle([], producer)
        assert seen(m2) == rows(events[:2])
        await m2.close()
    finally:
        await m1.close()
        await runtime.close()


async def test_a_state_past_a_records_limit_goes_through_the_topic(settings: Settings) -> None:
    """A state's JSON grows with the categories and the evidence texts, and a state record
    must fit Kafka's 1 MB limit (the producer's and the topic's). This one is 9.7 MB as JSON:
    saved compressed (0.5 MB) it goes through the real topic and reads back whole; saved as
    JSON (the old code) the producer refused it on every try, and the agent retried for ever."""
    await ensure_topics(settings.kafka)
    state = {
        "version": 1,
        "panes": {str(p): [[p, g, p * g % 7] for g in range(19)] for p in range(40_000)},
    }
    store = MonitorStateStore(settings)
    await store.claim()
    try:
        await store.save(state)
    finally:
        await store.close()
    # the next owner claims the topic first, as the agent does: claiming waits for the last
    # save's commit to complete, without which a read may not see it yet
    next_owner = MonitorStateStore(settings)
    await next_owner.claim()
    try:
        assert await next_owner.load() == state
    finally:
        await next_owner.close()
