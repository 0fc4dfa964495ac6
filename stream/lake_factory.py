"""Builds the lake's parts from :class:`~stream.settings.Settings`: the sink (local or S3, with
the Glue catalog when configured) and the query engine.

``lake_path`` decides: a directory, or ``s3://bucket/prefix``. The encoder, the layout and the
buffering are the same for both; only the writer differs. Both writers wait out a store or a
disk that is down (retrying with backoff); to stop a sink from waiting (say on a second
SIGTERM), call ``stop()`` on its writer::

    sink = build_lake_sink(settings)
    if isinstance(sink.writer, S3LakeWriter | LocalLakeWriter):
        sink.writer.stop()
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sinks.lake import BufferLimits, LakeListener, LakeSink, LakeWriter, LocalLakeWriter
from stream.errors import ConfigurationError
from stream.settings import Settings

if TYPE_CHECKING:  # imported where used: a local lake never loads boto3 or awswrangler
    from sinks.catalog import GlueCatalog
    from sinks.query import DuckDBLake, LakeQuery
    from sinks.s3 import Backoff, EndpointSession

__all__ = [
    "build_catalog",
    "build_duckdb_lake",
    "build_lake_query",
    "build_lake_sink",
    "build_lake_writer",
    "is_s3_lake",
    "lake_session",
]


def is_s3_lake(settings: Settings) -> bool:
    return settings.lake_path.startswith("s3://")


def _backoff(settings: Settings) -> Backoff:
    from sinks.s3 import Backoff

    return Backoff(max_s=settings.lake.retry_max_backoff_s)


def lake_session(settings: Settings) -> EndpointSession:
    """The boto3 session of every lake call (S3, Glue, Athena), endpoints from the settings."""
    from sinks.s3 import s3_session

    lake = settings.lake
    return s3_session(
        region=lake.region,
        profile=lake.profile,
        s3_endpoint_url=lake.s3_endpoint_url,
        glue_endpoint_url=lake.glue_endpoint_url,
        athena_endpoint_url=lake.athena_endpoint_url,
        backoff=_backoff(settings),
    )


def _location(settings: Settings) -> tuple[str, str]:
    from sinks.s3 import parse_s3_url

    try:
        return parse_s3_url(settings.lake_path)
    except ValueError as err:
        raise ConfigurationError(
            f"lake_path {settings.lake_path!r}: {err}; use s3://bucket/prefix or a directory"
        ) from err


def build_lake_writer(settings: Settings, session: EndpointSession | None = None) -> LakeWriter:
    if not is_s3_lake(settings):
        return LocalLakeWriter(
            Path(settings.lake_path), max_backoff_s=settings.lake.retry_max_backoff_s
        )
    from sinks.s3 import Encryption, S3LakeWriter

    bucket, prefix = _location(settings)
    lake = settings.lake
    return S3LakeWriter(
        bucket,
        prefix,
        session=session or lake_session(settings),
        encryption=Encryption(lake.sse, lake.kms_key_id),
        backoff=_backoff(settings),
    )


def build_catalog(settings: Settings, session: EndpointSession | None = None) -> GlueCatalog | None:
    """The Glue catalog of an S3 lake when ``lake.glue_database`` is set."""
    if settings.lake.glue_database is None:
        return None
    if not is_s3_lake(settings):
        raise ConfigurationError("lake.glue_database needs an S3 lake (lake_path=s3://...)")
    from sinks.catalog import GlueCatalog

    bucket, prefix = _location(settings)
    return GlueCatalog(
        settings.lake.glue_database,
        bucket=bucket,
        prefix=prefix,
        session=session or lake_session(settings),
        compression=settings.lake.compression,
    )


def build_lake_sink(settings: Settings, guard: Callable[[], None] | None = None) -> LakeSink:
    """The pipeline's lake sink as the settings describe it (``guard``: see
    :class:`sinks.lake.LakeSink`)."""
    lake = settings.lake
    session = lake_session(settings) if is_s3_lake(settings) else None
    catalog = build_catalog(settings, session)
    listeners: list[LakeListener] = [catalog] if catalog is not None else []
    return LakeSink(
        build_lake_writer(settings, session),
        compression=lake.compression,
        limits=BufferLimits(
            max_rows=lake.buffer_max_rows,
            max_bytes=lake.buffer_max_bytes,
            max_age_s=lake.buffer_max_age_s,
            max_total_bytes=lake.buffer_max_total_bytes,
            max_concurrent_puts=lake.max_concurrent_puts,
        ),
        listeners=listeners,
        guard=guard,
        markers=lake.rewind_markers,
        categories=settings.categories,
    )


def build_lake_query(settings: Settings, *, athena: bool = False) -> LakeQuery:
    """DuckDB over the lake's files, or Athena over the Glue tables (``athena=True``)."""
    from sinks.query import AthenaLake

    if athena:
        if settings.lake.glue_database is None:
            raise ConfigurationError("querying through Athena needs lake.glue_database")
        return AthenaLake(
            settings.lake.glue_database,
            session=lake_session(settings),
            workgroup=settings.lake.athena_workgroup,
            output_location=settings.lake.athena_output,
        )
    return build_duckdb_lake(settings)


def build_duckdb_lake(settings: Settings) -> DuckDBLake:
    """DuckDB over the lake's files: a local directory, or S3 with the lake's session."""
    from sinks.query import DuckDBLake

    if is_s3_lake(settings):
        _location(settings)
        return DuckDBLake(settings.lake_path, session=lake_session(settings))
    return DuckDBLake(settings.lake_path)
