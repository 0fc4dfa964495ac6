"""The scoring generation's lease: a stalled event loop gives up what it holds uncommitted,
in the lake sink and at the start of the next generation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from sinks.lake import MARKER_SUFFIX, LakeSink, LocalLakeWriter
from stream.errors import MembershipLapsed
from stream.events import SourcePosition
from stream.lease import StallLease
from stream.sources.kafka import KafkaBatchSource
from tests.unit.test_lake_buffer import Clock, batch, files, review


def test_a_gap_longer_than_the_limit_lapses_the_lease_for_good() -> None:
    clock = Clock()
    lease = StallLease(5.0, clock=clock)
    for now in (1.0, 2.0, 7.0, 12.0):  # gaps of 1, 1, 5 and 5 s: within the limit
        clock.now = now
        lease.tick()
    lease.check()
    assert [lease.lapsed_after] == [None]
    clock.now = 17.5  # 5.5 s without a tick: the check itself sees the gap
    with pytest.raises(MembershipLapsed, match=r"stopped for 5\.5 s \(more than its lease of 5"):
        lease.check()
    clock.now = 17.6
    lease.tick()
    with pytest.raises(MembershipLapsed):  # still lapsed after the loop runs on
        lease.check()
    assert lease.lapsed_after == 5.5
    with pytest.raises(ValueError, match="limit_s must be positive"):
        StallLease(0)


async def test_the_ticker_keeps_a_running_loop_within_its_lease() -> None:
    lease = StallLease(0.2)
    ticking = asyncio.create_task(lease.run(0.01))
    await asyncio.sleep(0.5)
    lease.check()
    ticking.cancel()


async def test_a_lapsed_lease_stores_no_file_and_deletes_no_leftover(tmp_path: Path) -> None:
    clock = Clock()
    lease = StallLease(5.0, clock=clock)
    sink = LakeSink(LocalLakeWriter(tmp_path), guard=lease.check)
    await sink.write(batch(0, [review(0, "Dresses"), review(1, "Knits")]))
    await sink.flush()
    stored = files(tmp_path)
    assert len(stored) == 2 and sink.durable_seq() == 0
    await sink.write(batch(1, [review(2, "Dresses")]))
    clock.now = 6.0  # the process stopped between the batch and its file
    with pytest.raises(MembershipLapsed):
        await sink.flush()
    assert files(tmp_path) == stored and sink.durable_seq() == 0
    # a leftover beyond offset 1 (offset 2, stored by another run where this one holds no
    # row of the partition) stays too
    other = LakeSink(LocalLakeWriter(tmp_path))
    await other.write(batch(0, [review(2, "Fine gauge")]))
    await other.flush()
    with pytest.raises(MembershipLapsed):
        await sink.rewind(SourcePosition("kafka", "t", "0", 1))
    assert len(files(tmp_path)) == 3


async def test_a_lease_that_lapses_while_the_marker_goes_stores_no_file(tmp_path: Path) -> None:
    """With pending markers the lease is checked before the marker and again before the file:
    a process that stopped in between leaves a marker (a leftover to the next rewind) and no
    file in a partition that may have a new owner by now."""
    clock = Clock()
    lease = StallLease(5.0, clock=clock)

    class StallsAfterTheMarker(LocalLakeWriter):
        async def put(self, path: str, data: bytes) -> None:
            await super().put(path, data)
            if path.endswith(MARKER_SUFFIX):
                clock.now += 6.0

    sink = LakeSink(StallsAfterTheMarker(tmp_path), guard=lease.check, markers="trust")
    await sink.write(batch(0, [review(0, "Dresses")]))
    with pytest.raises(MembershipLapsed):
        await sink.flush()
    assert files(tmp_path) == [] and len(list(tmp_path.rglob(f"*{MARKER_SUFFIX}"))) == 1
    assert sink.durable_seq() == -1


class _EvictedConsumer:
    """A consumer whose generation the broker no longer takes commits from."""

    def __init__(self) -> None:
        self.sought: list[tuple[Any, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("t", 0), TopicPartition("t", 1)}

    async def committed(self, tp: TopicPartition) -> int | None:
        return 10 + int(tp.partition)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert offsets == {TopicPartition("t", 0): 10, TopicPartition("t", 1): 11}
        raise CommitFailedError("the group has already rebalanced")

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought.append((tp, offset))


async def test_a_generation_does_not_start_once_the_group_moved_on() -> None:
    """The committed offsets are committed again before the rewind: an evicted member learns
    it there and deletes none of the new owner's files."""
    rewound: list[SourcePosition] = []

    async def rewind(positions: Sequence[SourcePosition]) -> None:
        rewound.extend(positions)

    consumer = _EvictedConsumer()
    source = KafkaBatchSource(consumer, "t")
    with pytest.raises(MembershipLapsed, match=r"rebalanced since this worker was given 2"):
        await source.start(on_rewind=rewind)
    assert rewound == [] and consumer.sought == []
