"""The Kinesis source's own logic, against a scripted client: shard order on resharding,
throttling and expired iterators, checkpoints and rewinds. (The real server is exercised in
tests/integration/test_kinesis.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import pytest
from botocore.exceptions import ClientError

from stream.checkpoints import ShardCheckpoint
from stream.events import SourcePosition
from stream.pipeline import RawRecord
from stream.retry import Backoff, retriable, throttled
from stream.sources.kinesis import (
    KinesisSource,
    ShardInfo,
    readable_shards,
    shards_from_listing,
)
from tests.fakes import Sleeps

STREAM = "reviews"


def client_error(code: str, status: int = 400) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetRecords")


class ScriptedKinesis:
    """Shards with fixed records; iterators are ``shard:index``; closed shards end."""

    def __init__(self, shards: dict[str, tuple[tuple[str, ...], bool, list[int]]]) -> None:
        self.shards = shards  # id -> (parents, closed, sequence numbers)
        self.errors: dict[str, list[ClientError]] = {}  # shard -> errors for next GetRecords
        self.iterator_calls: list[dict[str, Any]] = []

    async def list_shards(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs == {"StreamName": STREAM}
        out = []
        for sid, (parents, closed, seqs) in self.shards.items():
            rng: dict[str, str] = {"StartingSequenceNumber": "1"}
            if closed:
                rng["EndingSequenceNumber"] = str(max(seqs, default=1))
            doc: dict[str, Any] = {"ShardId": sid, "SequenceNumberRange": rng}
            if parents:
                doc["ParentShardId"] = parents[0]
            if len(parents) > 1:
                doc["AdjacentParentShardId"] = parents[1]
            out.append(doc)
        return {"Shards": out}

    async def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        self.iterator_calls.append(kwargs)
        sid = kwargs["ShardId"]
        seqs = self.shards[sid][2]
        kind = kwargs["ShardIteratorType"]
        if kind == "TRIM_HORIZON":
            index = 0
        elif kind == "LATEST":
            index = len(seqs)
        else:
            after = int(kwargs["StartingSequenceNumber"])
            index = sum(1 for s in seqs if s <= after)
        return {"ShardIterator": f"{sid}:{index}"}

    async def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        sid, _, index_text = ShardIterator.partition(":")
        pending = self.errors.get(sid)
        if pending:
            raise pending.pop(0)
        index = int(index_text)
        _parents, closed, seqs = self.shards[sid]
        page = seqs[index : index + Limit]
        records = [
            {"SequenceNumber": str(s), "Data": f"{sid}/{s}".encode(), "PartitionKey": "p1"}
            for s in page
        ]
        end = index + len(page)
        nxt = None if closed and end >= len(seqs) and not page else f"{sid}:{end}"
        return {"Records": records, "NextShardIterator": nxt, "MillisBehindLatest": 0}


class MemoryStore:
    def __init__(self, initial: Mapping[str, ShardCheckpoint] | None = None) -> None:
        self.saved: list[dict[str, ShardCheckpoint]] = []
        self.current = dict(initial or {})

    async def load(self) -> dict[str, ShardCheckpoint]:
        return dict(self.current)

    async def save(self, checkpoints: Mapping[str, ShardCheckpoint]) -> None:
        self.current = dict(checkpoints)
        self.saved.append(dict(checkpoints))

    async def close(self) -> None:
        pass


def source(
    client: ScriptedKinesis, store: MemoryStore, sleeps: Sleeps | None = None, **kw: Any
) -> KinesisSource:
    return KinesisSource(
        client,
        STREAM,
        store,
        sleep=sleeps or Sleeps(),
        backoff=Backoff(initial_s=0.01, max_s=0.05, jitter=0.0),
        **kw,
    )


async def take(records: AsyncGenerator[RawRecord, None], n: int) -> list[RawRecord]:
    return [await asyncio.wait_for(records.__anext__(), 10) for _ in range(n)]


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


def test_listing_and_readable_shards() -> None:
    shards = shards_from_listing(
        [
            {"ShardId": "a", "SequenceNumberRange": {"EndingSequenceNumber": "9"}},
            {"ShardId": "b", "ParentShardId": "a", "SequenceNumberRange": {}},
            {"ShardId": "m", "ParentShardId": "a", "AdjacentParentShardId": "gone"},
        ]
    )
    assert shards["a"] == ShardInfo("a", (), closed=True)
    assert shards["m"].parents == ("a", "gone")
    assert readable_shards(shards, finished=set(), started=set()) == ["a"]
    assert readable_shards(shards, finished={"a"}, started=set()) == ["b", "m"]
    assert readable_shards(shards, finished={"a"}, started={"b"}) == ["m"]


def test_error_classification() -> None:
    assert throttled(client_error("ProvisionedThroughputExceededException"))
    assert throttled(client_error("LimitExceededException"))
    assert retriable(client_error("InternalFailure", 500))
    assert retriable(ConnectionResetError())
    assert not retriable(client_error("AccessDeniedException"))
    assert not retriable(client_error("ResourceNotFoundException"))


async def test_throttled_reads_back_off_and_go_on() -> None:
    client = ScriptedKinesis({"s0": ((), True, [1, 2, 3]), "s1": ((), True, [5])})
    client.errors["s0"] = [
        client_error("ProvisionedThroughputExceededException"),
        client_error("ProvisionedThroughputExceededException"),
        client_error("LimitExceededException"),
    ]
    sleeps = Sleeps()
    src = source(client, MemoryStore(), sleeps)
    gen = src.records()
    got = await take(gen, 4)
    await gen.aclose()
    assert sorted((r.position.partition, r.position.offset) for r in got) == [
        ("s0", 1),
        ("s0", 2),
        ("s0", 3),
        ("s1", 5),
    ]
    assert src.throttled == 3
    assert [d for d in sleeps.delays if d < 0.1] == [0.01, 0.02, 0.04]


async def test_an_expired_iterator_is_renewed_after_the_last_record_read() -> None:
    client = ScriptedKinesis({"s0": ((), True, list(range(1, 7)))})
    src = source(client, MemoryStore(), records_per_call=2, queue_records=1)
    gen = src.records()
    first = await take(gen, 2)
    client.errors["s0"] = [client_error("ExpiredIteratorException")]
    rest = await take(gen, 4)
    await gen.aclose()
    assert [r.position.offset for r in first + rest] == [1, 2, 3, 4, 5, 6]
    renewed = client.iterator_calls[-1]
    assert renewed["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER"
    assert int(renewed["StartingSequenceNumber"]) in (2, 4)


async def test_children_wait_until_the_parent_is_read_and_checkpointed() -> None:
    client = ScriptedKinesis(
        {
            "parent": ((), True, [1, 2, 3]),
            "left": (("parent",), True, [10, 11]),
            "right": (("parent",), True, [20]),
        }
    )
    store = MemoryStore()
    src = source(client, store)
    gen = src.records()
    parent_records = await take(gen, 3)
    assert [r.position.partition for r in parent_records] == ["parent"] * 3
    await settle()
    # Read to its end, but not committed: the children are not even opened.
    assert {c["ShardId"] for c in client.iterator_calls} == {"parent"}
    await src.commit({r.position.key: r.position for r in parent_records[:2]})
    await settle()
    assert {c["ShardId"] for c in client.iterator_calls} == {"parent"}
    await src.commit({parent_records[2].position.key: parent_records[2].position})
    assert store.current["parent"] == ShardCheckpoint("3", ended=True)
    children = await take(gen, 3)
    await gen.aclose()
    assert sorted((r.position.partition, r.position.offset) for r in children) == [
        ("left", 10),
        ("left", 11),
        ("right", 20),
    ]
    assert all(c["ShardIteratorType"] == "TRIM_HORIZON" for c in client.iterator_calls)


async def test_a_finished_shard_leaves_nothing_of_its_reading_behind() -> None:
    """Forty reshards in a row (each shard the parent of the next), read and committed: only
    the open shard keeps a queue, a reader and its reading state, so a stream resharded for
    months is not looped over shard by shard (on the old code every map held all 41)."""
    chain: dict[str, tuple[tuple[str, ...], bool, list[int]]] = {
        f"s{i:02d}": ((f"s{i - 1:02d}",) if i else (), i < 40, [i + 1]) for i in range(41)
    }
    src = source(ScriptedKinesis(chain), MemoryStore())
    gen = src.records()
    for i in range(41):
        [record] = await take(gen, 1)
        assert (record.position.partition, record.position.offset) == (f"s{i:02d}", i + 1)
        await src.commit({record.position.key: record.position})
    await settle()
    kept = {
        "queues": set(src._queues),
        "ended": set(src._ended),
        "read_last": set(src._read_last),
        "seen": set(src._seen),
        "started": set(src._started),
    }
    await gen.aclose()
    assert kept == {
        "queues": {"s40"},
        "ended": set(),
        "read_last": {"s40"},
        "seen": {"s40"},
        "started": {"s40"},
    }
    assert src._finished == {f"s{i:02d}" for i in range(40)}  # what restarts rely on


async def test_a_restart_resumes_after_the_checkpoints_and_rewinds_the_lake() -> None:
    client = ScriptedKinesis(
        {
            "old": ((), True, [1]),
            "s0": (("old",), False, [100, 101, 102]),
            "s1": (("old",), False, [200]),
        }
    )
    store = MemoryStore(
        {
            "old": ShardCheckpoint("1", ended=True),
            "s0": ShardCheckpoint("100"),
            "s1": ShardCheckpoint("200"),
        }
    )
    rewound: list[SourcePosition] = []

    async def on_rewind(pos: SourcePosition) -> None:
        rewound.append(pos)

    src = source(client, store, on_rewind=on_rewind)
    gen = src.records()
    got = await take(gen, 2)
    await gen.aclose()
    assert [(r.position.partition, r.position.offset) for r in got] == [("s0", 101), ("s0", 102)]
    assert rewound == [SourcePosition("kinesis", STREAM, "s0", 101)]
    starts = {c["ShardId"]: c for c in client.iterator_calls}
    assert set(starts) == {"s0", "s1"}  # the ended shard is not read again
    assert starts["s0"]["StartingSequenceNumber"] == "100"
    assert starts["s0"]["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER"


async def test_commit_saves_only_this_streams_positions_and_only_forward() -> None:
    store = MemoryStore()
    src = source(ScriptedKinesis({}), store)
    big = 49680523724503931092476938889590982749907128334787018754
    await src.commit(
        {
            ("kinesis", STREAM, "s0"): SourcePosition("kinesis", STREAM, "s0", big),
            ("kinesis", "other", "s0"): SourcePosition("kinesis", "other", "s0", 1),
            ("replay", "x", "0"): SourcePosition("replay", "x", "0", 3),
        }
    )
    assert store.current == {"s0": ShardCheckpoint(str(big))}
    await src.commit({("kinesis", STREAM, "s0"): SourcePosition("kinesis", STREAM, "s0", 5)})
    assert store.current == {"s0": ShardCheckpoint(str(big))}
    assert len(store.saved) == 1


async def test_a_new_stream_read_from_latest_skips_closed_shards() -> None:
    client = ScriptedKinesis(
        {"old": ((), True, [1, 2]), "s0": (("old",), False, [5, 6]), "s1": ((), False, [])}
    )
    src = source(client, MemoryStore(), initial_position="LATEST")
    gen = src.records()
    waiting = asyncio.create_task(take(gen, 1))
    await settle()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await gen.aclose()
    kinds = {c["ShardId"]: c["ShardIteratorType"] for c in client.iterator_calls}
    assert kinds == {"s0": "LATEST", "s1": "LATEST"}
    assert src.checkpoints["old"] == ShardCheckpoint(None, ended=True)


async def test_a_missing_stream_is_a_configuration_error() -> None:
    class NoStream(ScriptedKinesis):
        async def list_shards(self, **kwargs: Any) -> dict[str, Any]:
            raise client_error("ResourceNotFoundException")

    gen = source(NoStream({}), MemoryStore()).records()
    with pytest.raises(Exception, match="does not exist"):
        await take(gen, 1)
    await gen.aclose()


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="records_per_call"):
        source(ScriptedKinesis({}), MemoryStore(), records_per_call=0)
    with pytest.raises(ValueError, match="initial_position"):
        source(ScriptedKinesis({}), MemoryStore(), initial_position="AT_TIMESTAMP")
    with pytest.raises(ValueError):
        Backoff(initial_s=0)
