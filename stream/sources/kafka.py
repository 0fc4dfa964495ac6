"""Kafka as a source for the core, through a faust stream with manual acknowledgements.

faust commits an offset once every event up to it has been acknowledged; this adapter
acknowledges an event only when the core commits its position, i.e. after every sink holds the
batch, and then asks the consumer to commit at once. A crash or a rebalance therefore replays
at most the batches still in flight, starting exactly at a batch boundary; ``on_rewind`` lets
the lake drop what those batches had already written, so the replay leaves no duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Gauge

from stream.events import SourcePosition
from stream.pipeline import RawRecord

__all__ = ["ConsumerLag", "FaustSource"]

log = logging.getLogger(__name__)


class FaustSource:
    """Adapts a faust agent's stream (``value_type=bytes``) to :class:`~stream.pipeline.Source`."""

    def __init__(
        self,
        stream: Any,
        *,
        on_rewind: Callable[[SourcePosition], Awaitable[object]] | None = None,
        commit_now: Callable[[], Awaitable[object]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stream = stream
        self._on_rewind = on_rewind
        self._commit_now = commit_now
        self._clock = clock
        self._pending: dict[tuple[str, str, str], deque[tuple[int, Any]]] = {}
        self._next: dict[tuple[str, str, str], int] = {}
        self.rewinds = 0

    async def records(self) -> AsyncIterator[RawRecord]:
        async for event in self._stream.noack().events():
            msg = event.message
            pos = SourcePosition("kafka", msg.topic, str(msg.partition), msg.offset)
            if self._next.get(pos.key) != msg.offset:
                # First record of a partition since start or (re)assignment: the consumer
                # resumed at the committed offset. Anything stored from there on is an
                # uncommitted leftover that is about to be written again.
                self.rewinds += 1
                # Events of the old assignment will not be acknowledged: they come again.
                self._pending[pos.key] = deque()
                if self._on_rewind is not None:
                    await self._on_rewind(pos)
            self._next[pos.key] = msg.offset + 1
            self._pending.setdefault(pos.key, deque()).append((msg.offset, event))
            value = event.value
            if not isinstance(value, bytes):
                value = bytes(value) if value is not None else b""
            yield RawRecord(
                value=value,
                position=pos,
                received_at=datetime.fromtimestamp(self._clock(), UTC),
                key=msg.key if isinstance(msg.key, bytes) else None,
            )

    async def commit(self, positions: Mapping[tuple[str, str, str], SourcePosition]) -> None:
        for key, pos in positions.items():
            pending = self._pending.get(key)
            while pending and pending[0][0] <= pos.offset:
                _offset, event = pending.popleft()
                event.ack()
        if self._commit_now is not None:
            # Commit now rather than on faust's timer, so the committed offset is always a
            # batch boundary the sinks hold (what makes rewinding to it exact).
            await self._commit_now()


class ConsumerLag:
    """Sets ``gauge{partition}`` to highwater minus position for each partition of ``topic``
    that a faust consumer holds, and drops the partitions it no longer holds."""

    def __init__(self, topic: str, gauge: Gauge, timeout_s: float = 5.0) -> None:
        self._topic = topic
        self._gauge = gauge
        self._timeout = timeout_s
        self._reported: set[str] = set()

    async def update(self, consumer: Any) -> None:
        seen: set[str] = set()
        try:
            for tp in sorted(consumer.assignment()):
                if tp.topic != self._topic:
                    continue
                high = consumer.highwater(tp)
                position = await asyncio.wait_for(consumer.position(tp), self._timeout)
                if high is None or position is None:
                    continue  # nothing fetched from this partition yet
                self._gauge.labels(str(tp.partition)).set(max(0, high - position))
                seen.add(str(tp.partition))
        except Exception:  # a rebalance or a consumer not started yet: try again next time
            log.debug("consumer lag not available now", exc_info=True)
            return
        for gone in self._reported - seen:
            self._gauge.remove(gone)
        self._reported = seen
