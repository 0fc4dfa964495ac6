"""Kafka as a source for the core, through a faust stream with manual acknowledgements.

faust commits an offset once every event up to it has been acknowledged; this adapter
acknowledges an event only when the core commits its position, i.e. after every sink holds the
batch. A crash or a rebalance therefore replays at most the batches still in flight.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from stream.events import SourcePosition
from stream.pipeline import RawRecord

__all__ = ["FaustSource"]


class FaustSource:
    """Adapts a faust agent's stream (``value_type=bytes``) to :class:`~stream.pipeline.Source`."""

    def __init__(self, stream: Any, *, clock: Callable[[], float] = time.time) -> None:
        self._stream = stream
        self._clock = clock
        self._pending: dict[tuple[str, str, str], deque[tuple[int, Any]]] = {}

    async def records(self) -> AsyncIterator[RawRecord]:
        async for event in self._stream.noack().events():
            msg = event.message
            pos = SourcePosition("kafka", msg.topic, str(msg.partition), msg.offset)
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

    @property
    def unacknowledged(self) -> int:
        return sum(len(q) for q in self._pending.values())
