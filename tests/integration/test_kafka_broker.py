"""The broker harness itself: produce and consume over a consumer group, survive a restart."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.integration.conftest import create_topics
from tests.servers.kafka import KafkaBroker


async def consume(broker: KafkaBroker, topic: str, group: str, n: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[bytes] = []
    try:
        while len(got) < n:
            batch = await consumer.getmany(timeout_ms=10_000)
            assert batch, f"no records after {len(got)}"
            got += [m.value for msgs in batch.values() for m in msgs if m.value is not None]
        await consumer.commit()
    finally:
        await consumer.stop()
    return got


async def test_produce_and_consume_on_four_partitions(
    kafka_broker: KafkaBroker, unique_group: str
) -> None:
    topic = f"{unique_group}.smoke"
    await create_topics(kafka_broker.bootstrap, [topic], partitions=4)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_broker.bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for i in range(1000):
            await producer.send(topic, key=str(i % 13).encode(), value=str(i).encode())
        await producer.flush()
    finally:
        await producer.stop()
    got = await consume(kafka_broker, topic, unique_group, 1000)
    assert sorted(int(v) for v in got) == list(range(1000))


async def test_records_survive_a_broker_restart(
    kafka_broker: KafkaBroker, unique_group: str
) -> None:
    topic = f"{unique_group}.restart"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"before")
    finally:
        await producer.stop()
    kafka_broker.restart()
    assert await consume(kafka_broker, topic, unique_group, 1) == [b"before"]
