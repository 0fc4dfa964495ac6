"""The broker harness itself, on a real Kafka broker: an idempotent producer and a consumer group
move 1,000 records over four partitions exactly, and records survive a broker restart."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from stream.sources.kafka import log_ranges
from tests.integration.conftest import TopicFactory
from tests.servers.kafka import KafkaBroker

pytestmark = pytest.mark.integration


async def produce(broker: KafkaBroker, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send(topic, key=str(i % 13).encode(), value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def consume(
    broker: KafkaBroker, topic: str, group: str, n: int, within_s: float = 60.0
) -> tuple[list[bytes], dict[TopicPartition, int]]:
    """Read ``n`` records in consumer group ``group``, commit, and return them with the
    committed offsets."""
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
        deadline = time.monotonic() + within_s
        while len(got) < n:
            assert time.monotonic() < deadline, f"{len(got)} of {n} records in {within_s} s"
            batch = await consumer.getmany(timeout_ms=1000)
            got += [m.value for msgs in batch.values() for m in msgs if m.value is not None]
        await consumer.commit()
        committed = {tp: await consumer.committed(tp) for tp in consumer.assignment()}
    finally:
        await consumer.stop()
    return got, {tp: off for tp, off in committed.items() if off is not None}


async def test_a_consumer_group_reads_back_1000_records_from_four_partitions_exactly(
    kafka_broker: KafkaBroker, kafka_topic: TopicFactory, unique_group: str
) -> None:
    topic = await kafka_topic("smoke", partitions=4)
    sent = [f"record-{i}".encode() for i in range(1000)]
    await produce(kafka_broker, topic, sent)

    got, committed = await consume(kafka_broker, topic, unique_group, len(sent))

    assert Counter(got) == Counter(sent)
    assert {tp.partition for tp in committed} == {0, 1, 2, 3}
    assert sum(committed.values()) == len(sent)
    # Every partition got a share of the 13 keys.
    assert all(off > 0 for off in committed.values())


async def test_a_record_produced_before_a_restart_is_consumed_after_it(
    kafka_broker: KafkaBroker, kafka_topic: TopicFactory, unique_group: str
) -> None:
    topic = await kafka_topic("restart", partitions=1)
    await produce(kafka_broker, topic, [b"before"])
    bootstrap = kafka_broker.bootstrap

    await asyncio.to_thread(kafka_broker.restart, 0.5)

    assert kafka_broker.bootstrap == bootstrap
    await produce(kafka_broker, topic, [b"after"])
    got, committed = await consume(kafka_broker, topic, unique_group, 2)
    assert got == [b"before", b"after"]
    assert committed == {TopicPartition(topic, 0): 2}


async def test_log_ranges_name_every_partition_with_the_offsets_it_holds(
    kafka_broker: KafkaBroker, kafka_topic: TopicFactory
) -> None:
    topic = await kafka_topic("ranges", partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    await producer.start()
    try:
        for partition, n in ((0, 5), (2, 2)):
            for i in range(n):
                await producer.send_and_wait(topic, value=b"%d" % i, partition=partition)
    finally:
        await producer.stop()
    client = AIOKafkaConsumer(bootstrap_servers=kafka_broker.bootstrap)
    await client.start()
    try:
        assert await log_ranges(client, topic) == {
            f"kafka/{topic}/0": (0, 5),
            f"kafka/{topic}/1": (0, 0),
            f"kafka/{topic}/2": (0, 2),
        }
        assert await log_ranges(client, f"{topic}-absent") == {}
    finally:
        await client.stop()
