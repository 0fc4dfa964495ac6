"""Hostile partition values on a real S3 server (SeaweedFS) and in Glue (moto_server): keys stay
under S3's 1,024-byte limit, DuckDB reads the exact categories back, and Glue registers each
partition with its real value even where the directory name is shortened."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from sinks.catalog import GlueCatalog
from sinks.lake import LakeSink
from sinks.query import DuckDBLake
from sinks.s3 import S3LakeWriter
from stream.events import Batch
from stream.lake_factory import build_lake_sink
from stream.settings import Settings
from tests.lake_rows import scored_review
from tests.servers.lake_fixtures import *  # noqa: F403
from tests.servers.lake_fixtures import FAST, glue_lake_settings, session_of
from tests.servers.moto import MotoServer
from tests.servers.seaweedfs import SeaweedFS

pytestmark = pytest.mark.integration

PREFIX = "lake/v1"
HOSTILE = ["Fine gauge", "ü" * 700, "__HIVE_DEFAULT_PARTITION__", "", "..", "a/b"]


def batch() -> Batch:
    rows = [scored_review(i, category, topic="reviews") for i, category in enumerate(HOSTILE)]
    return Batch(scored=rows, dead=[], positions={rows[-1].position.key: rows[-1].position})


async def test_hostile_categories_on_s3(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    session = session_of(seaweedfs)
    sink = LakeSink(S3LakeWriter(s3_bucket, PREFIX, session=session, backoff=FAST))
    await sink.write(batch())
    await sink.close()
    client: Any = session.client("s3")
    found = client.list_objects_v2(Bucket=s3_bucket, Prefix=PREFIX + "/")["Contents"]
    assert len(found) == len(HOSTILE)
    assert max(len(o["Key"].encode()) for o in found) < 300
    got = DuckDBLake(f"s3://{s3_bucket}/{PREFIX}", session=session).query(
        "SELECT review_id, product_category FROM reviews ORDER BY review_id"
    )
    assert list(zip(*got.to_pydict().values(), strict=True)) == [
        (f"r-{i}", c) for i, c in enumerate(HOSTILE)
    ]


async def _glue_lake(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, **changes: Any
) -> tuple[Settings, GlueCatalog]:
    """The hostile batch written through the settings' lake sink into a new bucket on moto,
    catalogued in a new Glue database (``changes``: settings changed first)."""
    bucket = f"glue-{uuid.uuid4().hex[:10]}"
    database = f"lake_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_server.secret_key)
    settings = glue_lake_settings(moto_server, bucket, database, PREFIX)
    settings = settings.model_copy(update=changes)
    sink = build_lake_sink(settings)
    await sink.write(batch())
    await sink.close()
    session = session_of(moto_server)
    return settings, GlueCatalog(database, bucket=bucket, prefix=PREFIX, session=session)


async def test_glue_registers_the_real_values(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # configured categories, each a directory of its own
    _, catalog = await _glue_lake(moto_server, monkeypatch, categories=tuple(HOSTILE))
    values = sorted(v[1] for v in catalog.partitions("reviews").values())
    assert values == sorted(c for c in HOSTILE if c)  # Glue holds no empty partition value
    assert catalog.sync() == 0


async def test_glue_names_the_unlisted_categories_directory_other(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the default categories, the hostile ones are outside the list: they share one
    directory, which Glue registers as ``other``; the files keep each value."""
    settings, catalog = await _glue_lake(moto_server, monkeypatch)
    assert "Fine gauge" in settings.categories
    partitions = catalog.partitions("reviews")
    assert sorted(v[1] for v in partitions.values()) == ["Fine gauge", "other"]
    assert any(loc.rstrip("/").endswith("product_category=~other") for loc in partitions)
    session = session_of(moto_server)
    got = DuckDBLake(settings.lake_path, session=session).query(
        "SELECT product_category FROM reviews ORDER BY review_id"
    )
    assert got.column("product_category").to_pylist() == HOSTILE
