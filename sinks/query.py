"""SQL over the lake: DuckDB locally (a directory or S3), Athena when configured.

The SQL sees four views, ``reviews``, ``dead_letters``, ``alerts`` and ``labels`` (human
labels from the review loop), with the lake's own schemas. DuckDB reads them as pyarrow
datasets: ``dt`` and ``reason`` from the Hive paths (a filter on them skips whole
directories), ``product_category`` from the column in the files
(its directory name may be shortened or escaped; a filter on it uses the files' statistics).
On S3 through pyarrow's S3 filesystem with the lake session's endpoint and credentials.
(DuckDB's ``httpfs`` extension would read S3 itself, but it is downloaded at run time, and no
build of it exists offline for the DuckDB in use; pyarrow's S3 client ships inside the wheel.)
A view of a table that has no file yet is empty, with its schema.

Athena runs the same SQL in the Glue database that :mod:`sinks.catalog` keeps up to date
(its tables are named like the views).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import awswrangler as wr
import boto3
import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from sinks.lake import PATH_VALUE_COLUMNS, TABLES
from sinks.s3 import EndpointSession, parse_s3_url

__all__ = ["AthenaLake", "DuckDBLake", "LakeQuery", "lake_datasets", "s3_filesystem"]


class LakeQuery(Protocol):
    """Answers one SQL statement over the lake's views."""

    def query(self, sql: str) -> pa.Table: ...


def s3_filesystem(session: boto3.Session) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem with the session's credentials, region and S3 endpoint."""
    creds = session.get_credentials()
    frozen = creds.get_frozen_credentials() if creds is not None else None
    options: dict[str, Any] = {"region": session.region_name or "us-east-1"}
    if frozen is not None:
        options.update(
            access_key=frozen.access_key,
            secret_key=frozen.secret_key,
            session_token=frozen.token,
        )
    endpoint = session.endpoints.get("s3") if isinstance(session, EndpointSession) else None
    if endpoint:
        parts = urlsplit(endpoint)
        options.update(endpoint_override=parts.netloc + parts.path, scheme=parts.scheme or "https")
    return pafs.S3FileSystem(**options)


def lake_datasets(root: str, filesystem: pafs.FileSystem) -> dict[str, ds.Dataset | pa.Table]:
    """The lake's tables under ``root`` (a path in ``filesystem``), by view name."""
    out: dict[str, ds.Dataset | pa.Table] = {}
    for view, (directory, schema, partition_cols) in TABLES.items():
        base = f"{root.rstrip('/')}/{directory}" if root else directory
        info = filesystem.get_file_info(base)
        if info.type != pafs.FileType.Directory:
            out[view] = schema.empty_table()
            continue
        # Only partition values the project generates come from paths; the others (a product
        # category may be shortened or escaped in its directory name) from the files.
        from_path = [schema.field(c) for c in partition_cols if c in PATH_VALUE_COLUMNS]
        partitioning = ds.partitioning(pa.schema(from_path), flavor="hive")
        out[view] = ds.dataset(
            base,
            schema=schema,
            format="parquet",
            filesystem=filesystem,
            partitioning=partitioning,
        )
    return out


class DuckDBLake:
    """In-process SQL over the lake's Parquet files. ``location`` is a local directory or
    ``s3://bucket/prefix`` (then ``session`` gives endpoint and credentials)."""

    def __init__(self, location: str, *, session: boto3.Session | None = None) -> None:
        self.location = location
        self._session = session

    def _tables(self) -> Mapping[str, ds.Dataset | pa.Table]:
        if self.location.startswith("s3://"):
            bucket, prefix = parse_s3_url(self.location)
            fs = s3_filesystem(self._session or boto3.Session())
            return lake_datasets(f"{bucket}/{prefix}" if prefix else bucket, fs)
        local = pafs.LocalFileSystem()
        root = pafs.LocalFileSystem().normalize_path(self.location)
        return lake_datasets(str(root), local)

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection (the caller closes it) with the views registered
        over one listing of the lake's files: several queries, one listing."""
        con = duckdb.connect(":memory:")
        try:
            for name, data in self._tables().items():
                con.register(name, data)
        except BaseException:
            con.close()
            raise
        return con

    def query(self, sql: str) -> pa.Table:
        con = self.connect()
        try:
            result: pa.Table = con.sql(sql).to_arrow_table()
            return result
        finally:
            con.close()


class AthenaLake:
    """SQL through Amazon Athena over the Glue tables ``reviews``, ``dead_letters`` and
    ``alerts`` of ``database``."""

    def __init__(
        self,
        database: str,
        *,
        session: boto3.Session,
        workgroup: str = "primary",
        output_location: str | None = None,
    ) -> None:
        self.database = database
        self._session = session
        self._workgroup = workgroup
        self._output = output_location

    def query(self, sql: str) -> pa.Table:
        frame = wr.athena.read_sql_query(
            sql,
            database=self.database,
            workgroup=self._workgroup,
            s3_output=self._output,
            ctas_approach=False,
            boto3_session=self._session,
        )
        return pa.Table.from_pandas(frame, preserve_index=False)
