"""Kafka as a source for the core: a consumer-group member that fetches in batches.

One :class:`KafkaBatchSource` serves one *generation*: the partitions the group assigned to
this worker, from the moment they were assigned (or the pipeline restarted) until they are
revoked (or the pipeline fails). A generation starts by reading each partition's committed
offset from the broker and seeking there explicitly (:meth:`KafkaBatchSource.start`), so
the core never assumes where the consumer resumed: what the lake holds beyond that offset is
an uncommitted leftover, and ``on_rewind`` lets the lake drop it before the records come
again. Commits are explicit and synchronous, per batch, and only ever for positions the
sinks hold (the core decides which).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError
from prometheus_client import Gauge

from stream.errors import MembershipLapsed
from stream.events import SourcePosition
from stream.pipeline import DEFAULT_BATCH_EVENTS, RawRecord

__all__ = ["ConsumerLag", "KafkaBatchSource", "committed_offsets", "log_ranges"]

log = logging.getLogger(__name__)

#: Told the positions a generation restarts its partitions at, all at once (the lake lists
#: itself once for them: :meth:`sinks.lake.LakeSink.rewind_many`).
Rewind = Callable[[Sequence[SourcePosition]], Awaitable[object]]


async def committed_offsets(consumer: Any, partitions: Sequence[Any]) -> dict[Any, int]:
    """Each partition's committed offset for the consumer's group, or the log's first
    offset where the group never committed (what ``auto_offset_reset=earliest`` reads)."""
    out: dict[Any, int] = {}
    missing = []
    for tp in partitions:
        committed = await consumer.committed(tp)
        if committed is None:
            missing.append(tp)
        else:
            out[tp] = int(committed)
    if missing:
        first = await consumer.beginning_offsets(missing)
        out.update({tp: int(first[tp]) for tp in missing})
    return out


async def log_ranges(client: Any, topic: str) -> dict[str, tuple[int, int]]:
    """Each partition of ``topic`` with the offsets its log holds now, ``[first, end)``,
    named as the events' positions name it (``"kafka/<topic>/<partition>"``). ``client`` is a
    started ``AIOKafkaConsumer`` (no group needed); an unknown topic gives an empty dict."""
    # The consumer's public calls give partitions only for topics it reads (topics() lists
    # names); the cluster metadata that topics() fetches has them for every topic.
    cluster = await client._client.fetch_all_metadata()
    numbers = sorted(cluster.partitions_for_topic(topic) or ())
    if not numbers:
        return {}
    held = [TopicPartition(topic, n) for n in numbers]
    first = await client.beginning_offsets(held)
    end = await client.end_offsets(held)
    return {
        "/".join(SourcePosition("kafka", topic, str(tp.partition), 0).key): (
            int(first[tp]),
            int(end[tp]),
        )
        for tp in held
    }


class KafkaBatchSource:
    """The records of the partitions assigned to this worker, a fetch at a time.

    ``consumer`` is a started ``AIOKafkaConsumer`` subscribed to ``topic`` with auto-commit
    off. :meth:`batches` ends when :meth:`stop` is called (a rebalance or shutdown drains the
    generation); :meth:`commit` commits positions the sinks hold, at once.
    """

    def __init__(
        self,
        consumer: Any,
        topic: str,
        *,
        max_records: int = DEFAULT_BATCH_EVENTS,
        poll_timeout_s: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._consumer = consumer
        self._topic = topic
        self._max_records = max_records
        self._poll_ms = max(1, int(poll_timeout_s * 1000))
        self._clock = clock
        self._stopping = False
        self.started_at: dict[tuple[str, str, str], int] = {}

    async def start(self, on_rewind: Rewind | None = None) -> dict[tuple[str, str, str], int]:
        """Seek every assigned partition to its committed offset and report them all to
        ``on_rewind`` in one call; returns (source, topic, partition) -> the offset the generation
        starts at. Raises :class:`~stream.errors.MembershipLapsed` when the broker no longer
        takes this member's commits (the group has moved on)."""
        assigned = sorted(
            (tp for tp in self._consumer.assignment() if tp.topic == self._topic),
            key=lambda tp: tp.partition,
        )
        offsets = await committed_offsets(self._consumer, assigned)
        if assigned:
            # Commit the offsets just read, unchanged: the broker accepts it only from a member
            # of the group's current generation, so a worker that was evicted without hearing
            # of it (frozen past its session) learns it here, before the rewind below deletes
            # files of the partitions' new owner.
            try:
                await self._consumer.commit({tp: offsets[tp] for tp in assigned})
            except CommitFailedError as err:
                raise MembershipLapsed(
                    f"the group rebalanced since this worker was given {len(assigned)} "
                    f"partition(s): {err}"
                ) from err
        started: dict[tuple[str, str, str], int] = {}
        positions: list[SourcePosition] = []
        for tp in assigned:
            self._consumer.seek(tp, offsets[tp])
            position = SourcePosition("kafka", tp.topic, str(tp.partition), offsets[tp])
            started[position.key] = position.offset
            positions.append(position)
        if on_rewind is not None and positions:
            await on_rewind(positions)
        self.started_at = started
        return started

    def stop(self) -> None:
        """End :meth:`batches` after the fetch in progress."""
        self._stopping = True

    async def batches(self) -> AsyncIterator[Sequence[RawRecord]]:
        """Chunks of at most ``max_records``, taken evenly from every assigned partition that
        has records buffered: a backlog is read at the same pace on every partition, so event
        time moves forward together across them (the monitors' watermark is their minimum)."""
        while not self._stopping:
            held = sorted(
                (tp for tp in self._consumer.assignment() if tp.topic == self._topic),
                key=lambda tp: tp.partition,
            )
            share = max(1, self._max_records // max(1, len(held)))
            fetched: dict[Any, list[Any]] = {}
            for tp in held:
                got = await self._consumer.getmany(tp, timeout_ms=0, max_records=share)
                fetched.update(got)
            if not any(fetched.values()):
                fetched = await self._consumer.getmany(timeout_ms=self._poll_ms, max_records=share)
            if not any(fetched.values()) or self._stopping:
                continue
            received = datetime.fromtimestamp(self._clock(), UTC)
            chunk: list[RawRecord] = []
            for tp, messages in fetched.items():
                partition = str(tp.partition)
                chunk.extend(
                    RawRecord(
                        value=m.value if m.value is not None else b"",
                        position=SourcePosition("kafka", tp.topic, partition, m.offset),
                        received_at=received,
                        key=m.key,
                    )
                    for m in messages
                )
            yield chunk

    async def commit(self, positions: Mapping[tuple[str, str, str], SourcePosition]) -> None:
        """Commit each partition past ``position`` (the next offset to read)."""
        offsets = {
            TopicPartition(pos.stream, int(pos.partition)): pos.offset + 1
            for pos in positions.values()
        }
        if offsets:
            await self._consumer.commit(offsets)


class ConsumerLag:
    """Sets ``gauge{partition}`` to the log end offset minus the group's *committed* offset
    for each partition of ``topic`` that the consumer holds, and drops the partitions it no
    longer holds. Committed, not fetched: a worker that reads but cannot store (and so cannot
    commit) shows its lag growing."""

    def __init__(self, topic: str, gauge: Gauge, timeout_s: float = 5.0) -> None:
        self._topic = topic
        self._gauge = gauge
        self._timeout = timeout_s
        self._reported: set[str] = set()

    async def update(self, consumer: Any) -> None:
        seen: set[str] = set()
        try:
            held = sorted(
                (tp for tp in consumer.assignment() if tp.topic == self._topic),
                key=lambda tp: tp.partition,
            )
            if held:
                async with asyncio.timeout(self._timeout):
                    ends = await consumer.end_offsets(held)
                    committed = await committed_offsets(consumer, held)
                for tp in held:
                    lag = max(0, int(ends[tp]) - committed[tp])
                    self._gauge.labels(str(tp.partition)).set(lag)
                    seen.add(str(tp.partition))
        except Exception:
            log.debug("consumer lag not available now", exc_info=True)
            return
        for gone in self._reported - seen:
            self._gauge.remove(gone)
        self._reported = seen
