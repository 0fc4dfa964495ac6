"""Outputs: the lake (encoder and writers) and alert notifiers."""

from sinks.alerts import JsonlAlertSink, alert_line
from sinks.lake import (
    LakeFile,
    LakeSink,
    LakeWriter,
    LocalLakeWriter,
    encode_alerts,
    encode_dead_letters,
    encode_scored,
    to_parquet_bytes,
)

__all__ = [
    "JsonlAlertSink",
    "LakeFile",
    "LakeSink",
    "LakeWriter",
    "LocalLakeWriter",
    "alert_line",
    "encode_alerts",
    "encode_dead_letters",
    "encode_scored",
    "to_parquet_bytes",
]
