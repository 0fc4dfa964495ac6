"""Creates the Kafka topics the worker reads and writes, when they do not exist yet.

Producers' auto-created topics get the broker's default partition count, so the worker
declares its own: ``reviews`` with ``partitions`` (the unit of scale-out), the output topics
with the same count, and the monitor feed with exactly one (one global monitor).
"""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from stream.producer import kafka_client_options
from stream.settings import KafkaSettings

__all__ = ["ensure_topics", "topic_plan"]


def topic_plan(k: KafkaSettings) -> dict[str, tuple[int, dict[str, str]]]:
    """Topic name -> (partition count, topic configs)."""
    return {
        k.reviews_topic: (k.partitions, {}),
        k.enriched_topic: (k.partitions, {}),
        k.dlq_topic: (k.partitions, {}),
        k.alerts_topic: (1, {}),
        k.monitor_feed_topic: (1, {}),
        k.monitor_state_topic: (1, {"cleanup.policy": "compact"}),
    }


async def ensure_topics(k: KafkaSettings) -> list[str]:
    """Create the missing topics; returns the names created."""
    admin = AIOKafkaAdminClient(**kafka_client_options(k))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=n,
                replication_factor=k.replication_factor,
                topic_configs=configs,
            )
            for name, (n, configs) in topic_plan(k).items()
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker won the race
                await admin.create_topics(missing)
        return [t.name for t in missing]
    finally:
        await admin.close()
