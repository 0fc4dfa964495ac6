"""The data lake: one encoder (records -> Parquet files with Hive-style paths), thin writers.

Layout under the lake root::

    reviews/dt=YYYY-MM-DD/product_category=<quoted>/part-<source>-<stream>-<partition>-<offset>.parquet
    dlq/dt=YYYY-MM-DD/reason=<code>/part-...parquet
    alerts/dt=YYYY-MM-DD/part-...parquet

File names derive from the source position of the first record of that source partition in
the batch, so replaying a batch after a crash overwrites its own file instead of adding a
duplicate. Partition values are URI-quoted (``Fine gauge`` -> ``Fine%20gauge``), the encoding
pyarrow and Athena's Hive partitions read back.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.parquet as pq

from stream.events import (
    ALERT_SCHEMA,
    DEAD_LETTER_SCHEMA,
    SCORED_SCHEMA,
    Alert,
    Batch,
    DeadLetter,
    ScoredReview,
    SourcePosition,
)

__all__ = [
    "LakeFile",
    "LakeSink",
    "LakeWriter",
    "LocalLakeWriter",
    "encode_alerts",
    "encode_dead_letters",
    "encode_scored",
    "to_parquet_bytes",
]


@dataclass(frozen=True, slots=True)
class LakeFile:
    """A file to be written: its path relative to the lake root and its rows."""

    path: str
    table: pa.Table


class LakeWriter(Protocol):
    """Stores bytes at a path under the lake root, replacing what was there, durably;
    lists the files under a prefix and deletes files (used to drop uncommitted leftovers)."""

    async def put(self, path: str, data: bytes) -> None: ...

    async def list_files(self, prefix: str) -> list[str]: ...

    async def delete_files(self, paths: Sequence[str]) -> None: ...


def parse_file_name(name: str) -> tuple[tuple[str, str, str], int] | None:
    """The (source, stream, partition) key and first offset a lake file name encodes."""
    if not (name.startswith("part-") and name.endswith(".parquet")):
        return None
    parts = name[len("part-") : -len(".parquet")].split("-")
    if len(parts) != 4 or not parts[3].isdigit():
        return None
    source, stream, partition = (unquote(p) for p in parts[:3])
    return (source, stream, partition), int(parts[3])


def leftovers(paths: Iterable[str], key: tuple[str, str, str], from_offset: int) -> list[str]:
    """Files of source partition ``key`` that start at or after ``from_offset``.

    When a source rewinds a partition to its committed offset (restart, rebalance), files
    starting there or later hold only uncommitted records that will be written again; the
    sink deletes them first, so a replay with different batch boundaries leaves no duplicate.
    """
    out = []
    for path in paths:
        parsed = parse_file_name(path.rsplit("/", 1)[-1])
        if parsed is not None and parsed[0] == key and parsed[1] >= from_offset:
            out.append(path)
    return out


def _quote(value: str) -> str:
    return quote(value, safe="")


def _file_name(first: SourcePosition) -> str:
    parts = (first.source, first.stream, first.partition)
    return "part-" + "-".join(_quote(p).replace("-", "%2D") for p in parts) + (
        f"-{first.offset:020d}.parquet"
    )


def _group_by_source(
    items: Iterable[tuple[str, SourcePosition, int]],
) -> dict[tuple[str, tuple[str, str, str]], list[int]]:
    """Group row indexes by (directory, source partition); each group becomes one file."""
    groups: dict[tuple[str, tuple[str, str, str]], list[int]] = defaultdict(list)
    for directory, position, index in items:
        groups[(directory, position.key)].append(index)
    return groups


def _take(columns: dict[str, list[Any]], rows: list[int]) -> dict[str, list[Any]]:
    return {name: [values[i] for i in rows] for name, values in columns.items()}


def encode_scored(scored: Sequence[ScoredReview]) -> list[LakeFile]:
    """Scored reviews -> one Parquet table per (dt, product_category, source partition)."""
    cols: dict[str, list[Any]] = {name: [] for name in SCORED_SCHEMA.names}
    keyed: list[tuple[str, SourcePosition, int]] = []
    for i, s in enumerate(scored):
        ev, pos = s.event, s.position
        dt = ev.event_time.date().isoformat()
        cols["review_id"].append(ev.review_id)
        cols["product_id"].append(ev.product_id)
        cols["product_category"].append(ev.product_category)
        cols["review_text"].append(ev.review_text)
        cols["channel"].append(ev.channel)
        cols["event_time"].append(ev.event_time)
        cols["rating"].append(ev.rating)
        cols["language"].append(ev.language)
        cols["customer_segment"].append(ev.customer_segment)
        cols["sentiment"].append(s.sentiment)
        cols["sentiment_label"].append(s.sentiment_label)
        cols["p_negative"].append(s.p_negative)
        cols["p_neutral"].append(s.p_neutral)
        cols["p_positive"].append(s.p_positive)
        cols["model_name"].append(s.model_name)
        cols["model_version"].append(s.model_version)
        cols["scored_at"].append(s.scored_at)
        cols["endpoint_latency_ms"].append(s.endpoint_latency_ms)
        cols["source"].append(pos.source)
        cols["source_stream"].append(pos.stream)
        cols["source_partition"].append(pos.partition)
        cols["source_offset"].append(str(pos.offset))
        cols["dt"].append(dt)
        directory = f"reviews/dt={dt}/product_category={_quote(ev.product_category)}"
        keyed.append((directory, pos, i))
    return _files(cols, keyed, SCORED_SCHEMA, lambda i: scored[i].position)


def encode_dead_letters(dead: Sequence[DeadLetter]) -> list[LakeFile]:
    """Dead letters -> one table per (dt, reason, source partition), raw bytes kept."""
    cols: dict[str, list[Any]] = {name: [] for name in DEAD_LETTER_SCHEMA.names}
    keyed: list[tuple[str, SourcePosition, int]] = []
    for i, d in enumerate(dead):
        dt = d.received_at.date().isoformat()
        cols["reason"].append(d.reason.value)
        cols["detail"].append(d.detail)
        cols["raw"].append(d.raw)
        cols["received_at"].append(d.received_at)
        cols["source"].append(d.position.source)
        cols["source_stream"].append(d.position.stream)
        cols["source_partition"].append(d.position.partition)
        cols["source_offset"].append(str(d.position.offset))
        cols["dt"].append(dt)
        keyed.append((f"dlq/dt={dt}/reason={d.reason.value}", d.position, i))
    return _files(cols, keyed, DEAD_LETTER_SCHEMA, lambda i: dead[i].position)


def encode_alerts(alerts: Sequence[Alert], first: SourcePosition) -> list[LakeFile]:
    """Alerts raised by one batch -> one table per dt, named after the batch's position."""
    cols: dict[str, list[Any]] = {name: [] for name in ALERT_SCHEMA.names}
    keyed: list[tuple[str, SourcePosition, int]] = []
    for i, a in enumerate(alerts):
        dt = a.raised_at.date().isoformat()
        for name in ("alert_id", "name", "status", "category", "summary"):
            cols[name].append(getattr(a, name))
        for name in ("window_start", "window_end", "raised_at"):
            cols[name].append(getattr(a, name))
        cols["severity"].append(a.severity.value)
        cols["evidence_json"].append(json.dumps(a.evidence, sort_keys=True, default=str))
        cols["dt"].append(dt)
        keyed.append((f"alerts/dt={dt}", first, i))
    return _files(cols, keyed, ALERT_SCHEMA, lambda _i: first)


