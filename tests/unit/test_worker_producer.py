"""Our producers (the worker's, the publishers') send records in few produce batches: a
partition takes its next batch only once the one before is sent, so each batch is a round
trip to the broker (with aiokafka's default of 16 KiB, a micro-batch of enriched reviews was
about 100 of them, 25 a partition on 4, and the output topics were the slowest of a
worker's outputs)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer

from sinks.topics import enriched_values
from stream.events import ReviewEvent, ScoredBatch, SourcePosition
from stream.kafka_app import worker_producer
from stream.producer import PRODUCE_BATCH_BYTES, KafkaReviewProducer
from stream.settings import BatchSettings, KafkaSettings
from stream.synthetic import generate
from stream.validation import decode_event
from tests.scored import even_batch

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def micro_batch() -> ScoredBatch:
    size = BatchSettings().max_events
    decoded = [
        decode_event(r.value, SourcePosition("kafka", "reviews", "0", i), NOW)
        for i, r in enumerate(generate("steady", events=size + size // 10, seed=3))
    ]
    events = [e for e in decoded if isinstance(e, ReviewEvent)][:size]
    assert len(events) == size
    return even_batch(events, scored_at=NOW)


def publisher() -> AIOKafkaProducer:
    return KafkaReviewProducer(settings=KafkaSettings())._producer


PRODUCERS: dict[str, Callable[[], AIOKafkaProducer]] = {
    "worker": lambda: worker_producer(KafkaSettings()),
    "publisher": publisher,
}


async def batches_needed(make: Callable[[], AIOKafkaProducer], values: list[bytes]) -> int:
    """How many of a producer's batches ``values`` fill, appended in order."""
    key = b"p-1"
    producer = make()
    try:
        builder, count = producer.create_batch(), 1
        for value in values:
            if builder.append(key=key, value=value, timestamp=None) is None:
                builder, count = producer.create_batch(), count + 1
                assert builder.append(key=key, value=value, timestamp=None) is not None
        return count
    finally:
        await producer.stop()  # never started: nothing to send


@pytest.mark.parametrize("producer", sorted(PRODUCERS))
async def test_a_partitions_share_of_a_micro_batch_is_one_produce_batch(producer: str) -> None:
    values = enriched_values(micro_batch())
    # keyed by product, the records spread over the topic's partitions: a quarter each on 4
    quarter = values[: len(values) // 4]
    assert sum(map(len, quarter)) > 16 * 1024 * 4  # what took dozens of batches before
    assert await batches_needed(PRODUCERS[producer], quarter) == 1
    # the whole micro-batch on one partition: a few batches, each under the broker's limit
    whole = await batches_needed(PRODUCERS[producer], values)
    assert whole <= 2 + sum(map(len, values)) // PRODUCE_BATCH_BYTES
    assert PRODUCE_BATCH_BYTES < 1_000_000  # the broker's default message.max.bytes
