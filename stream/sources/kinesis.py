"""Amazon Kinesis Data Streams as a source for the core, with aiobotocore.

Shards and resharding
---------------------
The source lists the stream's shards (``ListShards``, paginated) and runs one reader task per
shard it may read. A shard may be read once each of its parents (``ParentShardId``,
``AdjacentParentShardId``) is *finished*: read to its end (``GetRecords`` returns no
``NextShardIterator``, with ``ChildShards`` on AWS) **and** checkpointed, i.e. every one of its
records is held by every sink and its checkpoint says ``ended``. So after a ``SplitShard`` or
``MergeShards`` every record of a parent reaches the pipeline, the lake and the monitors before
any record of its children, in this process and across restarts (the Kinesis Client Library's
rule). A parent that is no longer listed (past the retention period) counts as finished. The
shard list is read again whenever a shard ends and every ``shard_refresh_s``.

Reading
-------
A reader loops on ``GetRecords`` (``Limit`` = ``records_per_call``). After a call that
returned a full page, or records while the shard is behind, it waits ``min_call_interval_s``
(AWS allows five calls per second per shard); otherwise ``poll_interval_s``. Throttling
(``ProvisionedThroughputExceededException``, ``LimitExceededException``, KMS throttling),
5xx answers and lost connections are retried with capped exponential backoff and jitter
(:mod:`stream.retry`), the shard's other readers carrying on; an expired iterator is fetched
again after the last record read. Each shard's records go through a bounded queue of their
own, so a slow pipeline stops every reader (backpressure) instead of buffering; the consumer
takes them evenly from every shard with records waiting, so event time advances together
across shards.

Checkpoints
-----------
Positions are ``("kinesis", <stream>, <shard id>, <sequence number>)``; sequence numbers
exceed 64 bits and stay Python ints. The core calls :meth:`KinesisSource.commit` only after
every sink holds the batch; only then is the shard's sequence number written to the
:class:`~stream.checkpoints.CheckpointStore` (and a shard read to its end whose records are all
committed is marked ``ended`` there). A restart resumes each shard ``AFTER_SEQUENCE_NUMBER`` of
its checkpoint (a shard without one: ``TRIM_HORIZON``, or for a stream with no checkpoint at
all the configured ``initial_position``) and calls ``on_rewind`` with each shard's first
record, so the lake drops what uncommitted batches had written before the crash and the replay
stores every record exactly once.

One worker per stream: see ``docs/kinesis.md`` (the checkpoint stores refuse a second one).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.exceptions import ClientError

from stream.checkpoints import CheckpointStore, ShardCheckpoint
from stream.errors import ConfigurationError, ServiceUnavailable
from stream.events import SourcePosition
from stream.pipeline import RawRecord
from stream.retry import Backoff, error_code, retriable, retrying, throttled
from stream.settings import KinesisSettings

__all__ = [
    "SOURCE",
    "KinesisSource",
    "ShardInfo",
    "ensure_stream",
    "kinesis_client",
    "readable_shards",
    "shards_from_listing",
]

_log = logging.getLogger(__name__)

SOURCE = "kinesis"

InitialPosition = Literal["TRIM_HORIZON", "LATEST"]


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """A shard as ``ListShards`` (or ``ChildShards``) describes it."""

    shard_id: str
    parents: tuple[str, ...] = ()
    closed: bool = False  #: has an ending sequence number: no record is added any more


def shards_from_listing(shards: Iterable[Mapping[str, Any]]) -> dict[str, ShardInfo]:
    """``ListShards``' ``Shards`` -> :class:`ShardInfo` by shard id."""
    out: dict[str, ShardInfo] = {}
    for s in shards:
        parents = tuple(
            p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p is not None
        )
        closed = s.get("SequenceNumberRange", {}).get("EndingSequenceNumber") is not None
        out[str(s["ShardId"])] = ShardInfo(str(s["ShardId"]), parents, closed)
    return out


