"""Checkpoint documents and the local checkpoint store; the Kinesis settings; the compose
file's kinesis profile (validated as a whole by tests/integration/test_compose.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from stream.checkpoints import (
    LocalCheckpointStore,
    ShardCheckpoint,
    decode_checkpoints,
    encode_checkpoints,
    open_checkpoint_store,
)
from stream.cli import app
from stream.errors import CheckpointConflict, ConfigurationError
from stream.settings import Settings
from tests.settings_checks import assert_read_as_settings

ROOT = Path(__file__).resolve().parents[2]
BIG = "49680523724503931092476938889590982749907128334787018754"


def test_documents_round_trip_big_sequence_numbers() -> None:
    cps = {"shardId-000000000001": ShardCheckpoint(BIG), "shardId-0": ShardCheckpoint(None, True)}
    assert decode_checkpoints(encode_checkpoints("reviews", cps)) == cps


def test_an_unknown_document_version_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="version"):
        decode_checkpoints(b'{"version": 99, "shards": {}}')


async def test_local_store_saves_durably_and_reloads(tmp_path: Path) -> None:
    store = await LocalCheckpointStore(tmp_path / "cp", "my stream/x").open()
    try:
        assert await store.load() == {}
        await store.save({"s0": ShardCheckpoint(BIG)})
        await store.save({"s0": ShardCheckpoint(BIG), "s1": ShardCheckpoint("5", ended=True)})
    finally:
        await store.close()
        await store.close()
    assert store.path.name == "my%20stream%2Fx.json"
    assert not [p for p in store.path.parent.iterdir() if p.name.startswith(".tmp-")]
    async with open_checkpoint_store(str(tmp_path / "cp"), "my stream/x") as again:
        assert await again.load() == {
            "s0": ShardCheckpoint(BIG),
            "s1": ShardCheckpoint("5", ended=True),
        }


async def test_a_second_local_worker_is_refused(tmp_path: Path) -> None:
    async with open_checkpoint_store(str(tmp_path), "reviews") as one:
        await one.save({"s0": ShardCheckpoint("1")})
        with pytest.raises(CheckpointConflict, match="one worker per stream"):
            async with open_checkpoint_store(str(tmp_path), "reviews"):
                pass
    async with open_checkpoint_store(str(tmp_path), "reviews") as after:
        assert await after.load() == {"s0": ShardCheckpoint("1")}


async def test_an_s3_location_needs_a_bucket() -> None:
    with pytest.raises(ConfigurationError, match="bucket"):
        async with open_checkpoint_store("s3:///prefix", "reviews"):
            pass


def test_kinesis_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("SENTIMENT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SENTIMENT_KINESIS__STREAM_NAME", "orders")
    monkeypatch.setenv("SENTIMENT_KINESIS__ENDPOINT_URL", "http://127.0.0.1:4567")
    monkeypatch.setenv("SENTIMENT_KINESIS__INITIAL_POSITION", "LATEST")
    monkeypatch.setenv("SENTIMENT_KINESIS__CHECKPOINT_LOCATION", "s3://bucket/cp")
    k = Settings().kinesis
    assert (k.stream_name, k.endpoint_url, k.initial_position) == (
        "orders",
        "http://127.0.0.1:4567",
        "LATEST",
    )
    assert k.checkpoint_location == "s3://bucket/cp"
    monkeypatch.setenv("SENTIMENT_KINESIS__INITIAL_POSITION", "AT_TIMESTAMP")
    with pytest.raises(ValueError, match="initial_position"):
        Settings()


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services: dict[str, Any] = doc["services"]
    return services


KINESIS_SERVICES = ("kinesis", "kinesis-worker", "kinesis-producer")


def test_the_kinesis_profile_holds_a_server_a_worker_and_a_producer() -> None:
    services = _compose()
    for name in KINESIS_SERVICES:
        assert services[name]["profiles"] == ["kinesis"]
    worker = services["kinesis-worker"]
    assert worker["environment"]["SENTIMENT_KINESIS__ENDPOINT_URL"] == "http://kinesis:4567"
    assert (
        services["kinesis-producer"]["environment"]["SENTIMENT_KINESIS__ENDPOINT_URL"]
        == worker["environment"]["SENTIMENT_KINESIS__ENDPOINT_URL"]
    )
    # One consumer per stream: the worker must not be scaled.
    assert "deploy" not in worker or worker["deploy"].get("replicas", 1) == 1


@pytest.mark.parametrize("name", ["kinesis-worker", "kinesis-producer"])
def test_kinesis_service_settings_and_commands_are_real(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _compose()[name]
    ours = {k: str(v) for k, v in service["environment"].items() if k.startswith("SENTIMENT_")}
    for key in list(os.environ):
        if key.startswith("SENTIMENT_"):
            monkeypatch.delenv(key)
    for key, value in ours.items():
        monkeypatch.setenv(key, value)
    assert_read_as_settings(ours)
    result = CliRunner().invoke(app, [*service["command"], "--help"])
    assert result.exit_code == 0, result.output
