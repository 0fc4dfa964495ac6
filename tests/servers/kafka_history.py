"""Recording the history of a Kafka run for :mod:`tests.history`: the input topic as the broker
holds it, the group's committed offsets sampled through the run together with the lake files
that existed at that moment, and the final lake (local directory or S3 bucket)::

    lake = LocalLake(workers.lake)
    async with HistoryRecorder(bootstrap, group, topic, lake) as recorder:
        ...  # run workers, inject faults
    history = await recorder.finish(partitions)   # final committed, end offsets, rows, files
    report = check_history(history.produced, history.rows, recorder.samples, ...)
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow.parquet as pq
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.history import Produced, Report, Sample, StoredRow, check_history, decoder

__all__ = [
    "History",
    "HistoryRecorder",
    "LakeView",
    "LocalLake",
    "S3Lake",
    "cancel_task",
    "committed_offsets",
    "end_offsets",
    "read_topic",
]

_TABLES = ("reviews", "dlq")
_COLUMNS = {
    "reviews": ["review_id", "source_stream", "source_partition", "source_offset"],
    "dlq": ["reason", "source_stream", "source_partition", "source_offset"],
}


async def cancel_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has ended."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class LakeView(Protocol):
    """What the recorder reads of a lake: file paths (relative to the root) under ``reviews/``
    and ``dlq/``, and the rows of those tables."""

    def files(self) -> frozenset[str]: ...

    def rows(self, topic: str) -> list[StoredRow]: ...


def _rows_of(table: str, path: str, data: Any, topic: str) -> list[StoredRow]:
    got = pq.ParquetFile(data).read(columns=_COLUMNS[table]).to_pydict()
    out = []
    for i, stream in enumerate(got["source_stream"]):
        partition = str(got["source_partition"][i])
        if stream != topic or not partition.isdigit():
            continue
        out.append(
            StoredRow(
                table,
                path,
                int(partition),
                int(got["source_offset"][i]),
                review_id=got["review_id"][i] if table == "reviews" else None,
                reason=got["reason"][i] if table == "dlq" else None,
            )
        )
    return out


def _is_lake_file(path: str) -> bool:
    return path.split("/", 1)[0] in _TABLES and path.endswith(".parquet")


@dataclass(frozen=True, slots=True)
class LocalLake:
    """A lake directory."""

    root: Path

    def files(self) -> frozenset[str]:
        out: set[str] = set()
        for table in _TABLES:
            base = self.root / table
            for directory, _dirs, names in os.walk(base):
                rel = Path(directory).relative_to(self.root).as_posix()
                out.update(f"{rel}/{n}" for n in names if n.endswith(".parquet"))
        return frozenset(out)

    def rows(self, topic: str) -> list[StoredRow]:
        out: list[StoredRow] = []
        for path in sorted(self.files()):
            name = path.rpartition("/")[2]
            if name.startswith("."):
                continue  # a temporary file (reported as stray, not read)
            out += _rows_of(path.split("/", 1)[0], path, self.root / path, topic)
        return out


@dataclass(frozen=True, slots=True)
class S3Lake:
    """A lake at ``s3://bucket/prefix``, read with a boto3 client straight from the store
    (not through a fault-injecting proxy)."""

    client: Any
    bucket: str
    prefix: str

    def _keys(self) -> list[str]:
        base = self.prefix.strip("/") + "/" if self.prefix else ""
        keys: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base
        )
        for page in pages:
            keys += [str(o["Key"])[len(base) :] for o in page.get("Contents", [])]
        return keys

    def files(self) -> frozenset[str]:
        return frozenset(k for k in self._keys() if _is_lake_file(k))

    def columns(self, directory: str, names: list[str]) -> dict[str, list[Any]]:
        """``names`` of every row of the Parquet files under ``directory`` (``alerts``, ...),
        temporary files left out."""
        base = self.prefix.strip("/") + "/" if self.prefix else ""
        out: dict[str, list[Any]] = {n: [] for n in names}
        for path in sorted(self._keys()):
            hidden = path.rpartition("/")[2].startswith(".")
            if hidden or not path.startswith(directory + "/") or not path.endswith(".parquet"):
                continue
            body = self.client.get_object(Bucket=self.bucket, Key=base + path)["Body"].read()
            table = pq.read_table(io.BytesIO(body), columns=names)
            for n in names:
                out[n] += table.column(n).to_pylist()
        return out

    def rows(self, topic: str) -> list[StoredRow]:
        base = self.prefix.strip("/") + "/" if self.prefix else ""
        out: list[StoredRow] = []
        for path in sorted(self.files()):
            if path.rpartition("/")[2].startswith("."):
                continue
            body = self.client.get_object(Bucket=self.bucket, Key=base + path)["Body"].read()
            out += _rows_of(path.split("/", 1)[0], path, io.BytesIO(body), topic)
        return out


async def read_topic(bootstrap: str, topic: str, partitions: int) -> list[Produced]:
    """Every record of ``topic`` from the beginning to its end offsets (no group)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=64 * 2**20,
        fetch_max_bytes=128 * 2**20,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[Produced] = []
        deadline = time.monotonic() + 60
        left = {tp for tp in tps if ends[tp] > 0}
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end in 60 s")
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, msgs in batch.items():
                out += [
                    Produced(tp.partition, m.offset, m.key, m.value or b"")
                    for m in msgs
                    if m.offset < ends[tp]
                ]
                if msgs and msgs[-1].offset >= ends[tp] - 1:
                    left.discard(tp)
        return out
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: off for tp, off in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def committed_offsets(admin: AIOKafkaAdminClient, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset of each partition of ``topic`` (those with one)."""
    got = await admin.list_consumer_group_offsets(group)
    return {
        tp.partition: meta.offset
        for tp, meta in got.items()
        if tp.topic == topic and meta is not None and meta.offset >= 0
    }


@dataclass(frozen=True, slots=True)
class History:
    """What :meth:`HistoryRecorder.finish` gathers at the end of a run."""

    produced: list[Produced]
    rows: list[StoredRow]
    samples: list[Sample]
    end_offsets: dict[int, int]
    final_committed: dict[int, int]
    final_files: frozenset[str]

    def check(self, *, max_text_bytes: int = 5_000) -> Report:
        return check_history(
            self.produced,
            self.rows,
            self.samples,
            end_offsets=self.end_offsets,
            final_committed=self.final_committed,
            final_files=self.final_files,
            decode=decoder(max_text_bytes=max_text_bytes),
        )


@dataclass
class HistoryRecorder:
    """Samples the group's committed offsets, then the lake's files, every ``interval_s``
    in a background task (a sample that fails, say while the broker restarts, is skipped)."""

    bootstrap: str
    group: str
    topic: str
    lake: LakeView
    interval_s: float = 0.15
    samples: list[Sample] = field(default_factory=list)
    failed_samples: int = 0
    _task: asyncio.Task[None] | None = None
    _admin: AIOKafkaAdminClient | None = None
    _started: float = 0.0

    async def __aenter__(self) -> HistoryRecorder:
        self._started = time.monotonic()
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
        await self._admin.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def _sample(self) -> Sample:
        if self._admin is None:
            raise ConnectionError("no admin client")
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the cancel that
        # stops the recorder, which then samples for ever while stop() waits for it.
        async with asyncio.timeout(3):
            committed = await committed_offsets(self._admin, self.group, self.topic)
        files = await asyncio.to_thread(self.lake.files)
        return Sample(time.monotonic() - self._started, committed, files)

    async def _run(self) -> None:
        failures = 0
        while self._task is not None:
            began = time.monotonic()
            try:
                self.samples.append(await self._sample())
                failures = 0
            except Exception:  # noqa: BLE001 - the broker may be away; sample again later
                self.failed_samples += 1
                failures += 1
                if failures % 5 == 0:  # a client that lost the broker: start afresh
                    await self._reconnect()
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - began)))

    async def _reconnect(self) -> None:
        old, self._admin = self._admin, None
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
        try:
            async with asyncio.timeout(5):
                await admin.start()
        except Exception:  # noqa: BLE001 - still away; the next failures try again
            with contextlib.suppress(Exception):
                await admin.close()
            return
        self._admin = admin

    def committed_now(self) -> dict[int, int]:
        return dict(self.samples[-1].committed) if self.samples else {}

    async def stop(self) -> None:
        """Stop sampling; safe to call twice."""
        task, self._task = self._task, None
        await cancel_task(task)
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()

    async def finish(self, partitions: int) -> History:
        """One last sample (after the workers stopped), then the topic, its end offsets and
        the final lake."""
        with contextlib.suppress(Exception):
            self.samples.append(await self._sample())
        await self.stop()
        produced = await read_topic(self.bootstrap, self.topic, partitions)
        ends = await end_offsets(self.bootstrap, self.topic, partitions)
        final = dict(self.samples[-1].committed) if self.samples else {}
        files = await asyncio.to_thread(self.lake.files)
        rows = await asyncio.to_thread(self.lake.rows, self.topic)
        return History(produced, rows, list(self.samples), ends, final, files)

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
