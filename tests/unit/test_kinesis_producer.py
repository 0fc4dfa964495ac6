"""KinesisReviewProducer against a scripted client: PutRecords limits, partial failures
retried with backoff, partition keys. (The real server: tests/integration/test_kinesis.py.)"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError

from stream.errors import ServiceUnavailable
from stream.producer import publish
from stream.producer_kinesis import (
    MAX_RECORD_BYTES,
    MAX_REQUEST_BYTES,
    KinesisReviewProducer,
    partition_key,
)
from stream.retry import Backoff
from tests.fakes import Sleeps


class ScriptedPut:
    """Stores what PutRecords sends; ``fail`` says which records of which call fail."""

    def __init__(self, fail: Any = None, error: ClientError | None = None) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.stored: list[bytes] = []
        self.fail = fail or (lambda call, i, rec: None)
        self.error = error

    async def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        assert StreamName == "reviews"
        assert len(Records) <= 500
        assert sum(len(r["Data"]) + len(r["PartitionKey"].encode()) for r in Records) <= (
            MAX_REQUEST_BYTES
        )
        self.calls.append(Records)
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        results = []
        for i, rec in enumerate(Records):
            code = self.fail(len(self.calls), i, rec)
            if code:
                results.append({"ErrorCode": code, "ErrorMessage": code})
            else:
                self.stored.append(rec["Data"])
                results.append({"SequenceNumber": str(len(self.stored)), "ShardId": "s0"})
        failed = sum(1 for r in results if "ErrorCode" in r)
        return {"FailedRecordCount": failed, "Records": results}


def producer(client: ScriptedPut, sleeps: Sleeps | None = None, **kw: Any) -> KinesisReviewProducer:
    return KinesisReviewProducer(
        "reviews",
        client=client,
        sleep=sleeps or Sleeps(),
        backoff=Backoff(initial_s=0.1, max_s=0.4, jitter=0.0),
        linger_s=60.0,
        **kw,
    )


async def test_batches_hold_at_most_500_records() -> None:
    client = ScriptedPut()
    async with producer(client) as p:
        sent = await publish(p, [(b"P%d" % (i % 7), b"v%d" % i) for i in range(1_200)])
    assert sent == 1_200
    assert [len(c) for c in client.calls] == [500, 500, 200]
    assert client.stored == [b"v%d" % i for i in range(1_200)]


async def test_batches_hold_at_most_5_mib() -> None:
    client = ScriptedPut()
    big = b"x" * (600 * 1024)
    async with producer(client) as p:
        for _ in range(20):
            await p.send_raw(b"P1", big)
    assert sum(len(c) for c in client.calls) == 20
    assert max(len(c) for c in client.calls) == MAX_REQUEST_BYTES // (len(big) + 2)


async def test_failed_records_alone_are_sent_again_with_backoff() -> None:
    def fail(call: int, i: int, rec: dict[str, Any]) -> str | None:
        # The first two calls throttle every other record.
        return "ProvisionedThroughputExceededException" if call <= 2 and i % 2 == 0 else None

    client = ScriptedPut(fail)
    sleeps = Sleeps()
    async with producer(client, sleeps) as p:
        await publish(p, [(b"P1", b"v%d" % i) for i in range(8)])
    assert [len(c) for c in client.calls] == [8, 4, 2]
    assert Counter(client.stored) == Counter(b"v%d" % i for i in range(8))
    assert p.records_retried == 6
    assert sleeps.delays == [0.1, 0.2]


async def test_a_throttled_call_is_retried_whole() -> None:
    throttled: Any = {
        "Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"},
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }
    client = ScriptedPut(error=ClientError(throttled, "PutRecords"))
    async with producer(client) as p:
        await publish(p, [(b"P1", b"a"), (b"P2", b"b")])
    assert client.stored == [b"a", b"b"]
    assert len(client.calls) == 2


async def test_records_that_keep_failing_raise_after_max_attempts() -> None:
    client = ScriptedPut(lambda call, i, rec: "InternalFailure")
    p = producer(client, max_attempts=3)
    await p.send_raw(b"P1", b"a")
    with pytest.raises(ServiceUnavailable, match="gave up after 3 attempts"):
        await p.flush()
    assert len(client.calls) == 3


def test_partition_keys() -> None:
    assert partition_key(b"P-123", b"{}") == "P-123"
    assert len(partition_key(b"k" * 300, b"{}")) == 256
    keyless = partition_key(b"", b'{"a": 1}')
    assert len(keyless) == 40 and keyless == partition_key(b"", b'{"a": 1}')


async def test_a_record_over_1_mib_is_refused() -> None:
    p = producer(ScriptedPut())
    with pytest.raises(ValueError, match="exceeds"):
        await p.send_raw(b"P1", b"x" * MAX_RECORD_BYTES)


async def test_linger_sends_a_partial_batch() -> None:
    client = ScriptedPut()
    p = KinesisReviewProducer("reviews", client=client, linger_s=0.01)
    async with p:
        await p.send_raw(b"P1", b"a")
        for _ in range(500):
            if client.stored:
                break
            await asyncio.sleep(0.01)
        assert client.stored == [b"a"]
