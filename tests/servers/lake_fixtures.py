"""pytest fixtures for the lake's real servers: SeaweedFS (S3) and moto_server (Glue, KMS,
S3 with SSE-KMS), one of each per session. Import them into a test module with
``from tests.servers.lake_fixtures import *``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.servers.moto import MotoServer
from tests.servers.seaweedfs import SeaweedFS

__all__ = ["moto_server", "s3_bucket", "seaweedfs"]


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
