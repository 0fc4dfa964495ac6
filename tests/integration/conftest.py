"""Real servers for the integration tests, one per session, on 127.0.0.1.

Kafka: ``kafka_broker`` is one Apache Kafka 4 broker (KRaft) for the whole session, run from jars
that ``deploy/kafka/fetch-jars.sh`` resolves from Maven Central (cached). Tests share it, so each
one takes its own names from ``unique_group`` (a consumer group id that is also a safe topic
prefix) and creates topics with ``create_topics`` (or the ``kafka_topic`` fixture).

Java and the jars are part of the test setup (CI installs them): when they are missing the
fixture fails, it never skips.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest

from tests.servers.kafka import KafkaBroker, KafkaStartError, KafkaUnavailableError, kafka_jars
from tests.servers.kafka import create_topics as create_topics

TopicFactory = Callable[..., Awaitable[str]]


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """One Apache Kafka broker (KRaft, broker + controller) for the session."""
    try:
        jars = kafka_jars()
    except KafkaUnavailableError as exc:
        problem = f"cannot run the Kafka broker the integration tests need: {exc}"
    else:
        broker = KafkaBroker(jars)
        try:
            broker.start()
        except KafkaStartError as exc:
            broker.close()
            problem = f"the Kafka broker did not start: {exc}"
        else:
            try:
                yield broker
            finally:
                broker.close()
            return
    pytest.fail(problem, pytrace=False)


@pytest.fixture
def unique_group(request: pytest.FixtureRequest) -> str:
    """A consumer group id no other test uses; also valid as a topic name or prefix."""
    name = re.sub(r"[^a-zA-Z0-9_-]+", "-", request.node.name)[:60].strip("-")
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def kafka_topic(kafka_broker: KafkaBroker, unique_group: str) -> TopicFactory:
    """``await kafka_topic("orders", partitions=4)`` creates ``<unique_group>.orders`` on the
    session broker, waits until its partitions have leaders and returns the full name."""

    async def make(suffix: str, partitions: int = 1) -> str:
        name = f"{unique_group}.{suffix}"
        await create_topics(kafka_broker.bootstrap, [name], partitions)
        return name

    return make
