"""Publishing review events to Amazon Kinesis Data Streams (``produce --to kinesis``).

Example::

    from stream.producer_kinesis import KinesisReviewProducer
    from stream.settings import KinesisSettings

    async with KinesisReviewProducer(settings=KinesisSettings(stream_name="reviews")) as producer:
        await producer.send(event)           # one ReviewEvent, partition key = product_id
        await producer.send_raw(key, value)  # bytes as they are (tests, replays)

Records are sent with ``PutRecords`` in batches of at most 500 records and 5 MiB (data plus
partition keys, the API's limits), cut earlier by ``linger_s``. ``PutRecords`` is not atomic:
records it could not store come back with an ``ErrorCode``
(``ProvisionedThroughputExceededException``, ``InternalFailure``) and a ``FailedRecordCount``;
only those are sent again, with capped exponential backoff and jitter, until they are stored or
``max_attempts`` calls have failed (then :class:`~stream.errors.ServiceUnavailable`). Whole
calls that fail with throttling, 5xx or a lost connection are retried the same way. A retried
record lands after records sent later with the same key, so order per product is kept only
without failures; the monitors window by event time (with allowed lateness), not by arrival.
Kinesis has no idempotent producer: a call whose answer is lost and that is retried can store a
record twice (the lake keys rows by sequence number, so both copies would be kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from stream.errors import ServiceUnavailable, describe
from stream.events import ReviewEvent
from stream.producer import encode_event
from stream.retry import Backoff, retriable, retrying
from stream.settings import KinesisSettings
from stream.sources.kinesis import ensure_stream, kinesis_client

__all__ = [
    "MAX_RECORDS_PER_CALL",
    "MAX_RECORD_BYTES",
    "MAX_REQUEST_BYTES",
    "KinesisReviewProducer",
    "partition_key",
]

_log = logging.getLogger(__name__)

MAX_RECORDS_PER_CALL = 500
MAX_REQUEST_BYTES = 5 * 2**20
MAX_RECORD_BYTES = 2**20  #: data and partition key of one record
_MAX_KEY_CHARS = 256


def partition_key(key: bytes, value: bytes) -> str:
    """The partition key of a record: its key (product_id) as text, at most 256 characters;
    a record without a key is spread by a hash of its bytes."""
    text = key.decode("utf-8", errors="replace")
    if not text:
        return hashlib.sha1(value, usedforsecurity=False).hexdigest()
    return text[:_MAX_KEY_CHARS]


class KinesisReviewProducer:
    """Batches records into ``PutRecords`` calls to one stream; implements
    :class:`~stream.producer.RawPublisher`.

    ``client`` is an open aiobotocore Kinesis client (owned by the caller); without one the
    producer opens its own from ``settings`` when entered, and creates the stream first when
    ``settings.create_stream`` says so.
    """

    def __init__(
        self,
        stream_name: str | None = None,
        *,
        settings: KinesisSettings | None = None,
        client: Any = None,
        max_records: int = MAX_RECORDS_PER_CALL,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        linger_s: float = 0.1,
        max_attempts: int = 20,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not 1 <= max_records <= MAX_RECORDS_PER_CALL:
            raise ValueError(f"max_records must be 1..{MAX_RECORDS_PER_CALL}")
        if not MAX_RECORD_BYTES <= max_request_bytes <= MAX_REQUEST_BYTES:
            raise ValueError(f"max_request_bytes must be {MAX_RECORD_BYTES}..{MAX_REQUEST_BYTES}")
        if linger_s <= 0 or max_attempts < 1:
            raise ValueError("linger_s must be positive and max_attempts at least 1")
        self._settings = settings or KinesisSettings()
        self.stream = stream_name or self._settings.stream_name
        self._client = client
        self._client_cm: Any = None
        self._max_records = max_records
        self._max_bytes = max_request_bytes
        self._linger_s = linger_s
        self._max_attempts = max_attempts
        self._backoff = backoff or Backoff(max_s=self._settings.max_backoff_s)
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._buffer: list[dict[str, Any]] = []
        self._buffer_bytes = 0
        self._first_at: float | None = None
        self._lock = asyncio.Lock()
        self._linger_task: asyncio.Task[None] | None = None
        self._closed = False
        #: Counters for logs and tests.
        self.calls = 0
        self.records_sent = 0
        self.records_retried = 0

    async def __aenter__(self) -> KinesisReviewProducer:
        if self._client is None:
            self._client_cm = kinesis_client(self._settings)
            self._client = await self._client_cm.__aenter__()
            if self._settings.create_stream:
                await ensure_stream(self._client, self.stream, self._settings.shards)
        self._linger_task = asyncio.create_task(self._linger(), name="kinesis-producer-linger")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def send(self, event: ReviewEvent) -> None:
        key, value = encode_event(event)
        await self.send_raw(key, value)

    async def send_raw(self, key: bytes, value: bytes) -> None:
        """Buffer one record; a full batch is sent at once, a partial one after ``linger_s``
        or on :meth:`flush`."""
        if self._closed:
            raise RuntimeError("the producer is closed")
        pkey = partition_key(key, value)
        size = len(value) + len(pkey.encode("utf-8"))
        if size > MAX_RECORD_BYTES:
            raise ValueError(f"a record of {size} bytes exceeds Kinesis' {MAX_RECORD_BYTES}")
        async with self._lock:
            if self._buffer and self._buffer_bytes + size > self._max_bytes:
                await self._send_buffer()
            self._buffer.append({"Data": value, "PartitionKey": pkey})
            self._buffer_bytes += size
            if self._first_at is None:
                self._first_at = time.monotonic()
            if len(self._buffer) >= self._max_records:
                await self._send_buffer()

    async def flush(self) -> None:
        """Send what is buffered; returns once every record is stored (raises if some could
        not be stored after ``max_attempts`` calls)."""
        async with self._lock:
            await self._send_buffer()

    async def close(self) -> None:
        """Flush and release the client; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._linger_task is not None:
            self._linger_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._linger_task
        try:
            async with self._lock:
                await self._send_buffer()
        finally:
            if self._client_cm is not None:
                cm, self._client_cm = self._client_cm, None
                await cm.__aexit__(None, None, None)

    async def _linger(self) -> None:
        while True:
            await asyncio.sleep(self._linger_s / 2)
            first = self._first_at
            if first is not None and time.monotonic() - first >= self._linger_s:
                async with self._lock:
                    await self._send_buffer()

    async def _send_buffer(self) -> None:
        """Send the buffer (the caller holds the lock)."""
        if not self._buffer:
            return
        records, self._buffer, self._buffer_bytes, self._first_at = self._buffer, [], 0, None
        await self.put_records(records)

    async def put_records(self, records: list[dict[str, Any]]) -> None:
        """One batch (within the limits) through ``PutRecords``, failed records again."""
        pending = records

        async def attempt() -> None:
            nonlocal pending
            self.calls += 1
            resp = await self._client.put_records(StreamName=self.stream, Records=pending)
            results = resp.get("Records", [])
            if int(resp.get("FailedRecordCount", 0) or 0) == 0 and len(results) == len(pending):
                self.records_sent += len(pending)
                return
            failed = [
                rec for rec, res in zip(pending, results, strict=True) if res.get("ErrorCode")
            ]
            codes = Counter(str(res.get("ErrorCode")) for res in results if res.get("ErrorCode"))
            self.records_sent += len(pending) - len(failed)
            self.records_retried += len(failed)
            if failed:
                pending = failed
                raise _PartlyFailed(f"{len(failed)} records failed ({dict(codes)})")

        try:
            await retrying(
                attempt,
                what=f"PutRecords to {self.stream}",
                backoff=self._backoff,
                max_attempts=self._max_attempts,
                sleep=self._sleep,
                rng=self._rng.random,
                log=_log,
            )
        except Exception as err:
            if not retriable(err):
                raise
            raise ServiceUnavailable(
                f"Kinesis stream {self.stream!r}: {describe(err)}; "
                f"gave up after {self._max_attempts} attempts"
            ) from err


class _PartlyFailed(ServiceUnavailable):
    """Some records of a ``PutRecords`` call were refused (throttled): send those again."""
