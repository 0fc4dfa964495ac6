"""The data lake: one encoder (records -> Parquet files with Hive-style paths), thin writers.

Layout under the lake root::

    reviews/dt=YYYY-MM-DD/product_category=<quoted>/part-<source>-<stream>-<partition>-<first>-<last>.parquet
    dlq/dt=YYYY-MM-DD/reason=<code>/part-...parquet
    alerts/dt=YYYY-MM-DD/part-...parquet

Partition values are URI-quoted (``Fine gauge`` -> ``Fine%20gauge``), the encoding pyarrow and
DuckDB decode and the Glue partitions map back (awswrangler's ``dataset=True`` reads take the
value from the path undecoded; the column inside each file is always plain). A value producers
choose (``product_category``) must never break the lake, so a value that is empty, longer than
:data:`MAX_PARTITION_VALUE_BYTES` quoted, or Hive's NULL marker ``__HIVE_DEFAULT_PARTITION__``
gets a directory named by a readable prefix and a hash (``<prefix>~<16 hex>``; a ``~`` in any
other value is quoted), see :func:`partition_dir_value`. ``.`` and ``..`` are harmless (the
name is ``key=..``). The exact value is the column inside each file, which is what
:mod:`sinks.query` reads for such columns (it takes only ``dt`` and ``reason`` from paths).
S3 and Linux file systems are case-sensitive; on a case-insensitive one, two categories that
differ only in case would share a directory (their files still differ by offsets, and reads
stay exact, but a rewind there can keep a duplicate). The local and the S3 lake share this
encoder and layout; only the :class:`LakeWriter` differs.

File names
----------
A file holds the rows of one directory from one source partition (Kafka partition, Kinesis
shard, replay); its name is that partition and the first and last offsets of its rows
(``first`` and ``last``, zero-padded to 20 digits). Older files named by ``first`` alone still
parse (as files whose rows all precede any later commit).

Buffering
---------
:class:`LakeSink` buffers rows per directory and writes a directory's buffer when it reaches
``max_rows`` rows, ``max_bytes`` bytes (Arrow size in memory) or ``max_age_s`` seconds since
its first row, when all buffers together exceed ``max_total_bytes`` (the largest go first),
and on ``flush()`` / ``close()``. A directory's writes happen one after the other, so for every
(directory, source partition) what is stored is always a prefix of that directory's rows from
that partition: every such row up to the stored files' largest ``last`` offset and none after.
:meth:`LakeSink.durable_seq` is the batch before the oldest row still buffered (or being
written), so the core commits a source position only once every row up to it is stored. The
core calls ``flush()`` whenever the stream has been idle for a second, so that an idle stream
gets committed: a trickle with gaps longer than that still makes one file per directory per gap.

Replay without duplicates
-------------------------
After a crash the source resumes each partition at its committed offset ``C`` and calls
:meth:`LakeSink.rewind` with it (the Kafka source for all the partitions a generation starts
with, in one :meth:`LakeSink.rewind_many` call; the Kinesis source on the first record of a
shard; the replay source at index 0 when it starts, so a rerun of a replay replaces the
earlier run's files of that stream). A rewind lists the file names of ``reviews/`` and
``dlq/`` (once per call, however many partitions it rewinds). What the lake may hold of that
partition then falls in three groups:

* files whose ``first`` >= ``C``: only uncommitted rows, all about to come again. They are
  deleted (``leftovers``), so the replay writes them afresh, cut as it likes.
* files with ``first`` < ``C`` <= ``last`` ("straddlers"): a directory flushed rows of batches
  beyond ``C`` while another directory still buffered an older batch, which held the commit
  back. Their rows below ``C`` are committed and must stay; their rows from ``C`` on come
  again. By the prefix property every row of that directory and partition up to the
  straddler's ``last`` is stored, so the sink remembers ``last`` as the directory's high-water
  mark and drops replayed rows at or below it; rows above it go into new files, whose
  ``first`` is above it. No row is stored twice, none is lost.
* files with ``last`` < ``C``: committed, untouched.

Cutting files at offsets fixed in advance (so a replay would rewrite identical files) does not
work with age limits and idle flushes: where a buffer is cut depends on timing, and so would
the replay's. Hence names that state the range, and a rewind that reads them.

Within one process the same high-water marks make writing a batch twice harmless (its rows
are already buffered or stored). A rewind in a running process (a rebalance hands a partition
back) keeps what this process wrote or buffered of that partition, and skips it on replay:
the core may already have committed, or be about to commit, the batches those rows came from,
so dropping them could lose them. It drops only buffered rows below ``C`` (whoever committed
``C`` stored them) and deletes leftovers only in directories where this process holds no row
of that partition. (Should another worker have written the same partition there meanwhile, the
result is a duplicate, never a loss.)

Pending markers: a rewind that does not list the lake
----------------------------------------------------
Listing ``reviews/`` and ``dlq/`` reads every file name in the lake, so each rewind (each
Kafka rebalance, each Kinesis shard) grows with the lake. With ``markers`` set, the sink also
writes an empty marker object for each file of those tables, *before* the file, at
``_pending/<source>/<stream>/<partition>/<file's path>.pending``, and deletes it once the source
has committed past the file's ``last`` offset (:meth:`LakeSink.committed`). Every file of a
partition whose rows are not all committed therefore has a marker (a marker without its file is
a write that failed or a process that died in between). ``markers="trust"`` rewinds from the
markers of the rewound partitions alone: the same three groups, from a listing as long as what
is uncommitted. ``markers="write"`` writes and deletes markers but still lists the tables; it is
the first step of switching a running deployment over: a worker that trusts markers must never
meet a file that an older worker, writing none, left uncommitted. Once every worker writes
markers (and has rewound its partitions with a listing), the next restart may trust them.
Markers name only uncommitted files, so a rewind to a position before the last commit (a
rerun of a replay, a consumer group's offsets reset backwards) would keep the committed files
it should replace: the replay source asks for a listing (``rewind(..., listing=True)``), and an
offset reset wants ``write`` or ``off`` for the restart that follows it.

Dead letters are partitioned by the day they were received, so a replay crossing midnight
files a re-received dead letter under the next day; alerts depend on the monitors' state and
are not rewound. Both are noted limits of the exactly-once promise, which covers ``reviews``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar
from urllib.parse import quote, unquote

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stream.errors import ServiceUnavailable
from stream.events import (
    ALERT_SCHEMA,
    DEAD_LETTER_SCHEMA,
    LABEL_SCHEMA,
    OTHER_CATEGORY,
    SCORED_SCHEMA,
    Alert,
    Batch,
    DeadLetter,
    ScoredReview,
    SourcePosition,
    scored_table,
    source_offsets,
)
from stream.files import replace_file

if TYPE_CHECKING:  # stream.retry loads botocore: only when a disk fails
    from stream.retry import Backoff

__all__ = [
    "COMPACT_AFTER_BATCHES",
    "MAX_PARTITION_VALUE_BYTES",
    "OTHER_CATEGORY_DIRECTORY",
    "PATH_VALUE_COLUMNS",
    "TABLES",
    "BufferLimits",
    "LakeFile",
    "LakeListener",
    "LakePart",
    "LakeSink",
    "LakeWriter",
    "LocalLakeWriter",
    "encode_alerts",
    "encode_batch",
    "encode_dead_letters",
    "encode_scored",
    "leftovers",
    "merge_parts",
    "parse_file_name",
    "parse_file_range",
    "partition_dir_value",
    "partition_value",
    "to_parquet_bytes",
]

SourceKey = tuple[str, str, str]
_T = TypeVar("_T")
_log = logging.getLogger(__name__)

#: The lake's tables: name -> (top directory, schema, Hive partition columns).
TABLES: dict[str, tuple[str, pa.Schema, tuple[str, ...]]] = {
    "reviews": ("reviews", SCORED_SCHEMA, ("dt", "product_category")),
    "dead_letters": ("dlq", DEAD_LETTER_SCHEMA, ("dt", "reason")),
    "alerts": ("alerts", ALERT_SCHEMA, ("dt",)),
    "labels": ("labels", LABEL_SCHEMA, ("dt",)),
}

_REWOUND_TABLES = ("reviews", "dlq")

#: Where the pending markers live, and their suffix (see "Pending markers" above).
MARKERS = "_pending"
MARKER_SUFFIX = ".pending"
#: ``off``: no markers; ``write``: write and delete them, rewind from a listing of the tables;
#: ``trust``: write them and rewind from them alone.
Markers = Literal["off", "write", "trust"]
#: The longest a commit's deletion of markers may take before it is left to the next rewind.
MARKER_DELETE_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class LakeFile:
    """A file to be written: its path relative to the lake root and its rows."""

    path: str
    table: pa.Table


@dataclass(frozen=True, slots=True)
class LakePart:
    """Rows bound for one lake directory from one source partition, offsets first..last:
    ``num_rows`` rows of ``rows`` from row ``start`` (the batch's rows, grouped). The slice is
    taken only when :attr:`table` is read: a slice's Arrow metadata costs about 2 KB, and a
    worker's buffers hold thousands of parts (about 18 MB of them in a benchmark worker)."""

    directory: str
    key: SourceKey
    first: int
    last: int
    rows: pa.RecordBatch
    nbytes: int = 0  #: Arrow bytes of the rows (estimated for slices of a larger table)
    start: int = 0
    num_rows: int = -1  #: -1: all of ``rows``

    def __post_init__(self) -> None:
        if self.num_rows < 0:
            object.__setattr__(self, "num_rows", self.rows.num_rows - self.start)

    @property
    def table(self) -> pa.RecordBatch:
        """The part's rows (a zero-copy slice)."""
        if not self.is_slice:
            return self.rows
        return self.rows.slice(self.start, self.num_rows)

    @property
    def is_slice(self) -> bool:
        """The rows are some of a larger batch's, whose memory they keep alive."""
        return self.start != 0 or self.num_rows != self.rows.num_rows


class LakeWriter(Protocol):
    """Stores bytes at a path under the lake root, replacing what was there, durably;
    lists the files under a prefix whose names end with ``suffix`` and deletes files (used to
    drop uncommitted leftovers; deleting a missing file is no error)."""

    async def put(self, path: str, data: bytes) -> None: ...

    async def list_files(self, prefix: str, suffix: str = ".parquet") -> list[str]: ...

    async def delete_files(self, paths: Sequence[str]) -> None: ...


class LakeListener(Protocol):
    """Told about each file once it is stored (the Glue catalog adds its partition)."""

    async def file_written(self, path: str) -> None: ...


# -- names -------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _quote(value: str) -> str:
    return quote(value, safe="", errors="surrogatepass")


#: The most bytes a partition value takes in a directory name (``key=`` comes on top). Well
#: under a file system's 255-byte name limit and S3's 1,024-byte key limit together with the
#: rest of the path.
MAX_PARTITION_VALUE_BYTES = 120
#: Hive's (and pyarrow's, DuckDB's, Spark's) name for a NULL partition value.
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
_HASH_CHARS = 16  # 64 bits of SHA-256
#: Partition columns whose directory value is the value itself: the project generates them
#: (a date, a reason code), so readers may take them from the path and skip directories.
#: Any other partition value (``product_category`` comes from producers) may be shortened or
#: escaped in its directory name: read it from the column inside the files.
PATH_VALUE_COLUMNS = frozenset({"dt", "reason"})


@functools.lru_cache(maxsize=4096)
def partition_dir_value(value: str) -> str:
    """The directory name of a partition value: URI-quoted (``Fine gauge`` ->
    ``Fine%20gauge``), with ``~`` quoted too (``%7E``) and the dots of ``.`` and ``..``
    (``%2E``), so that a ``~`` marks the other kind
    of name: ``<quoted prefix>~<hash>`` for a value that is empty, too long
    (:data:`MAX_PARTITION_VALUE_BYTES`) or Hive's NULL marker. Distinct values always get
    distinct names; the exact value is the column inside the files."""
    quoted = _quote(value).replace("~", "%7E")
    if quoted in (".", ".."):  # never a name a path resolves to the directory or its parent
        quoted = quoted.replace(".", "%2E")
    if quoted and len(quoted) <= MAX_PARTITION_VALUE_BYTES and value.upper() != _HIVE_NULL:
        return quoted
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    prefix = quoted[: MAX_PARTITION_VALUE_BYTES - _HASH_CHARS - 1]
    cut = prefix.rfind("%", len(prefix) - 2)  # never end inside a %XX escape
    if cut >= 0:
        prefix = prefix[:cut]
    return f"{prefix}~{digest}"


#: The ``product_category`` directory of the reviews of every category outside the
#: configured list (when the sink is given one): a producer's categories are free text, and one
#: directory (so one file, one PUT and one Glue partition) per distinct value would let a
#: careless or hostile producer make as many as it sends reviews. The value itself stays in
#: the files' column; a catalog partition of this directory reads ``other``, as the monitors
#: and the metrics name those categories. No value's own name is this one (see
#: :func:`partition_dir_value`: a ``~`` there is followed by a hash).
OTHER_CATEGORY_DIRECTORY = "~" + OTHER_CATEGORY


def partition_value(name: str) -> str | None:
    """The value of a directory name that :func:`partition_dir_value` made (``other`` for
    :data:`OTHER_CATEGORY_DIRECTORY`), or None when the name is shortened (the value is then
    only in the files)."""
    if name == OTHER_CATEGORY_DIRECTORY:
        return OTHER_CATEGORY
    return None if "~" in name else unquote(name)


def file_name(key: SourceKey, first: int, last: int) -> str:
    """``part-<source>-<stream>-<partition>-<first>-<last>.parquet`` (parts URI-quoted)."""
    parts = "-".join(_quote(p).replace("-", "%2D") for p in key)
    return f"part-{parts}-{first:020d}-{last:020d}.parquet"


def parse_file_range(name: str) -> tuple[SourceKey, int, int | None] | None:
    """The source partition, first and last offsets a lake file name encodes (``last`` is
    None for the older names that carry only ``first``)."""
    if not (name.startswith("part-") and name.endswith(".parquet")):
        return None
    parts = name[len("part-") : -len(".parquet")].split("-")
    if len(parts) not in (4, 5) or not all(p.isdigit() for p in parts[3:]):
        return None
    source, stream, partition = (unquote(p) for p in parts[:3])
    last = int(parts[4]) if len(parts) == 5 else None
    return (source, stream, partition), int(parts[3]), last


def parse_file_name(name: str) -> tuple[SourceKey, int] | None:
    """The (source, stream, partition) key and first offset a lake file name encodes."""
    parsed = parse_file_range(name)
    return None if parsed is None else (parsed[0], parsed[1])


def marker_prefix(key: SourceKey) -> str:
    """Where the pending markers of source partition ``key`` are."""
    return f"{MARKERS}/" + "/".join(_quote(p) for p in key) + "/"


def marker_path(key: SourceKey, path: str) -> str:
    """The pending marker of the lake file ``path`` of source partition ``key``."""
    return marker_prefix(key) + path + MARKER_SUFFIX


def marked_path(key: SourceKey, marker: str) -> str | None:
    """The lake file a marker of ``key`` stands for (None for another name)."""
    prefix = marker_prefix(key)
    if not (marker.startswith(prefix) and marker.endswith(MARKER_SUFFIX)):
        return None
    return marker[len(prefix) : -len(MARKER_SUFFIX)]


def _last_offset(path: str) -> int | None:
    parsed = parse_file_range(path.rpartition("/")[2])
    if parsed is None:
        return None
    return parsed[1] if parsed[2] is None else parsed[2]


def leftovers(paths: Iterable[str], key: SourceKey, from_offset: int) -> list[str]:
    """Files of source partition ``key`` that start at or after ``from_offset``: they hold
    only records after the committed position, which the source is about to deliver again."""
    out = []
    for path in paths:
        parsed = parse_file_name(path.rsplit("/", 1)[-1])
        if parsed is not None and parsed[0] == key and parsed[1] >= from_offset:
            out.append(path)
    return out


def _high_water(paths: Iterable[str], key: SourceKey, before: int) -> dict[str, int]:
    """Per directory, the largest ``last`` offset of ``key``'s files starting before
    ``before`` (what survives a rewind to ``before``)."""
    out: dict[str, int] = {}
    for path in paths:
        directory, _, name = path.rpartition("/")
        parsed = parse_file_range(name)
        if parsed is None or parsed[0] != key or parsed[1] >= before:
            continue
        last = parsed[1] if parsed[2] is None else parsed[2]
        out[directory] = max(out.get(directory, last), last)
    return out


# -- the encoder -------------------------------------------------------------------------------

_SOURCE_COLUMNS = ("source", "source_stream", "source_partition")


def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[npt.NDArray[np.int64], list[Any]]:
    """Each row's index into the column's distinct values, and those values (None last)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = pc.dictionary_encode(column)
    values = encoded.dictionary.to_pylist()
    indices = encoded.indices
    if indices.null_count:
        indices = pc.fill_null(indices, len(values))
    return np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int64), [*values, None]


def _group(
    table: pa.Table,
    by: Sequence[str],
    directory: Callable[[Sequence[Any]], str],
    at: SourcePosition | None = None,
    grouping: Mapping[str, pa.ChunkedArray | pa.Array] | None = None,
) -> list[LakePart]:
    """One part per (directory, source partition), rows in arrival order, parts in order of
    their first row; ``directory`` names a group from its ``by`` values (taken from
    ``grouping`` in place of the table's column where it has one: distinct values must name
    distinct directories). Rows carry their source position in the ``source*`` columns, or
    all share position ``at`` (alerts).

    Columnar: the key columns are dictionary-encoded into one group number per row, a stable
    argsort of those puts each group's rows together, one ``take`` moves them, and each part
    is a zero-copy slice of that record batch. Python work is per group, never per row."""
    n = table.num_rows
    if n == 0:
        return []
    keys = list(by) if at is not None else [*by, *_SOURCE_COLUMNS]
    columns = grouping or {}
    encoded = [_codes(columns[k] if k in columns else table.column(k)) for k in keys]
    group = np.zeros(n, dtype=np.int64)
    span = 1
    for indices, values in encoded:
        if span * len(values) >= 2**62:  # renumber the groups so far: 0..n-1
            group = np.unique(group, return_inverse=True)[1].reshape(n)
            span = n
        group = group * len(values) + indices
        span *= len(values)
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.diff(group[order], prepend=-1))
    ends = np.append(starts[1:], n)
    first_rows = order[starts]  # each group's earliest row (the sort is stable)
    [batch] = table.combine_chunks().to_batches()
    if len(starts) > 1:
        batch = batch.take(pa.array(order))
        nbytes = batch.get_total_buffer_size()  # freshly allocated: exactly its rows
    else:
        nbytes = batch.nbytes
    if at is not None:
        offsets = np.full(n, at.offset, np.int64 if at.offset < 2**63 else object)
    else:
        offsets = source_offsets(table)[order]
    lows = np.minimum.reduceat(offsets, starts).tolist()
    highs = np.maximum.reduceat(offsets, starts).tolist()
    per_row = nbytes / n
    out: list[tuple[int, LakePart]] = []
    for g, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        row = int(first_rows[g])
        head = [values[indices[row]] for indices, values in encoded]
        key: SourceKey = at.key if at is not None else (head[-3], head[-2], head[-1])
        rows = end - start
        part = LakePart(
            directory(head[: len(by)]),
            key,
            lows[g],
            highs[g],
            batch,
            round(per_row * rows),
            start=start,
            num_rows=rows,
        )
        out.append((row, part))
    out.sort(key=lambda item: item[0])
    return [part for _, part in out]


def _review_directory(values: Sequence[Any]) -> str:
    dt, category = values  # category None: one outside the configured list
    name = OTHER_CATEGORY_DIRECTORY if category is None else partition_dir_value(category)
    return f"reviews/dt={dt}/product_category={name}"


def scored_parts(
    scored: Sequence[ScoredReview], categories: Collection[str] | None = None
) -> list[LakePart]:
    """Scored reviews -> one part per (dt, product_category, source partition). A
    :class:`~stream.events.ScoredBatch` brings its Arrow table; nothing is rebuilt row by
    row. With ``categories``, the reviews of any other category share the directory
    :data:`OTHER_CATEGORY_DIRECTORY`: they are grouped as one category (one part per
    directory and source partition, which the sink's replay marks rely on), and each keeps
    its own value in the rows."""
    table = scored_table(scored)
    grouping: dict[str, pa.ChunkedArray | pa.Array] = {}
    if categories is not None:
        column = table.column("product_category")
        known = pc.is_in(column, value_set=pa.array(sorted(categories), pa.string()))
        grouping["product_category"] = pc.if_else(known, column, pa.scalar(None, pa.string()))
    return _group(table, ("dt", "product_category"), _review_directory, grouping=grouping)


def _rows_table(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=schema)


def dead_letter_parts(dead: Sequence[DeadLetter]) -> list[LakePart]:
    """Dead letters -> one part per (dt, reason, source partition), raw bytes kept (as far
    as the dead letter kept them, with the whole record's size and hash)."""
    if not dead:
        return []
    table = _rows_table(
        [
            {
                "reason": d.reason.value,
                "detail": d.detail,
                "raw": d.raw,
                "raw_size": d.raw_size,
                "raw_sha256": d.raw_sha256,
                "received_at": d.received_at,
                "source": d.position.source,
                "source_stream": d.position.stream,
                "source_partition": d.position.partition,
                "source_offset": str(d.position.offset),
                "dt": d.received_at.date().isoformat(),
            }
            for d in dead
        ],
        DEAD_LETTER_SCHEMA,
    )
    return _group(table, ("dt", "reason"), lambda v: f"dlq/dt={v[0]}/reason={v[1]}")


def alert_parts(alerts: Sequence[Alert], first: SourcePosition) -> list[LakePart]:
    """Alerts raised by one batch -> one part per dt, at the batch's first position."""
    if not alerts:
        return []
    table = _rows_table(
        [
            {
                "alert_id": a.alert_id,
                "name": a.name,
                "status": a.status,
                "category": a.category,
                "summary": a.summary,
                "window_start": a.window_start,
                "window_end": a.window_end,
                "raised_at": a.raised_at,
                "severity": a.severity.value,
                "evidence_json": json.dumps(a.evidence, sort_keys=True, default=str),
                "dt": a.raised_at.date().isoformat(),
            }
            for a in alerts
        ],
        ALERT_SCHEMA,
    )
    return _group(table, ("dt",), lambda v: f"alerts/dt={v[0]}", at=first)


def encode_batch(batch: Batch, categories: Collection[str] | None = None) -> list[LakePart]:
    """Every part of a batch: scored reviews, dead letters and (when it has a position)
    the alerts it raised; ``categories``: see :func:`scored_parts`."""
    parts = scored_parts(batch.scored, categories) + dead_letter_parts(batch.dead)
    if batch.alerts:  # only then its first position (a pass over the batch's positions)
        first = batch.first_position
        if first is not None:
            parts += alert_parts(batch.alerts, first)
    return parts


def merge_parts(parts: Sequence[LakePart]) -> LakeFile:
    """Parts of one directory and source partition -> one file named by their range."""
    if not parts:
        raise ValueError("merge_parts needs at least one part")
    directory, key = parts[0].directory, parts[0].key
    if any(p.directory != directory or p.key != key for p in parts):
        raise ValueError("parts of one file must share directory and source partition")
    table = pa.Table.from_batches([p.table for p in parts])
    first = min(p.first for p in parts)
    last = max(p.last for p in parts)
    return LakeFile(f"{directory}/{file_name(key, first, last)}", table)


def encode_scored(scored: Sequence[ScoredReview]) -> list[LakeFile]:
    """Scored reviews -> one Parquet table per (dt, product_category, source partition)."""
    return [merge_parts([p]) for p in scored_parts(scored)]


def encode_dead_letters(dead: Sequence[DeadLetter]) -> list[LakeFile]:
    """Dead letters -> one table per (dt, reason, source partition), raw bytes kept."""
    return [merge_parts([p]) for p in dead_letter_parts(dead)]


def encode_alerts(alerts: Sequence[Alert], first: SourcePosition) -> list[LakeFile]:
    """Alerts raised by one batch -> one table per dt, named after the batch's position."""
    return [merge_parts([p]) for p in alert_parts(alerts, first)]


#: Columns whose values are (nearly) all distinct: written plain, without first trying a
#: dictionary that Parquet would drop again.
_DISTINCT_COLUMNS = frozenset(
    {
        "review_id",
        "review_text",
        "event_time",
        "p_negative",
        "p_neutral",
        "p_positive",
        "source_offset",
        "raw",
        "detail",
        "alert_id",
        "summary",
        "evidence_json",
    }
)


def _column_compression(schema: pa.Schema, compression: str) -> dict[str, str]:
    """``compression`` for the columns it shrinks, none for the others. A dictionary-encoded
    column is small already and floats barely compress, yet each compressed column chunk
    costs a codec context: with zstd on all 23 columns of a review, a file of 100 rows took
    1.34 ms to encode against 0.59 ms this way, for 2% more bytes (3-5% at 1,000-4,000
    rows)."""
    return {
        f.name: compression
        if f.name in _DISTINCT_COLUMNS and not pa.types.is_floating(f.type)
        else "none"
        for f in schema
    }


def to_parquet_bytes(table: pa.Table, compression: str = "zstd") -> bytes:
    """Encode one table as a Parquet file (the only place the project encodes Parquet): one
    chunk per column, dictionaries only for columns that repeat, ``compression`` only for
    the columns it shrinks (:func:`_column_compression`)."""
    sink = pa.BufferOutputStream()  # Arrow's own: a Python file object takes the GIL per write
    dictionary = [name for name in table.column_names if name not in _DISTINCT_COLUMNS]
    pq.write_table(
        table.combine_chunks(),
        sink,
        compression=_column_compression(table.schema, compression),
        use_dictionary=dictionary,
    )
    data: bytes = sink.getvalue().to_pybytes()
    return data


def _after(part: LakePart, mark: int) -> LakePart | None:
    """The rows of ``part`` with offsets above ``mark`` (None when there are none)."""
    if part.first > mark:
        return part
    if part.last <= mark:
        return None
    rows = part.table
    offsets = source_offsets(rows)
    keep = offsets > mark
    kept = offsets[keep]
    size = part.nbytes * len(kept) // max(1, len(offsets))
    table = rows.filter(pa.array(keep))
    return LakePart(part.directory, part.key, int(kept.min()), int(kept.max()), table, size)


# -- writers -----------------------------------------------------------------------------------


_TMP_PREFIX = ".tmp-"
_TMP_SUFFIX = ".partial"
#: When this process loaded the module: a temporary file named with our pid and changed since
#: is ours (a file of a dead process that had the same pid is older).
_PROCESS_STARTED = time.time()


def _tmp_owner(name: str) -> int | None:
    """The process id in a temporary file's name (``.tmp-<pid>-<random>.partial``)."""
    pid = name[len(_TMP_PREFIX) :].partition("-")[0]
    return int(pid) if pid.isdigit() else None


def _ours(tmp: Path) -> bool:
    """Whether a temporary file named with this process's pid was written by this process: it
    changed after the process started. ``_in_flight`` alone misses a file between its creation
    and its registration (a window another thread's sweep can fall into), so a sweep by a
    second writer of the process could delete a file the first is writing."""
    try:
        return tmp.stat().st_mtime >= _PROCESS_STARTED
    except FileNotFoundError:
        return True  # renamed into place meanwhile: nothing to remove


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalLakeWriter:
    """Writes lake files under a local directory, atomically (temp file + rename).

    Temporary files are named ``.tmp-<pid>-<random>.partial``, so ``*.parquet`` globs (DuckDB's
    ``read_parquet('**/*.parquet')``, pyarrow datasets) never read a half-written file; those
    a killed process left behind are removed when a writer first touches the lake (the ones of
    a live process are left alone: two workers may share a lake). Errors a disk recovers from
    (:data:`stream.retry.TRANSIENT_ERRNOS`: read-only, no permission, full, over quota, I/O)
    are retried with :func:`stream.retry.retrying` for as long as the writer runs, so a full
    or read-only disk makes the sink wait (backpressure) rather than fail the batch;
    :meth:`stop` ends the waiting (the pending call raises the last error). ``retries``
    counts them. ``backoff`` (a :class:`stream.retry.Backoff`) sets the waits; without one,
    the default waits capped at ``max_backoff_s``."""

    #: Temporary files this process is writing now (a stale one may carry a reused pid).
    _in_flight: ClassVar[set[Path]] = set()

    def __init__(
        self,
        root: Path,
        *,
        backoff: Backoff | None = None,
        max_backoff_s: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.root = root
        self._backoff = backoff
        self._max_backoff_s = max_backoff_s
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._stop: asyncio.Event | None = None
        self._swept = False
        self.retries = 0
        self.stale_removed = 0

    def stop(self) -> None:
        """Stop waiting for the disk: the pending and later calls that fail raise. Idempotent;
        call it from the event loop's thread."""
        self._stopping().set()

    def _stopping(self) -> asyncio.Event:
        if self._stop is None:
            self._stop = asyncio.Event()
        return self._stop

    async def put(self, path: str, data: bytes) -> None:
        await self._retrying(f"writing {path}", functools.partial(self._put, path, data))

    async def list_files(self, prefix: str, suffix: str = ".parquet") -> list[str]:
        call = functools.partial(self._list, prefix, suffix)
        return await self._retrying(f"listing {prefix}", call)

    async def delete_files(self, paths: Sequence[str]) -> None:
        call = functools.partial(self._delete, list(paths))
        await self._retrying(f"deleting {len(paths)} files", call)

    async def _retrying(self, what: str, call: Callable[[], _T]) -> _T:
        if not self._swept:
            self._swept = True
            self.stale_removed += await asyncio.to_thread(self._sweep)
        try:
            return await asyncio.to_thread(call)
        except OSError as err:
            first = err
        return await self._retry(what, call, first)

    async def _retry(self, what: str, call: Callable[[], _T], first: OSError) -> _T:
        """Retry a failed call while the disk's error is a passing one (the shared policy,
        imported only now: it loads botocore)."""
        from stream.retry import Backoff, RetryStopped, retriable_os_error, retrying

        if not retriable_os_error(first) or self._stopping().is_set():
            raise first
        self.retries += 1
        _log.warning("%s failed (%s); retrying", what, first)

        def count(err: BaseException, delay: float) -> None:
            self.retries += 1

        try:
            return await retrying(
                lambda: asyncio.to_thread(call),
                what=what,
                backoff=self._backoff or Backoff(max_s=self._max_backoff_s),
                is_retriable=retriable_os_error,
                stop=self._stopping(),
                rng=self._rng.random,
                on_retry=count,
                log=_log,
            )
        except RetryStopped as stopped:
            # Stopped while the disk was still failing: that failure is the answer.
            if isinstance(stopped.__cause__, OSError):
                raise stopped.__cause__ from None
            raise

    def _sweep(self) -> int:
        """Remove the temporary files that dead processes left in the lake's tables (best
        effort: they are invisible to readers anyway)."""
        removed = 0
        for directory, _schema, _keys in TABLES.values():
            base = self.root / directory
            try:
                for tmp in base.rglob(f"{_TMP_PREFIX}*") if base.is_dir() else ():
                    owner = _tmp_owner(tmp.name)
                    if owner == os.getpid():
                        if tmp.resolve() in LocalLakeWriter._in_flight or _ours(tmp):
                            continue  # another writer of this process is writing it
                    elif owner is not None and _alive(owner):
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
                        removed += 1
            except OSError as err:
                _log.warning("removing stale temporary files under %s failed: %s", base, err)
        return removed

    def _list(self, prefix: str, suffix: str) -> list[str]:
        base = self.root / prefix
        if not base.exists():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob(f"*{suffix}")
            if not p.name.startswith(_TMP_PREFIX)
        )

    def _delete(self, paths: list[str]) -> None:
        for path in paths:
            (self.root / path).unlink(missing_ok=True)

    def _put(self, path: str, data: bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        replace_file(
            target,
            data,
            prefix=f"{_TMP_PREFIX}{os.getpid()}-",
            suffix=_TMP_SUFFIX,
            in_flight=LocalLakeWriter._in_flight,
        )


# -- the sink ----------------------------------------------------------------------------------


#: A buffered part is a slice of its batch's rows, grouped (one ``take`` per batch, see
#: :func:`_group`), and a slice keeps the whole batch's memory alive: a directory that gets one
#: row a batch would hold every batch until it is written. So the parts a buffer got over this
#: many batches are copied into batches of their own (one per source partition, see
#: :meth:`_Buffer.compact`): besides the buffers' own bytes, the sink keeps at most the last
#: ``COMPACT_AFTER_BATCHES`` batches alive.
COMPACT_AFTER_BATCHES = 8


@dataclass(frozen=True, slots=True)
class BufferLimits:
    """When a directory's buffer is written: ``max_rows`` rows, ``max_bytes`` (Arrow bytes in
    memory) or ``max_age_s`` seconds after its first row; ``max_total_bytes`` bounds all
    buffers together (the largest are written first; besides them the sink holds at most
    :data:`COMPACT_AFTER_BATCHES` recent batches). ``max_concurrent_puts`` bounds how many
    directories are written at once."""

    max_rows: int = 50_000
    max_bytes: int = 64 * 2**20
    max_age_s: float = 60.0
    max_total_bytes: int = 256 * 2**20
    max_concurrent_puts: int = 4

    def __post_init__(self) -> None:
        for name in ("max_rows", "max_bytes", "max_age_s", "max_total_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_concurrent_puts < 1:
            raise ValueError("max_concurrent_puts must be at least 1")


@dataclass(slots=True)
class _Buffer:
    opened: float
    entries: list[tuple[int, LakePart]] = field(default_factory=list)  # (batch seq, part)
    rows: int = 0
    nbytes: int = 0
    #: the lowest batch seq among the entries, kept as they come: ``durable_seq`` asks for it
    #: after every batch, and a buffer may hold thousands of entries
    first_seq: int = sys.maxsize
    #: the lowest batch seq among the entries that are slices of a larger batch
    slice_seq: int = sys.maxsize

    def add(self, seq: int, part: LakePart) -> None:
        self.entries.append((seq, part))
        self.rows += part.num_rows
        self.nbytes += part.nbytes
        self.first_seq = min(self.first_seq, seq)
        if part.is_slice:
            self.slice_seq = min(self.slice_seq, seq)

    def _take(self) -> list[tuple[int, LakePart]]:
        """Empty the buffer; returns what it held (to add back what stays)."""
        entries, self.entries, self.rows, self.nbytes = self.entries, [], 0, 0
        self.first_seq = self.slice_seq = sys.maxsize
        return entries

    def compact(self) -> None:
        """Copy each run of consecutive slices of one source partition into one batch of its
        own, so that the larger batches they were cut from can be freed. A source partition's
        rows keep their order (its file is its parts in order); the lowest seq stays. The
        buffer changes only once every copy is made: a copy that fails (memory) leaves it as
        it was."""
        by_key: dict[SourceKey, list[tuple[int, LakePart]]] = defaultdict(list)
        for seq, part in self.entries:
            by_key[part.key].append((seq, part))
        kept: list[tuple[int, LakePart]] = []
        for entries in by_key.values():
            run: list[tuple[int, LakePart]] = []
            for seq, part in entries:
                if part.is_slice:
                    run.append((seq, part))
                    continue
                kept += _copied(run)
                run = []
                kept.append((seq, part))
            kept += _copied(run)
        self._take()
        for seq, part in kept:
            self.add(seq, part)

    def drop_below(self, key: SourceKey, offset: int) -> None:
        """Forget ``key``'s rows below ``offset``."""
        for seq, part in self._take():
            if part.key == key and "source_offset" in part.rows.schema.names:
                kept = _keep_from(part, offset)
                if kept is not None:
                    self.add(seq, kept)
            else:
                self.add(seq, part)

    def drop_keys(self, keys: Collection[SourceKey]) -> None:
        """Forget the parts of these source partitions (stored already)."""
        for seq, part in self._take():
            if part.key not in keys:
                self.add(seq, part)


def _copied(run: list[tuple[int, LakePart]]) -> list[tuple[int, LakePart]]:
    """A run of slices of one directory and source partition (``(seq, part)``, in order) as
    one part whose rows are a batch of their own, at the run's lowest seq (none for none)."""
    if not run:
        return []
    parts = [part for _, part in run]
    rows = pa.concat_batches([part.table for part in parts])
    first = parts[0]
    merged = LakePart(
        first.directory,
        first.key,
        min(p.first for p in parts),
        max(p.last for p in parts),
        rows,
        rows.get_total_buffer_size(),
    )
    return [(min(seq for seq, _ in run), merged)]


def _keep_from(part: LakePart, offset: int) -> LakePart | None:
    return _after(part, offset - 1)


class LakeSink:
    """The pipeline's lake output: encode each batch (in a worker thread) into per-directory
    buffers, write a buffer when it is full or old, and report what is durable.

    The writer decides where bytes go (local directory, S3); encoding is the same for all.
    ``listeners`` hear of each stored file (the Glue catalog registers its partition).
    ``guard``, when given, is called before each file is stored and before a rewind deletes
    leftovers; it raises to refuse (a Kafka worker whose group lease lapsed,
    :class:`stream.lease.StallLease`), and the refusal is the write's error. ``markers``:
    whether the sink writes pending markers and rewinds from them (module docstring).
    ``categories``: the product categories with a directory of their own (None: every one;
    see :data:`OTHER_CATEGORY_DIRECTORY`).
    """

    def __init__(
        self,
        writer: LakeWriter,
        *,
        compression: str = "zstd",
        limits: BufferLimits | None = None,
        listeners: Sequence[LakeListener] = (),
        clock: Callable[[], float] = time.monotonic,
        guard: Callable[[], None] | None = None,
        markers: Markers = "off",
        categories: Collection[str] | None = None,
    ) -> None:
        if markers not in ("off", "write", "trust"):
            raise ValueError(f"markers must be off, write or trust, got {markers!r}")
        self._writer = writer
        self._guard = guard
        self._markers = markers
        #: per source partition, the markers of stored files not yet committed: (last, marker)
        self._marked: dict[SourceKey, list[tuple[int, str]]] = defaultdict(list)
        self._compression = compression
        self._categories = None if categories is None else frozenset(categories)
        self._limits = limits or BufferLimits()
        self._listeners = tuple(listeners)
        self._clock = clock
        self._buffers: dict[str, _Buffer] = {}
        self._writing: list[int] = []  # first seqs of buffers being written
        self._high: dict[tuple[str, SourceKey], int] = {}  # stored or buffered, per dir+key
        self._mine: set[tuple[str, SourceKey]] = set()  # where this process buffered rows
        self._accepted = -1
        self._lock = asyncio.Lock()
        self._closed = False
        self.files_written = 0
        self.bytes_written = 0
        self.rows_written = 0

    @property
    def writer(self) -> LakeWriter:
        return self._writer

    @property
    def buffered_rows(self) -> int:
        return sum(b.rows for b in self._buffers.values())

    @property
    def buffered_bytes(self) -> int:
        return sum(b.nbytes for b in self._buffers.values())

    def durable_seq(self) -> int:
        pending = [b.first_seq for b in self._buffers.values()] + self._writing
        if pending:
            return max(-1, min(pending) - 1)
        return self._accepted

    async def write(self, batch: Batch) -> None:
        parts = await asyncio.to_thread(encode_batch, batch, self._categories)
        async with self._lock:
            now = self._clock()
            for part in parts:
                slot = (part.directory, part.key)
                mark = self._high.get(slot)
                fresh = part if mark is None else _after(part, mark)
                if fresh is None:
                    continue  # a replayed batch: these rows are already buffered or stored
                buffer = self._buffers.get(part.directory)
                if buffer is None:
                    buffer = self._buffers[part.directory] = _Buffer(opened=now)
                buffer.add(batch.seq, fresh)
                self._mine.add(slot)
                self._high[slot] = max(fresh.last, mark if mark is not None else fresh.last)
            self._accepted = max(self._accepted, batch.seq)
            for buffer in self._buffers.values():
                if buffer.slice_seq <= batch.seq - COMPACT_AFTER_BATCHES:
                    buffer.compact()
            await self._write_due(now)

    async def _write_due(self, now: float) -> None:
        lim = self._limits
        due = [
            d
            for d, b in self._buffers.items()
            if b.rows >= lim.max_rows
            or b.nbytes >= lim.max_bytes
            or now - b.opened >= lim.max_age_s
        ]
        total = self.buffered_bytes - sum(self._buffers[d].nbytes for d in due)
        if total > lim.max_total_bytes:
            rest = sorted(
                (d for d in self._buffers if d not in due),
                key=lambda d: self._buffers[d].nbytes,
                reverse=True,
            )
            for d in rest:
                if total <= lim.max_total_bytes:
                    break
                due.append(d)
                total -= self._buffers[d].nbytes
        await self._write_buffers(due)

    async def _write_buffers(self, directories: Sequence[str]) -> None:
        """Write these directories' buffers, a few at a time; on failure the rows go back."""
        if not directories:
            return
        gate = asyncio.Semaphore(self._limits.max_concurrent_puts)
        taken = [(d, self._buffers.pop(d)) for d in directories]
        seqs = [b.first_seq for _, b in taken]
        self._writing.extend(seqs)

        async def one(directory: str, buffer: _Buffer) -> None:
            async with gate:
                await self._write_buffer(directory, buffer)

        try:
            results = await asyncio.gather(*(one(d, b) for d, b in taken), return_exceptions=True)
        finally:
            for seq in seqs:
                self._writing.remove(seq)
        failed = [(d, b) for (d, b), r in zip(taken, results, strict=True) if r is not None]
        for directory, buffer in failed:
            self._restore(directory, buffer)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    def _restore(self, directory: str, buffer: _Buffer) -> None:
        """Put back the parts of a buffer whose write failed (before any newer rows)."""
        if not buffer.entries:
            return
        newer = self._buffers.pop(directory, None)
        if newer is not None:
            for seq, part in newer.entries:
                buffer.add(seq, part)
        self._buffers[directory] = buffer

    async def _write_buffer(self, directory: str, buffer: _Buffer) -> None:
        by_key: dict[SourceKey, list[LakePart]] = defaultdict(list)
        for _seq, part in buffer.entries:
            by_key[part.key].append(part)
        done: list[SourceKey] = []
        try:
            for key, parts in by_key.items():
                path, data, rows = await asyncio.to_thread(self._encode, parts)
                if self._guard is not None:
                    self._guard()
                if self._markers != "off" and path.partition("/")[0] in _REWOUND_TABLES:
                    marker = marker_path(key, path)
                    await self._writer.put(marker, b"")  # before the file: see the docstring
                    self._marked[key].append((max(p.last for p in parts), marker))
                    if self._guard is not None:
                        self._guard()  # again: the lease may have lapsed while the marker went
                await self._writer.put(path, data)
                done.append(key)
                self.files_written += 1
                self.bytes_written += len(data)
                self.rows_written += rows
                for listener in self._listeners:
                    await listener.file_written(path)
        except BaseException:
            # Keep only what was not stored; a retry writes the same files again.
            buffer.drop_keys(done)
            raise

    def _encode(self, parts: list[LakePart]) -> tuple[str, bytes, int]:
        merged = merge_parts(parts)
        return merged.path, to_parquet_bytes(merged.table, self._compression), merged.table.num_rows

    async def flush(self) -> None:
        """Write every buffer now."""
        async with self._lock:
            await self._write_buffers(list(self._buffers))

    async def close(self) -> None:
        """Write what is buffered; safe to call any number of times."""
        if self._closed:
            return
        await self.flush()
        self._closed = True

    async def rewind(self, position: SourcePosition, *, listing: bool = False) -> int:
        """The source restarts ``position``'s partition at ``position.offset`` (the first
        record it delivers again). Deletes that partition's uncommitted leftovers (outside the
        directories where this process holds rows of it) and remembers what stays, so the
        replay adds no duplicate (see the module docstring). Returns how many files were
        deleted. ``listing``: list the lake even when trusting the markers, for a position that
        may lie before the last commit (a rerun of a replay), whose files no marker names."""
        return await self.rewind_many([position], listing=listing)

    async def committed(self, positions: Mapping[SourceKey, SourcePosition]) -> None:
        """The source committed ``positions`` (each the last record it covers): delete the
        markers of the files whose rows are all committed now. A deletion that fails or takes
        longer than :data:`MARKER_DELETE_TIMEOUT_S` (a store retrying an outage) is logged and
        left to the next rewind, which deletes the markers of committed files it finds: the
        commits after this one do not wait for it."""
        done: list[str] = []
        for key, position in positions.items():
            marked = self._marked.get(key)
            if marked:
                done += [m for last, m in marked if last <= position.offset]
                self._marked[key] = [(last, m) for last, m in marked if last > position.offset]
        self._forget_committed(positions)
        if done:
            try:
                await asyncio.wait_for(self._writer.delete_files(done), MARKER_DELETE_TIMEOUT_S)
            except (TimeoutError, OSError, ServiceUnavailable) as err:  # a marker left is harmless
                _log.warning("deleting %d committed files' markers failed: %s", len(done), err)

    def _forget_committed(self, positions: Mapping[SourceKey, SourcePosition]) -> None:
        """Forget the directories whose rows of a committed source partition are all
        committed: the source never delivers those offsets again, so their high-water mark
        skips nothing, and no leftover of this process's can be there. Without this a
        long-running worker kept a mark for every day and category it ever wrote (a producer
        sending a new category a review grew it without end)."""
        stale = [
            slot
            for slot, last in self._high.items()
            if (position := positions.get(slot[1])) is not None and last <= position.offset
        ]
        for slot in stale:
            del self._high[slot]
            self._mine.discard(slot)

    async def rewind_many(
        self, positions: Sequence[SourcePosition], *, listing: bool = False
    ) -> int:
        """:meth:`rewind` for several partitions that restart together (a Kafka generation's),
        with one listing of the lake for all of them: a listing reads every file name of the
        rewound tables, so one per partition made a rebalance as many times longer. With
        ``markers="trust"`` (and not ``listing``) it lists only the rewound partitions'
        markers."""
        async with self._lock:
            for position in positions:
                for buffer in self._buffers.values():
                    buffer.drop_below(position.key, position.offset)
            for directory in [d for d, b in self._buffers.items() if not b.entries]:
                del self._buffers[directory]
            if not positions:
                return 0
            # lake file -> (its partition, its marker), for the rewound partitions
            marks: dict[str, tuple[SourceKey, str]] = {}
            if self._markers != "off":
                for position in positions:
                    prefix = marker_prefix(position.key)
                    for marker in await self._writer.list_files(prefix, MARKER_SUFFIX):
                        path = marked_path(position.key, marker)
                        if path is not None:
                            marks[path] = (position.key, marker)
            paths: list[str] = []
            if self._markers == "trust" and not listing:
                paths = sorted(marks)
            else:
                for prefix in _REWOUND_TABLES:
                    paths += await self._writer.list_files(prefix)
            # each name parsed once, not once per rewound partition
            rewound = {position.key for position in positions}
            by_key: dict[SourceKey, list[str]] = defaultdict(list)
            for path in paths:
                parsed = parse_file_name(path.rpartition("/")[2])
                if parsed is not None and parsed[0] in rewound:
                    by_key[parsed[0]].append(path)
            found = [
                p
                for position in positions
                for p in leftovers(by_key[position.key], position.key, position.offset)
                if (p.rpartition("/")[0], position.key) not in self._mine
            ]
            if found:
                if self._guard is not None:
                    self._guard()
                await self._writer.delete_files(found)
            gone = set(found)
            for position in positions:
                key = position.key
                kept = [p for p in by_key[key] if p not in gone]
                for directory, last in _high_water(kept, key, position.offset).items():
                    slot = (directory, key)
                    self._high[slot] = max(last, self._high.get(slot, last))
            if marks:
                await self._delete_markers(positions, marks, gone)
            _log.info(
                "rewound %d source partitions from %s: %d leftover files deleted",
                len(positions),
                "their pending markers"
                if self._markers == "trust" and not listing
                else "a listing of the lake",
                len(found),
            )
            return len(found)

    async def _delete_markers(
        self,
        positions: Sequence[SourcePosition],
        marks: dict[str, tuple[SourceKey, str]],
        gone: set[str],
    ) -> None:
        """After a rewind deleted the leftovers ``gone``: delete their markers and those of
        committed files, and keep the straddlers' to delete once they are committed. Only after
        the files: a marker must not go before its file."""
        offsets = {p.key: p.offset for p in positions}
        stale: list[str] = []
        for path, (key, marker) in marks.items():
            last = _last_offset(path)
            if path in gone or last is None or last < offsets[key]:
                stale.append(marker)
            elif (last, marker) not in self._marked[key]:
                self._marked[key].append((last, marker))
        if stale:
            await self._writer.delete_files(stale)
