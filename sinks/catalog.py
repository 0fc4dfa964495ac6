"""The Glue Data Catalog for the S3 lake: tables with the lake's explicit schemas, and each Hive
partition added as its first file lands.

Tables (named like the query views): ``reviews`` partitioned by ``dt`` and
``product_category``, ``dead_letters`` by ``dt`` and ``reason``, ``alerts`` by ``dt``. The
partition columns are also stored inside the files (so a file read alone is complete); the
catalog lists them only as partition keys, as Hive requires.

Partitions are registered explicitly rather than through partition projection: directory names
carry URI-quoted values (``product_category=Fine%20gauge``), or a shortened name for a value
that is too long or escaped (:func:`sinks.lake.partition_dir_value`; the value is then read from
the file), and an explicit partition maps the plain value to its real location, where a
projection template would insert the plain value into the path. The reviews of categories
outside the configured list share ``product_category=~other``
(:data:`sinks.lake.OTHER_CATEGORY_DIRECTORY`), registered as ``other``: through the catalog
they read ``other``, as in the monitors and the metrics; the files keep each one's value.
Registering is outside the durability path: a failure is logged and retried with the next file
of that partition, and :meth:`GlueCatalog.sync` registers every partition the lake holds (after
an outage, or for a lake written without a catalog).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import awswrangler as wr
import boto3
import pyarrow as pa
from botocore.exceptions import BotoCoreError, ClientError

from sinks.lake import TABLES, partition_value

__all__ = ["GlueCatalog", "athena_type", "glue_columns"]

_log = logging.getLogger(__name__)


def athena_type(dtype: pa.DataType) -> str:
    """The Athena/Hive type of an Arrow type used in the lake's schemas."""
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return "binary"
    if pa.types.is_timestamp(dtype):
        return "timestamp"
    if pa.types.is_date32(dtype):
        return "date"
    if pa.types.is_boolean(dtype):
        return "boolean"
    ints = {8: "tinyint", 16: "smallint", 32: "int", 64: "bigint"}
    if pa.types.is_integer(dtype):
        return ints[dtype.bit_width]
    if pa.types.is_float32(dtype):
        return "float"
    if pa.types.is_float64(dtype):
        return "double"
    raise ValueError(f"no Athena type for {dtype}")


def glue_columns(
    schema: pa.Schema, partitions: Iterable[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """(columns, partition keys) of a table, in schema order, as Athena types."""
    keys = list(partitions)
    columns = {f.name: athena_type(f.type) for f in schema if f.name not in keys}
    return columns, {k: athena_type(schema.field(k).type) for k in keys}


def _partition_of(path: str) -> tuple[str, str, list[str | None]] | None:
    """``reviews/dt=X/product_category=Y/part-...parquet`` -> (view, directory, values); a
    value is None where the directory name is shortened (the value is in the file)."""
    directory, _, _name = path.rpartition("/")
    top, *segments = directory.split("/")
    for view, (table_dir, _schema, keys) in TABLES.items():
        if table_dir != top:
            continue
        pairs = [s.partition("=") for s in segments]
        if [k for k, _, _ in pairs] != list(keys):
            return None
        return view, directory, [partition_value(v) for _, _, v in pairs]
    return None


class GlueCatalog:
    """Keeps the Glue tables of a lake at ``s3://bucket/prefix``. Also a lake listener: give
    it to :class:`~sinks.lake.LakeSink` and each new partition is added as it lands."""

    def __init__(
        self,
        database: str,
        *,
        bucket: str,
        prefix: str = "",
        session: boto3.Session,
        compression: str = "zstd",
    ) -> None:
        self.database = database
        self._base = (
            f"s3://{bucket}/{prefix.strip('/')}/" if prefix.strip("/") else f"s3://{bucket}/"
        )
        self._session = session
        self._compression = None if compression == "none" else compression
        self._known: set[str] = set()
        self._ready = False
        self._lock = asyncio.Lock()

    def ensure_tables(self) -> None:
        """Create the database and any missing table (existing tables keep their partitions)."""
        wr.catalog.create_database(self.database, exist_ok=True, boto3_session=self._session)
        for view, (directory, schema, keys) in TABLES.items():
            if wr.catalog.does_table_exist(self.database, view, boto3_session=self._session):
                continue
            columns, partitions = glue_columns(schema, keys)
            wr.catalog.create_parquet_table(
                database=self.database,
                table=view,
                path=f"{self._base}{directory}/",
                columns_types=columns,
                partitions_types=partitions,
                compression=self._compression,
                description=f"sentiment monitor lake: {view}",
                boto3_session=self._session,
            )
        self._ready = True

    def add_partitions(self, paths: Iterable[str]) -> int:
        """Register the partitions of these lake files (paths under the lake root) that are not
        known yet; returns how many were new to this catalog object."""
        if not self._ready:
            self.ensure_tables()
        new: dict[str, dict[str, list[str]]] = {}
        for path in paths:
            found = _partition_of(path)
            if found is None or found[1] in self._known:
                continue
            view, directory, values = found
            plain = self._values(view, path, values)
            if "" in plain:  # Hive (and Glue) cannot hold an empty partition value
                _log.warning("not registering %s in Glue: an empty partition value", directory)
                self._known.add(directory)
                continue
            new.setdefault(view, {})[f"{self._base}{directory}/"] = plain
        for view, partitions in new.items():
            wr.catalog.add_parquet_partitions(
                database=self.database,
                table=view,
                partitions_values=partitions,
                compression=self._compression,
                boto3_session=self._session,
            )
            self._known.update(loc[len(self._base) : -1] for loc in partitions)
        return sum(len(p) for p in new.values())

    def _values(self, view: str, path: str, values: list[str | None]) -> list[str]:
        """The partition values of a file, read from the file where its directory name is
        shortened (a long or escaped category)."""
        if all(v is not None for v in values):
            return [v for v in values if v is not None]
        keys = TABLES[view][2]
        missing = [k for k, v in zip(keys, values, strict=True) if v is None]
        table = wr.s3.read_parquet(
            f"{self._base}{path}", columns=missing, boto3_session=self._session
        )
        found = {k: str(table[k].iloc[0]) for k in missing}
        return [found[k] if v is None else v for k, v in zip(keys, values, strict=True)]

    async def file_written(self, path: str) -> None:
        """A lake file landed: register its partition if it is new (errors are logged)."""
        if _partition_of(path) is None or path.rpartition("/")[0] in self._known:
            return
        try:
            async with self._lock:  # the sink writes several directories at once
                await asyncio.to_thread(self.add_partitions, [path])
        except (BotoCoreError, ClientError, wr.exceptions.ServiceApiError) as err:
            _log.warning("registering the partition of %s in Glue failed: %s", path, err)

    def sync(self) -> int:
        """Register every partition the lake holds that Glue lacks (a repair after outages);
        returns how many were added."""
        if not self._ready:
            self.ensure_tables()
        base = len(self._base)
        for view in TABLES:
            self._known.update(loc[base:].rstrip("/") for loc in self.partitions(view))
        files = wr.s3.list_objects(self._base, suffix=".parquet", boto3_session=self._session)
        return self.add_partitions(str(f)[base:] for f in files)

    def partitions(self, view: str) -> dict[str, list[str]]:
        """The partitions Glue holds for a table: location -> values."""
        found: dict[str, list[str]] = wr.catalog.get_parquet_partitions(
            self.database, view, boto3_session=self._session
        )
        return found