def readable_shards(
    shards: Mapping[str, ShardInfo], finished: set[str], started: set[str]
) -> list[str]:
    """Shards to start reading now: not finished, not started, and every parent finished (or
    no longer listed: trimmed after the retention period). Sorted by shard id."""
    return sorted(
        sid
        for sid, info in shards.items()
        if sid not in finished
        and sid not in started
        and all(p in finished or p not in shards for p in info.parents)
    )


#: records taken from one shard before the next shard's turn
_TURN = 50
#: how long the first record waits for every shard's first GetRecords answer
_FIRST_WAIT_S = 5.0


def _check_options(
    initial_position: str,
    *,
    records_per_call: int,
    poll_interval_s: float,
    min_call_interval_s: float,
    shard_refresh_s: float,
) -> None:
    """Raise ``ValueError`` for options :class:`KinesisSource` cannot honour."""
    if initial_position not in ("TRIM_HORIZON", "LATEST"):
        raise ValueError("initial_position must be TRIM_HORIZON or LATEST")
    if not 1 <= records_per_call <= 10_000:
        raise ValueError("records_per_call must be 1..10000 (the GetRecords limit)")
    for name, value in (
        ("poll_interval_s", poll_interval_s),
        ("shard_refresh_s", shard_refresh_s),
    ):
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    if min_call_interval_s < 0:
        raise ValueError("min_call_interval_s must not be negative")


