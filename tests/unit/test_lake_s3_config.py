"""S3 lake configuration without a server: settings, the factory, encryption arguments, which
errors are retried, backoff, per-session endpoints."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from pydantic import ValidationError

from sinks.lake import LocalLakeWriter
from sinks.query import DuckDBLake
from sinks.s3 import Backoff, Encryption, S3LakeWriter, parse_s3_url, s3_session
from stream.errors import ConfigurationError
from stream.lake_factory import build_lake_query, build_lake_sink
from stream.retry import retriable
from stream.settings import LakeSettings, Settings


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTIMENT_LAKE_PATH", "s3://bucket/some/prefix/")
    monkeypatch.setenv("SENTIMENT_LAKE__SSE", "aws:kms")
    monkeypatch.setenv("SENTIMENT_LAKE__KMS_KEY_ID", "alias/lake")
    monkeypatch.setenv("SENTIMENT_LAKE__BUFFER_MAX_ROWS", "1000")
    monkeypatch.setenv("SENTIMENT_LAKE__S3_ENDPOINT_URL", "http://127.0.0.1:8333")
    settings = Settings()
    assert settings.lake.sse == "aws:kms" and settings.lake.kms_key_id == "alias/lake"
    sink = build_lake_sink(settings)
    writer = sink.writer
    assert isinstance(writer, S3LakeWriter)
    assert (writer.bucket, writer.prefix) == ("bucket", "some/prefix")
    assert writer.url("reviews/x.parquet") == "s3://bucket/some/prefix/reviews/x.parquet"


def test_a_kms_key_needs_sse_kms() -> None:
    with pytest.raises(ValidationError, match="kms_key_id"):
        LakeSettings(kms_key_id="alias/x")
    with pytest.raises(ValueError, match="kms_key_id"):
        Encryption("AES256", "alias/x")


def test_a_local_lake_and_its_query(tmp_path: Path) -> None:
    settings = Settings(lake_path=str(tmp_path))
    assert isinstance(build_lake_sink(settings).writer, LocalLakeWriter)
    assert isinstance(build_lake_query(settings), DuckDBLake)
    with pytest.raises(ConfigurationError, match="glue_database"):
        build_lake_query(settings, athena=True)
    with pytest.raises(ConfigurationError, match="S3 lake"):
        build_lake_sink(settings.model_copy(update={"lake": LakeSettings(glue_database="db")}))


def test_s3_urls() -> None:
    assert parse_s3_url("s3://b") == ("b", "")
    assert parse_s3_url("s3://b/p/q/") == ("b", "p/q")
    with pytest.raises(ValueError, match="s3://"):
        parse_s3_url("/local/dir")


def test_encryption_arguments() -> None:
    assert Encryption().s3_additional_kwargs() == {}
    assert Encryption("AES256").s3_additional_kwargs() == {"ServerSideEncryption": "AES256"}
    assert Encryption("aws:kms", "k-1").s3_additional_kwargs() == {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "k-1",
    }


def _client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "PutObject")


def test_only_outages_are_retried() -> None:
    assert retriable(EndpointConnectionError(endpoint_url="http://x"))
    assert retriable(_client_error("SlowDown", 503))
    assert retriable(_client_error("InternalError", 500))
    assert not retriable(_client_error("AccessDenied", 403))
    assert not retriable(_client_error("NoSuchBucket", 404))
    assert not retriable(ValueError("bug"))


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    rng = random.Random(1)
    b = Backoff(initial_s=0.5, max_s=4.0, jitter=0.5)
    delays = [b.delay(i, rng.random) for i in range(8)]
    assert all(0.25 <= d <= 0.5 for d in delays[:1])
    assert all(2.0 <= d <= 4.0 for d in delays[4:])


def test_the_session_points_its_clients_at_the_endpoints() -> None:
    session = s3_session(
        region="us-east-1",
        s3_endpoint_url="http://127.0.0.1:1",
        glue_endpoint_url="http://127.0.0.1:2",
        access_key_id="k",
        secret_access_key="s",  # noqa: S106 - nothing is sent
        backoff=Backoff(attempts_per_call=2),
    )
    s3 = session.client("s3")
    glue = session.client(service_name="glue")
    assert s3.meta.endpoint_url == "http://127.0.0.1:1"
    assert glue.meta.endpoint_url == "http://127.0.0.1:2"
    assert s3.meta.config.retries["total_max_attempts"] == 2
    other = session.client("s3", endpoint_url="http://127.0.0.1:3")
    assert other.meta.endpoint_url == "http://127.0.0.1:3"
