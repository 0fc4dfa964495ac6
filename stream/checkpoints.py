"""Where the Kinesis source keeps its place: one checkpoint per shard, in one document per
stream, in a local directory or in S3.

A shard's checkpoint is the sequence number of its last record that every sink holds durably
(``sequence``) and, once the shard is closed and every one of its records is done, ``ended``
(KCL's ``SHARD_END``). The source writes the document only from the pipeline core's
``commit``, that is after the sinks acknowledged, and a restart resumes each shard
``AFTER_SEQUENCE_NUMBER``.

Why S3 (or a file) and not DynamoDB, as the Kinesis Client Library does: the lake already needs
S3, so checkpoints add no service, no table to provision and no IAM for a second store. The
DynamoDB lease table earns its keep when many workers share shards (leases, heartbeats, lease
stealing); this worker is deliberately a single consumer per stream (see ``docs/kinesis.md``),
so one small JSON object per stream, rewritten whole on each commit, is all it needs. S3 is
strongly consistent for a read after a write, and a ``PutObject`` replaces the object
atomically, so a reader sees the old or the new document, never a torn one. Writes happen only
when the sinks' durable mark moves (at most once per micro-batch, usually far less often: the
lake commits when it writes a file), so the request cost stays a fraction of the lake's own.

One writer per document is enforced, not just assumed:

* :class:`LocalCheckpointStore` holds an exclusive ``flock`` on ``<stream>.lock`` while open: a
  second worker on the same directory fails at once (the kernel drops the lock of a killed
  process, so a restart after ``kill -9`` is not blocked);
* :class:`S3CheckpointStore` writes with S3 conditional requests (``If-None-Match: *`` for the
  first document, ``If-Match: <ETag of our last write>`` after that): if another worker wrote
  the document in between, the write fails with :class:`CheckpointConflict` and this worker
  stops instead of both of them writing the lake.

Document format (``version`` 1)::

    {"version": 1, "stream": "reviews", "updated_at": "2026-01-01T00:00:00+00:00",
     "shards": {"shardId-000000000000": {"sequence": "4968...", "ended": false}}}
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

from botocore.exceptions import ClientError

from stream.errors import CheckpointConflict, ConfigurationError
from stream.files import replace_file
from stream.retry import Backoff, error_code, http_status, retrying

__all__ = [
    "CheckpointStore",
    "LocalCheckpointStore",
    "S3CheckpointStore",
    "ShardCheckpoint",
    "decode_checkpoints",
    "encode_checkpoints",
    "open_checkpoint_store",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

VERSION = 1


@dataclass(frozen=True, slots=True)
class ShardCheckpoint:
    """``sequence``: the last sequence number of the shard that every sink holds (None: none
    yet). ``ended``: the shard is closed and all of it is done; its children may be read."""

    sequence: str | None = None
    ended: bool = False


class CheckpointStore(Protocol):
    """The checkpoints of one stream. ``load`` returns what was saved last (empty for a new
    stream); ``save`` replaces it durably; ``close`` releases the store (idempotent)."""

    async def load(self) -> dict[str, ShardCheckpoint]: ...

    async def save(self, checkpoints: Mapping[str, ShardCheckpoint]) -> None: ...

    async def close(self) -> None: ...


def encode_checkpoints(stream: str, checkpoints: Mapping[str, ShardCheckpoint]) -> bytes:
    doc = {
        "version": VERSION,
        "stream": stream,
        "updated_at": datetime.now(UTC).isoformat(),
        "shards": {
            shard: {"sequence": cp.sequence, "ended": cp.ended}
            for shard, cp in sorted(checkpoints.items())
        },
    }
    return json.dumps(doc, indent=1).encode("utf-8")


def decode_checkpoints(data: bytes) -> dict[str, ShardCheckpoint]:
    doc = json.loads(data)
    version = doc.get("version") if isinstance(doc, dict) else None
    if version != VERSION:
        raise ConfigurationError(f"checkpoint document of unknown version {version!r}")
    out: dict[str, ShardCheckpoint] = {}
    for shard, cp in doc.get("shards", {}).items():
        seq = cp.get("sequence")
        out[str(shard)] = ShardCheckpoint(
            sequence=None if seq is None else str(seq), ended=bool(cp.get("ended", False))
        )
    return out


def _file_name(stream: str) -> str:
    return quote(stream, safe="") + ".json"


class LocalCheckpointStore:
    """Checkpoints in ``<directory>/<stream>.json``, replaced atomically (temp file, fsync,
    rename, fsync of the directory), guarded by an exclusive lock on ``<stream>.lock``."""

    def __init__(self, directory: Path, stream: str) -> None:
        self.directory = directory
        self.stream = stream
        self.path = directory / _file_name(stream)
        self._lock_path = self.path.with_suffix(".lock")
        self._lock_fd: int | None = None

    async def open(self) -> LocalCheckpointStore:
        """Take the lock; raises :class:`CheckpointConflict` when another process has it."""
        if self._lock_fd is not None:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CheckpointConflict(
                f"another worker is consuming stream {self.stream!r} with checkpoints in "
                f"{self.directory} (it holds {self._lock_path.name}); run one worker per stream"
            ) from None
        self._lock_fd = fd
        return self

    async def load(self) -> dict[str, ShardCheckpoint]:
        try:
            data = await asyncio.to_thread(self.path.read_bytes)
        except FileNotFoundError:
            return {}
        return decode_checkpoints(data)

    async def save(self, checkpoints: Mapping[str, ShardCheckpoint]) -> None:
        if self._lock_fd is None:
            await self.open()
        data = encode_checkpoints(self.stream, checkpoints)
        await asyncio.to_thread(self._write, data)

    def _write(self, data: bytes) -> None:
        replace_file(self.path, data, prefix=".tmp-", suffix=".json", sync_directory=True)

    async def close(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class S3CheckpointStore:
    """Checkpoints in ``s3://<bucket>/<prefix>/<stream>.json`` through an aiobotocore S3
    client, written with conditional requests so that two workers cannot both go on.

    Outages (no connection, throttling, 5xx) are retried with capped exponential backoff for
    as long as they last: a commit then waits, and the pipeline's bounded queues stop the
    source. A write whose answer was lost and that is retried finds its own document there
    (same bytes): that is no conflict.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str,
        stream: str,
        *,
        max_backoff_s: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self._s3 = client
        self.bucket = bucket
        self.stream = stream
        self.key = (
            f"{prefix.strip('/')}/{_file_name(stream)}"
            if prefix.strip("/")
            else (_file_name(stream))
        )
        self._backoff = Backoff(initial_s=min(0.2, max_backoff_s), max_s=max_backoff_s)
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._etag: str | None = None  # of the document we last read or wrote
        self._loaded = False
        self.retries = 0

    async def _retrying(self, what: str, call: Callable[[], Awaitable[_T]]) -> _T:
        def count(err: BaseException, delay: float) -> None:
            self.retries += 1

        return await retrying(
            call,
            what=f"checkpoint {what}",
            backoff=self._backoff,
            rng=self._rng.random,
            on_retry=count,
            log=_log,
        )

    async def _get(self) -> tuple[bytes, str] | None:
        async def call() -> tuple[bytes, str] | None:
            try:
                resp = await self._s3.get_object(Bucket=self.bucket, Key=self.key)
            except ClientError as err:
                if error_code(err) in ("NoSuchKey", "404") or http_status(err) == 404:
                    return None
                raise
            async with resp["Body"] as body:
                data: bytes = await body.read()
            return data, str(resp["ETag"])

        result: tuple[bytes, str] | None = await self._retrying("read", call)
        return result

    async def load(self) -> dict[str, ShardCheckpoint]:
        got = await self._get()
        self._loaded = True
        if got is None:
            self._etag = None
            return {}
        data, self._etag = got
        return decode_checkpoints(data)

    async def save(self, checkpoints: Mapping[str, ShardCheckpoint]) -> None:
        if not self._loaded:
            await self.load()
        data = encode_checkpoints(self.stream, checkpoints)
        condition = {"IfMatch": self._etag} if self._etag else {"IfNoneMatch": "*"}

        async def call() -> str:
            resp = await self._s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=data,
                ContentType="application/json",
                **condition,
            )
            return str(resp["ETag"])

        try:
            self._etag = await self._retrying("write", call)
        except ClientError as err:
            if error_code(err) not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise
            there = await self._get()
            if there is not None and there[0] == data:
                self._etag = there[1]  # our own earlier attempt went through
                return
            raise CheckpointConflict(
                f"the checkpoints of stream {self.stream!r} at s3://{self.bucket}/{self.key} "
                "were written by another worker; run one worker per stream"
            ) from err

    async def close(self) -> None:
        """The client belongs to whoever opened it."""


@contextlib.asynccontextmanager
async def open_checkpoint_store(
    location: str,
    stream: str,
    *,
    region: str = "us-east-1",
    s3_endpoint_url: str | None = None,
    profile: str | None = None,
    max_backoff_s: float = 30.0,
) -> AsyncIterator[CheckpointStore]:
    """The store ``location`` names: a directory, or ``s3://bucket/prefix``."""
    if not location.startswith("s3://"):
        local = await LocalCheckpointStore(Path(location), stream).open()
        try:
            yield local
        finally:
            await local.close()
        return
    bucket, _, prefix = location[len("s3://") :].partition("/")
    if not bucket:
        raise ConfigurationError(f"checkpoint location {location!r} has no bucket")
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession

    session = AioSession(profile=profile)
    config = AioConfig(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5)
    async with session.create_client(
        "s3", region_name=region, endpoint_url=s3_endpoint_url, config=config
    ) as client:
        store = S3CheckpointStore(client, bucket, prefix, stream, max_backoff_s=max_backoff_s)
        try:
            yield store
        finally:
            await store.close()