def _files(
    cols: dict[str, list[Any]],
    keyed: list[tuple[str, SourcePosition, int]],
    schema: pa.Schema,
    position_of: Callable[[int], SourcePosition],
) -> list[LakeFile]:
    out: list[LakeFile] = []
    for (directory, _key), rows in _group_by_source(keyed).items():
        first = min((position_of(i) for i in rows), key=lambda p: p.offset)
        table = pa.table(_take(cols, rows), schema=schema)
        out.append(LakeFile(f"{directory}/{_file_name(first)}", table))
    return out


def to_parquet_bytes(table: pa.Table, compression: str = "zstd") -> bytes:
    """Encode one table as a Parquet file (the only place the project encodes Parquet)."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=compression)
    return buf.getvalue()


class LocalLakeWriter:
    """Writes lake files under a local directory, atomically (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def put(self, path: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, path, data)

    async def list_files(self, prefix: str) -> list[str]:
        return await asyncio.to_thread(self._list, prefix)

    def _list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.exists():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*.parquet")
            if not p.name.startswith(".tmp-")
        )

    async def delete_files(self, paths: Sequence[str]) -> None:
        await asyncio.to_thread(self._delete, list(paths))

    def _delete(self, paths: list[str]) -> None:
        for path in paths:
            (self.root / path).unlink(missing_ok=True)

    def _put(self, path: str, data: bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".parquet")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class LakeSink:
    """The pipeline's lake output: encode a batch (in a worker thread), then put each file.

    The writer decides where bytes go (local directory, S3); encoding is the same for all.
    """

    def __init__(self, writer: LakeWriter, *, compression: str = "zstd") -> None:
        self._writer = writer
        self._compression = compression
        self.files_written = 0
        self.bytes_written = 0
        self._durable = -1

    async def write(self, batch: Batch) -> None:
        encoded = await asyncio.to_thread(self._encode, batch)
        for path, data in encoded:
            await self._writer.put(path, data)
            self.files_written += 1
            self.bytes_written += len(data)
        self._durable = batch.seq

    def durable_seq(self) -> int:
        return self._durable

    async def rewind(self, position: SourcePosition) -> int:
        """The source restarts ``position``'s partition at ``position.offset``: delete files
        of that partition starting there or later (uncommitted leftovers). Returns how many."""
        found: list[str] = []
        for prefix in ("reviews", "dlq"):
            found += leftovers(await self._writer.list_files(prefix), position.key, position.offset)
        if found:
            await self._writer.delete_files(found)
        return len(found)

    def _encode(self, batch: Batch) -> list[tuple[str, bytes]]:
        files = encode_scored(batch.scored) + encode_dead_letters(batch.dead)
        first = batch.first_position
        if batch.alerts and first is not None:
            files += encode_alerts(batch.alerts, first)
        return [(f.path, to_parquet_bytes(f.table, self._compression)) for f in files]

    async def flush(self) -> None:
        """Every write is already durable when it returns: nothing is buffered."""

    async def close(self) -> None:
        """Nothing to release; safe to call any number of times."""
