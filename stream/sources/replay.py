"""The embedded default source: replays records (synthetic or from a CSV) in order.

Positions are ``("replay", <name>, "0", <index>)``. Commits are remembered so a caller (and the
tests) can see how far the pipeline got; replay has nothing to resume from across processes:
every run starts again at index 0. It says so through ``on_rewind`` (the lake's
:meth:`~sinks.lake.LakeSink.rewind`) before its first record, so a rerun into the same lake
replaces what an earlier run of the same stream stored (the earlier run's files are all
"uncommitted leftovers" of a rewind to 0) instead of adding to it: rows are cut into files by
count and age, so two runs cut differently and their files would not overwrite each other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime

from stream.events import SourcePosition
from stream.pipeline import RawRecord

__all__ = ["ReplaySource"]


class ReplaySource:
    """Yields each (key, value) record once, optionally paced to ``rate`` records/s;
    ``on_rewind`` hears of the start at index 0 first."""

    def __init__(
        self,
        records: Iterable[tuple[bytes, bytes]],
        *,
        name: str = "replay",
        rate: float | None = None,
        chunk: int = 500,
        clock: Callable[[], float] = time.time,
        on_rewind: Callable[[SourcePosition], Awaitable[object]] | None = None,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (records per second) or None for no pacing")
        self._records = records
        self._name = name
        self._rate = rate
        self._chunk = max(1, chunk)
        self._clock = clock
        self._on_rewind = on_rewind
        self.committed: SourcePosition | None = None

    async def records(self) -> AsyncIterator[RawRecord]:
        if self._on_rewind is not None:
            await self._on_rewind(SourcePosition("replay", self._name, "0", 0))
        started = time.monotonic()
        for i, (key, value) in enumerate(self._records):
            if self._rate is not None:
                ahead = i / self._rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            elif i % 1000 == 0:
                await asyncio.sleep(0)  # let the other stages run between chunks
            yield RawRecord(
                value=value,
                position=SourcePosition("replay", self._name, "0", i),
                received_at=datetime.fromtimestamp(self._clock(), UTC),
                key=key,
            )

    async def batches(self) -> AsyncIterator[Sequence[RawRecord]]:
        """The records in slices of ``chunk`` (paced ones one at a time)."""
        if self._rate is not None:
            async for record in self.records():
                yield (record,)
            return
        if self._on_rewind is not None:
            await self._on_rewind(SourcePosition("replay", self._name, "0", 0))
        chunk: list[RawRecord] = []
        for i, (key, value) in enumerate(self._records):
            if not chunk:
                received = datetime.fromtimestamp(self._clock(), UTC)
            chunk.append(
                RawRecord(value, SourcePosition("replay", self._name, "0", i), received, key)
            )
            if len(chunk) >= self._chunk:
                yield chunk
                chunk = []
                await asyncio.sleep(0)  # let the other stages run between slices
        if chunk:
            yield chunk

    async def commit(self, positions: Mapping[tuple[str, str, str], SourcePosition]) -> None:
        for pos in positions.values():
            if self.committed is None or pos.offset > self.committed.offset:
                self.committed = pos
