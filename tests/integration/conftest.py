"""Real servers for the integration tests, one per session, on 127.0.0.1."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.servers.kafka import KafkaBroker, kafka_jars


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """One Apache Kafka broker (KRaft) for the session; jars from Maven Central, cached."""
    broker = KafkaBroker(kafka_jars())
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def unique_group() -> str:
    """A consumer group id (and topic prefix) no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}"


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()