class KinesisSource:
    """Reads every shard of ``stream_name`` through an aiobotocore Kinesis ``client`` (open,
    owned by the caller), as a :class:`~stream.pipeline.Source` with durable checkpoints.

    ``on_rewind(position)`` is awaited before the first record of each shard this process
    delivers (the lake's :meth:`~sinks.lake.LakeSink.rewind`).
    """

    def __init__(
        self,
        client: Any,
        stream_name: str,
        store: CheckpointStore,
        *,
        on_rewind: Callable[[SourcePosition], Awaitable[object]] | None = None,
        initial_position: InitialPosition = "TRIM_HORIZON",
        records_per_call: int = 1000,
        poll_interval_s: float = 1.0,
        min_call_interval_s: float = 0.2,
        shard_refresh_s: float = 60.0,
        backoff: Backoff | None = None,
        queue_records: int = 2000,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        _check_options(
            initial_position,
            records_per_call=records_per_call,
            poll_interval_s=poll_interval_s,
            min_call_interval_s=min_call_interval_s,
            shard_refresh_s=shard_refresh_s,
        )
        self._client = client
        self.stream = stream_name
        self._store = store
        self._on_rewind = on_rewind
        self._initial: InitialPosition = initial_position
        self._limit = records_per_call
        self._poll_s = poll_interval_s
        self._min_call_s = min_call_interval_s
        self._refresh_s = shard_refresh_s
        self._backoff = backoff or Backoff()
        self._queue_size = queue_records
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets

        self._checkpoints: dict[str, ShardCheckpoint] = {}
        self._shards: dict[str, ShardInfo] = {}
        self._finished: set[str] = set()
        self._started: set[str] = set()
        self._ended: dict[str, int | None] = {}  # read to the end: last sequence read here
        self._read_last: dict[str, int] = {}
        self._seen: set[str] = set()
        self._latest_at_start: set[str] = set()
        self._queues: dict[str, asyncio.Queue[RawRecord]] = {}
        self._answered: set[str] = set()  # shards whose first GetRecords came back
        self._failure: BaseException | None = None
        self._ready = asyncio.Event()  # a reader queued records, answered, or failed
        self._wake = asyncio.Event()
        self._save_lock = asyncio.Lock()
        self._running = False
        #: Counters for logs and tests.
        self.rewinds = 0
        self.throttled = 0
        self.retries = 0
        self.saves = 0

    # -- the Source protocol ------------------------------------------------------------

    async def records(self) -> AsyncGenerator[RawRecord, None]:
        """The records of :meth:`batches`, one at a time."""
        async for chunk in self.batches():
            for record in chunk:
                yield record

    async def batches(self) -> AsyncGenerator[list[RawRecord], None]:
        """Chunks of every shard's records, merged evenly: up to ``_TURN`` records of each
        shard with records waiting, in turn, so event time advances together across shards
        (the monitors' watermark is their minimum). The first chunk waits (at most
        ``_FIRST_WAIT_S``) until every shard being read has answered once."""
        if self._running:
            raise RuntimeError("KinesisSource is already being read")
        self._running = True
        self._queues = {}
        self._answered = set()
        self._failure = None
        self._checkpoints = await self._store.load()
        fresh = not self._checkpoints
        self._finished = {s for s, cp in self._checkpoints.items() if cp.ended}
        readers: dict[str, asyncio.Task[None]] = {}
        supervisor = asyncio.create_task(self._supervise(fresh, readers), name="kinesis-shards")
        try:
            await self._first_answers(readers)
            while True:
                if self._failure is not None:
                    raise self._failure
                self._ready.clear()
                chunk: list[RawRecord] = []
                for shard, queue in list(self._queues.items()):
                    taken = [queue.get_nowait() for _ in range(min(queue.qsize(), _TURN))]
                    if taken and shard not in self._seen:
                        await self._first_record(taken[0])
                    chunk += taken
                if chunk:
                    yield chunk
                else:
                    await self._ready.wait()
        finally:
            tasks = [supervisor, *readers.values()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._running = False

    async def _first_answers(self, readers: Mapping[str, asyncio.Task[None]]) -> None:
        deadline = time.monotonic() + _FIRST_WAIT_S
        while self._failure is None and time.monotonic() < deadline:
            if readers and set(readers) <= self._answered:
                return
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self._ready.wait()

    async def _first_record(self, item: RawRecord) -> None:
        # First record of this shard in this process: the checkpoint (or the shard's start)
        # is where the lake's committed data ends.
        shard = item.position.partition
        self._seen.add(shard)
        self.rewinds += 1
        dropped = None
        if self._on_rewind is not None:
            dropped = await self._on_rewind(item.position)
        _log.info(
            "shard %s of %s: first record %d (lake rewind dropped %s files)",
            shard,
            self.stream,
            item.position.offset,
            dropped,
        )

    async def commit(self, positions: Mapping[tuple[str, str, str], SourcePosition]) -> None:
        """Every record up to each position is held by every sink: checkpoint it (and mark
        shards read to their end whose last record is now committed as ``ended``)."""
        changed = False
        for key, pos in positions.items():
            if key[0] != SOURCE or key[1] != self.stream:
                continue
            cp = self._checkpoints.get(pos.partition)
            if cp is None or cp.sequence is None or int(cp.sequence) < pos.offset:
                ended = cp.ended if cp is not None else False
                self._checkpoints[pos.partition] = ShardCheckpoint(str(pos.offset), ended)
                changed = True
        finished = self._finish_done_shards()
        if changed or finished:
            await self._save()
        if finished:
            self._wake.set()

    @property
    def checkpoints(self) -> dict[str, ShardCheckpoint]:
        """What this source has committed (saved or about to be)."""
        return dict(self._checkpoints)

    # -- checkpoints ----------------------------------------------------------------------

    def _committed(self, shard: str) -> int | None:
        cp = self._checkpoints.get(shard)
        return None if cp is None or cp.sequence is None else int(cp.sequence)

    def _finish_done_shards(self) -> list[str]:
        """Shards read to their end whose records are all committed become ``ended``; what
        was kept to read them goes (a stream resharded every day would otherwise keep a
        queue, and loops over it, for every shard it ever had)."""
        done = []
        for shard, last in self._ended.items():
            if shard in self._finished:
                continue
            committed = self._committed(shard)
            if last is None or (committed is not None and committed >= last):
                cp = self._checkpoints.get(shard, ShardCheckpoint())
                self._checkpoints[shard] = ShardCheckpoint(cp.sequence, ended=True)
                self._finished.add(shard)
                done.append(shard)
                _log.info("shard %s of %s finished: its children may be read", shard, self.stream)
        for shard in done:
            del self._ended[shard]
            self._read_last.pop(shard, None)
            self._started.discard(shard)  # finished: never started again
            self._seen.discard(shard)
            self._latest_at_start.discard(shard)
            queue = self._queues.get(shard)
            if queue is not None and queue.empty():  # its records are all committed
                del self._queues[shard]
        return done

    async def _save(self) -> None:
        async with self._save_lock:
            await self._store.save(dict(self._checkpoints))
            self.saves += 1

    # -- shards ---------------------------------------------------------------------------

    async def _supervise(self, fresh: bool, readers: dict[str, asyncio.Task[None]]) -> None:
        try:
            first = True
            while True:
                self._wake.clear()
                listed = await self._list_shards()
                for sid, info in listed.items():
                    self._shards[sid] = info
                if first and fresh and self._initial == "LATEST":
                    # A new stream read from LATEST: what is closed now is history.
                    for sid, info in listed.items():
                        if info.closed:
                            self._finished.add(sid)
                            self._checkpoints[sid] = ShardCheckpoint(None, ended=True)
                        else:
                            self._latest_at_start.add(sid)
                first = False
                for sid in [
                    s for s, task in readers.items() if task.done() and s in self._finished
                ]:
                    del readers[sid]
                for sid in readable_shards(self._shards, self._finished, self._started):
                    self._started.add(sid)
                    readers[sid] = asyncio.create_task(self._read_shard(sid), name=f"kinesis-{sid}")
                if self._finish_done_shards():
                    await self._save()
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._refresh_s)
        except asyncio.CancelledError:
            raise
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, which raises it
            await self._fail(err)

    async def _fail(self, err: BaseException) -> None:
        if self._failure is None:
            self._failure = err
        self._ready.set()

    async def _list_shards(self) -> dict[str, ShardInfo]:
        raw: list[Mapping[str, Any]] = []
        token: str | None = None
        while True:
            args: dict[str, Any] = {"NextToken": token} if token else {"StreamName": self.stream}
            try:
                resp = await self._retrying(
                    "ListShards", functools.partial(self._client.list_shards, **args)
                )
            except ClientError as err:
                if error_code(err) == "ResourceNotFoundException":
                    raise ConfigurationError(
                        f"Kinesis stream {self.stream!r} does not exist: create it, or let the "
                        "worker create it (kinesis.create_stream=true)"
                    ) from err
                raise
            raw.extend(resp.get("Shards", []))
            token = resp.get("NextToken")
            if not token:
                return shards_from_listing(raw)

    async def _retrying(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        def count(err: BaseException, delay: float) -> None:
            self.retries += 1
            if throttled(err):
                self.throttled += 1

        return await retrying(
            call,
            what=f"{what} on {self.stream}",
            backoff=self._backoff,
            sleep=self._sleep,
            rng=self._rng.random,
            on_retry=count,
            log=_log,
        )

    # -- one shard ------------------------------------------------------------------------

    def _start_args(self, shard: str) -> dict[str, Any]:
        last = self._read_last.get(shard)
        if last is None:
            last = self._committed(shard)
        if last is not None:
            return {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "StartingSequenceNumber": str(last),
            }
        if shard in self._latest_at_start:
            return {"ShardIteratorType": "LATEST"}
        return {"ShardIteratorType": "TRIM_HORIZON"}

    async def _iterator(self, shard: str) -> str | None:
        args = {"StreamName": self.stream, "ShardId": shard, **self._start_args(shard)}
        try:
            resp = await self._retrying(
                "GetShardIterator", functools.partial(self._client.get_shard_iterator, **args)
            )
        except ClientError as err:
            if error_code(err) == "ResourceNotFoundException":
                return None
            raise
        _log.info(
            "reading shard %s of %s from %s %s",
            shard,
            self.stream,
            args["ShardIteratorType"],
            args.get("StartingSequenceNumber", ""),
        )
        iterator: str | None = resp.get("ShardIterator")
        return iterator

    async def _read_shard(self, shard: str) -> None:
        try:
            await self._read(shard)
        except asyncio.CancelledError:
            raise
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, which raises it
            await self._fail(err)

    async def _read(self, shard: str) -> None:
        queue = self._queues.setdefault(shard, asyncio.Queue(self._queue_size))
        iterator = await self._iterator(shard)
        while iterator is not None:
            try:
                resp = await self._retrying(
                    "GetRecords",
                    functools.partial(
                        self._client.get_records, ShardIterator=iterator, Limit=self._limit
                    ),
                )
            except ClientError as err:
                code = error_code(err)
                if code == "ExpiredIteratorException":
                    iterator = await self._iterator(shard)
                    continue
                if code == "ResourceNotFoundException":
                    _log.warning("shard %s of %s is gone (past retention?)", shard, self.stream)
                    break
                raise
            records = resp.get("Records", [])
            self._answered.add(shard)
            self._ready.set()
            for r in records:
                seq = int(r["SequenceNumber"])
                key = r.get("PartitionKey")
                await queue.put(
                    RawRecord(
                        value=bytes(r["Data"]),
                        position=SourcePosition(SOURCE, self.stream, shard, seq),
                        received_at=datetime.fromtimestamp(self._clock(), UTC),
                        key=key.encode("utf-8") if isinstance(key, str) else None,
                    )
                )
                self._read_last[shard] = seq
                self._ready.set()
            for child in resp.get("ChildShards") or []:
                sid = str(child["ShardId"])
                self._shards.setdefault(sid, ShardInfo(sid, tuple(child.get("ParentShards", []))))
            iterator = resp.get("NextShardIterator")
            if iterator is None:
                break
            behind = int(resp.get("MillisBehindLatest", 0) or 0)
            if records and (len(records) >= self._limit or behind > 0):
                await self._sleep(self._min_call_s)
            else:
                await self._sleep(self._poll_s)
        # Read to the end (closed shard, or gone): finished once its records are committed.
        self._ended[shard] = self._read_last.get(shard)
        _log.info("shard %s of %s read to its end", shard, self.stream)
        self._wake.set()


# -- clients and streams (shared with the producer) ----------------------------------------


def kinesis_client(settings: KinesisSettings) -> Any:
    """An aiobotocore Kinesis client for ``settings`` (use it with ``async with``). botocore
    retries each request a few times itself; the callers' loops retry for longer."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession

    config = AioConfig(
        retries={"mode": "standard", "total_max_attempts": 3},
        connect_timeout=5,
        read_timeout=30,
    )
    return AioSession().create_client(
        "kinesis",
        region_name=settings.region,
        endpoint_url=settings.endpoint_url,
        config=config,
    )


async def ensure_stream(
    client: Any,
    stream_name: str,
    shards: int,
    *,
    timeout_s: float = 300.0,
    backoff: Backoff | None = None,
    rng: random.Random | None = None,
) -> bool:
    """Create ``stream_name`` with ``shards`` shards unless it exists, and wait until it is
    ACTIVE (or UPDATING: readable and writable). Waits for a server that is still starting.
    Returns whether this call created it."""
    created = False

    async def ready() -> None:
        nonlocal created
        try:
            summary = await client.describe_stream_summary(StreamName=stream_name)
        except ClientError as err:
            if error_code(err) != "ResourceNotFoundException":
                raise
            try:
                await client.create_stream(StreamName=stream_name, ShardCount=shards)
            except ClientError as create_err:
                if error_code(create_err) != "ResourceInUseException":
                    raise
            else:
                created = True
                _log.info("created Kinesis stream %s with %d shards", stream_name, shards)
            raise _NotActive(f"Kinesis stream {stream_name!r} is being created") from None
        status = summary["StreamDescriptionSummary"]["StreamStatus"]
        if status not in ("ACTIVE", "UPDATING"):
            raise _NotActive(f"Kinesis stream {stream_name!r} is {status}")

    try:
        await retrying(
            ready,
            what=f"waiting for Kinesis stream {stream_name}",
            backoff=backoff or Backoff(max_s=5.0),
            give_up_after_s=timeout_s,
            rng=(rng or random.Random()).random,  # noqa: S311 - jitter, not secrets
            log=None,
        )
    except Exception as err:
        if not retriable(err):
            raise
        raise ConfigurationError(
            f"Kinesis stream {stream_name!r} did not become ACTIVE in {timeout_s:.0f}s"
        ) from err
    return created


class _NotActive(ServiceUnavailable):
    """The stream exists but is not readable yet (CREATING): ask again."""
