"""pytest fixtures for the lake's real servers: SeaweedFS (S3) and moto_server (Glue, KMS,
S3 with SSE-KMS), one of each per session. Import them into a test module with
``from tests.servers.lake_fixtures import *``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from sinks.s3 import Backoff, EndpointSession, s3_session
from stream.settings import LakeSettings, Settings
from tests.servers.moto import MotoServer
from tests.servers.seaweedfs import SeaweedFS

__all__ = [
    "FAST",
    "glue_lake_settings",
    "moto_server",
    "s3_bucket",
    "seaweedfs",
    "session_of",
]

#: retries kept short: a test wants the answer, not the patience of a production writer
FAST = Backoff(initial_s=0.1, max_s=0.5, attempts_per_call=1, connect_timeout_s=2)


def session_of(server: SeaweedFS | MotoServer) -> EndpointSession:
    """S3 (and Glue) clients of the lake pointed at a test server, with :data:`FAST` retries."""
    endpoints = dict.fromkeys(("s3_endpoint_url", "glue_endpoint_url"), server.endpoint_url)
    keys = {"access_key_id": server.access_key, "secret_access_key": server.secret_key}
    return s3_session(region=server.region, backoff=FAST, **endpoints, **keys)


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedFS]:
    """One SeaweedFS (``weed mini``) for the session."""
    with SeaweedFS() as server:
        yield server


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto_server for the session (in memory; any credentials)."""
    with MotoServer() as server:
        yield server


@pytest.fixture
def s3_bucket(seaweedfs: SeaweedFS) -> str:
    """A fresh bucket on the session's SeaweedFS."""
    return seaweedfs.create_bucket(f"lake-{uuid.uuid4().hex[:12]}")


def glue_lake_settings(
    server: MotoServer, bucket: str, database: str, prefix: str, **lake: Any
) -> Settings:
    """Settings for a lake under ``prefix`` of a new ``bucket`` on moto's S3, catalogued in its
    Glue ``database``; ``lake`` adds lake settings."""
    client: Any = session_of(server).client("s3")
    client.create_bucket(Bucket=bucket)
    url = server.endpoint_url
    where = {"s3_endpoint_url": url, "glue_endpoint_url": url, "glue_database": database}
    return Settings(lake_path=f"s3://{bucket}/{prefix}", lake=LakeSettings(**where, **lake))
