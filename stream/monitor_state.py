"""The monitors' saved state for paths that keep no topic for it (Kinesis).

The Kafka path keeps the monitor suite's state in a compacted topic. A Kinesis worker keeps it
beside its shard checkpoints: ``<location>/<stream>.monitor-state.json`` in a directory or an
S3 prefix, replaced whole on each save (temp file + rename locally; one PutObject on S3).

:class:`MonitorStateSaving` wraps the worker's source: before a commit it saves the state when
``every_s`` has passed since the last save, and it saves once more when the run ends, so a
restart (even after ``kill -9``) continues the counts and the baseline from at most
``every_s`` before the last commit.

Every store writes a state through :func:`encode_state` (the Kafka topic's records
zstd-compressed, to stay far under the topic's 1 MB message limit) and reads it through
:func:`decode_state`, which takes either form. A state that cannot be continued from
(bytes that are not a JSON object, another version, other categories, a malformed part) raises
:class:`UnusableMonitorState`, never a parse error. The worker then starts its monitors afresh
(:func:`stream.app.discard_saved_state` says so) rather than stopping: the reviews go on
reaching the lake; only the windows, counts and baseline begin again.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from stream.events import SourcePosition
from stream.files import replace_file
from stream.pipeline import BatchSource, RawRecord

__all__ = [
    "LocalMonitorState",
    "MonitorStateSaving",
    "MonitorStateStore",
    "S3MonitorState",
    "UnusableMonitorState",
    "decode_state",
    "encode_state",
    "monitor_state_store",
]

#: The first bytes of a zstd frame (RFC 8878): a state :func:`encode_state` compressed.
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: The most bytes a compressed state may inflate to: a corrupt or hostile record is refused
#: before it exhausts memory (a day of 150 categories' state is under 1 MB).
MAX_STATE_BYTES = 256 * 2**20


class UnusableMonitorState(ValueError):
    """A saved monitor state the monitors cannot continue from: not a JSON object, or one of
    another version, written with other categories, or malformed inside."""


def encode_state(state: Mapping[str, Any], *, compress: bool = False) -> bytes:
    """The state as compact JSON, zstd-compressed with ``compress``: a state's JSON shrinks
    fifteen to thirty times (135 kB to 9 kB for 18 categories after a day, 900 kB to 28 kB for
    150), and a Kafka record must fit the topic's and the producer's 1 MB limit."""
    data = json.dumps(state, separators=(",", ":")).encode()
    if not compress:
        return data
    import zstandard

    return zstandard.ZstdCompressor(level=3).compress(data)


def decode_state(
    data: bytes | None, where: str, *, max_bytes: int = MAX_STATE_BYTES
) -> dict[str, Any] | None:
    """The state saved as ``data`` at ``where`` (named in the error), plain or compressed
    JSON: None for no state (nothing, empty, or JSON ``null``, a deleted state);
    :class:`UnusableMonitorState` for any other bytes that are not a JSON object, and for a
    compressed state that is broken or inflates past ``max_bytes``."""
    if not data:
        return None
    if data[:4] == _ZSTD_MAGIC:
        data = _inflate(data, where, max_bytes)
    try:
        state = json.loads(data)
    except (ValueError, RecursionError) as err:  # bad UTF-8 is a ValueError too
        raise UnusableMonitorState(f"{where}: not JSON ({err})") from None
    if state is None:
        return None
    if not isinstance(state, dict):
        raise UnusableMonitorState(f"{where}: a JSON {type(state).__name__}, not an object")
    return state


def _inflate(data: bytes, where: str, max_bytes: int) -> bytes:
    import zstandard

    try:
        size = zstandard.frame_content_size(data)  # -1: not in the frame's header
        if size > max_bytes:
            raise UnusableMonitorState(f"{where}: inflates past {max_bytes} bytes")
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
            out: bytes = reader.read(max_bytes + 1)
    except zstandard.ZstdError as err:
        raise UnusableMonitorState(f"{where}: a broken zstd frame ({err})") from None
    if len(out) > max_bytes:
        raise UnusableMonitorState(f"{where}: inflates past {max_bytes} bytes")
    if size >= 0 and len(out) != size:
        raise UnusableMonitorState(f"{where}: a broken zstd frame ({len(out)} of {size} bytes)")
    return out


class MonitorStateStore(Protocol):
    async def load(self) -> dict[str, Any] | None: ...

    async def save(self, state: Mapping[str, Any]) -> None: ...


def _name(stream: str) -> str:
    return quote(stream, safe="") + ".monitor-state.json"


class LocalMonitorState:
    """The state in a local file, replaced atomically."""

    def __init__(self, directory: Path, stream: str) -> None:
        self.path = directory / _name(stream)

    async def load(self) -> dict[str, Any] | None:
        try:
            data = await asyncio.to_thread(self.path.read_bytes)
        except FileNotFoundError:
            return None
        return decode_state(data, str(self.path))

    async def save(self, state: Mapping[str, Any]) -> None:
        data = encode_state(state)
        await asyncio.to_thread(self._write, data)

    def _write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(self.path, data, prefix=".", suffix=".state-tmp")


class S3MonitorState:
    """The state in one S3 object (``client`` is a boto3 S3 client)."""

    def __init__(self, client: Any, bucket: str, prefix: str, stream: str) -> None:
        self._client = client
        self.bucket = bucket
        self.key = f"{prefix.strip('/')}/{_name(stream)}".lstrip("/")

    async def load(self) -> dict[str, Any] | None:
        def get() -> bytes | None:
            try:
                resp = self._client.get_object(Bucket=self.bucket, Key=self.key)
            except self._client.exceptions.NoSuchKey:
                return None
            data: bytes = resp["Body"].read()
            return data

        return decode_state(await asyncio.to_thread(get), f"s3://{self.bucket}/{self.key}")

    async def save(self, state: Mapping[str, Any]) -> None:
        data = encode_state(state)
        await asyncio.to_thread(
            self._client.put_object,
            Bucket=self.bucket,
            Key=self.key,
            Body=data,
            ContentType="application/json",
        )


def monitor_state_store(
    location: str, stream: str, s3_client: Callable[[], Any]
) -> MonitorStateStore:
    """The store beside the checkpoints at ``location`` (a directory or ``s3://...``);
    ``s3_client()`` makes the S3 client when needed."""
    if not location.startswith("s3://"):
        return LocalMonitorState(Path(location), stream)
    bucket, _, prefix = location[len("s3://") :].partition("/")
    return S3MonitorState(s3_client(), bucket, prefix, stream)


class MonitorStateSaving:
    """Wraps a source: saves ``state()`` before a commit when ``every_s`` has passed since the
    last save, and at :meth:`close`."""

    def __init__(
        self,
        inner: BatchSource,
        store: MonitorStateStore,
        state: Callable[[], Mapping[str, Any]],
        *,
        every_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._store = store
        self._state = state
        self._every = every_s
        self._clock = clock
        self._last = clock()
        self.saves = 0

    def batches(self) -> AsyncIterator[Sequence[RawRecord]]:
        return self._inner.batches()

    async def commit(self, positions: Mapping[tuple[str, str, str], SourcePosition]) -> None:
        if self._clock() - self._last >= self._every:
            await self.save()
        await self._inner.commit(positions)

    async def save(self) -> None:
        await self._store.save(self._state())
        self._last = self._clock()
        self.saves += 1
