"""Kafka output topics: ``reviews.enriched``, ``reviews.dlq`` and ``sentiment.alerts``.
A dead letter's message is its raw record (as much as the dead letter kept), with the reason,
detail, source position and the whole record's size and SHA-256 in headers. ``write`` returns
only when the broker has acknowledged every record (``acks=all``, idempotent producer), so the
core may then commit the source offsets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from stream.events import Alert, Batch

__all__ = ["KafkaTopicsSink"]


def _json(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False, default=str).encode("utf-8")


class KafkaTopicsSink:
    """The pipeline's Kafka outputs. Also an alert sink (``emit``)."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        enriched_topic: str,
        dlq_topic: str,
        alerts_topic: str,
    ) -> None:
        self._producer = producer
        self._enriched = enriched_topic
        self._dlq = dlq_topic
        self._alerts = alerts_topic
        self._closed = False
        self._durable = -1

    def durable_seq(self) -> int:
        return self._durable

    async def _send_all(self, sends: list[tuple[str, bytes | None, bytes, list[Any]]]) -> None:
        futures = [
            await self._producer.send(topic, value=value, key=key, headers=headers)
            for topic, key, value, headers in sends
        ]
        if futures:
            await asyncio.gather(*futures)

    async def write(self, batch: Batch) -> None:
        sends: list[tuple[str, bytes | None, bytes, list[Any]]] = [
            (self._enriched, s.event.product_id.encode(), _json(s.to_json_dict()), [])
            for s in batch.scored
        ]
        for d in batch.dead:
            headers = [
                ("reason", d.reason.value.encode()),
                ("detail", d.detail.encode("utf-8", "replace")[:1000]),
                ("source.stream", d.position.stream.encode()),
                ("source.partition", d.position.partition.encode()),
                ("source.offset", str(d.position.offset).encode()),
                ("raw.size", str(d.raw_size).encode()),
                ("raw.sha256", d.raw_sha256.encode()),
            ]
            sends.append((self._dlq, None, d.raw, headers))
        await self._send_all(sends)
        self._durable = batch.seq

    async def emit(self, alerts: Sequence[Alert]) -> None:
        await self._send_all(
            [(self._alerts, a.alert_id.encode(), _json(a.to_json_dict()), []) for a in alerts]
        )

    async def flush(self) -> None:
        await self._producer.flush()

    async def close(self) -> None:
        """The producer belongs to the caller; nothing to release here."""
        self._closed = True
