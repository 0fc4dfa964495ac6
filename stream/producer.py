"""Publishing review events: a small helper for producers, and the ``produce`` command's engine.

Example::

    from stream.producer import KafkaReviewProducer
    from stream.events import ReviewEvent

    async with KafkaReviewProducer("broker:9092", topic="reviews") as producer:
        await producer.send(event)          # one ReviewEvent, keyed by product_id
        await producer.send_raw(key, value) # bytes as they are (tests, replays)

Kafka producers are idempotent with ``acks=all``: a retried send never duplicates a record, and
``send`` returns only once every in-sync replica has it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from stream.events import ReviewEvent
from stream.settings import KafkaSettings

__all__ = [
    "PRODUCE_BATCH_BYTES",
    "KafkaReviewProducer",
    "RawPublisher",
    "encode_event",
    "idempotent_producer",
    "kafka_client_options",
    "publish",
]

#: The most bytes (before compression) of one produce batch of a partition, for every producer
#: of ours. aiokafka's default, 16 KiB, cut a worker's micro-batch of enriched reviews into
#: about 100 batches, and a partition takes its next batch only once the one before is sent: a
#: round trip to the broker for every 16 KiB (the output topics were the slowest of a worker's
#: outputs, and a publisher moved about 0.8 of what it does now). Well under the broker's
#: default limit on a batch (``message.max.bytes``, about 1 MB).
PRODUCE_BATCH_BYTES = 512 * 1024


def idempotent_producer(
    settings: KafkaSettings, *, linger_ms: int = 5, **extra: Any
) -> AIOKafkaProducer:
    """Our producers' one configuration (not started): idempotent, every replica
    acknowledging, zstd, produce batches of up to :data:`PRODUCE_BATCH_BYTES`; ``extra`` adds
    aiokafka options or overrides the connection's."""
    return AIOKafkaProducer(
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        compression_type="zstd",
        max_batch_size=PRODUCE_BATCH_BYTES,
        **(kafka_client_options(settings) | extra),
    )


def encode_event(event: ReviewEvent) -> tuple[bytes, bytes]:
    """The (key, value) producers publish: key = product_id, value = the JSON wire form."""
    value = json.dumps(event.to_json_dict(), ensure_ascii=False).encode("utf-8")
    return event.product_id.encode("utf-8"), value


def kafka_client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Connection options shared by every aiokafka client (security included)."""
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    if settings.sasl_mechanism:
        opts["sasl_mechanism"] = settings.sasl_mechanism
        opts["sasl_plain_username"] = settings.sasl_username
        password = settings.sasl_password
        opts["sasl_plain_password"] = password.get_secret_value() if password else None
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        opts["ssl_context"] = create_ssl_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
        )
    return opts


class RawPublisher(Protocol):
    async def send_raw(self, key: bytes, value: bytes) -> None: ...

    async def flush(self) -> None: ...


class KafkaReviewProducer:
    """Idempotent, ``acks=all`` producer of review events to one topic."""

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        *,
        topic: str = "reviews",
        settings: KafkaSettings | None = None,
        linger_ms: int = 5,
    ) -> None:
        self._settings = settings or KafkaSettings()
        extra = {} if bootstrap_servers is None else {"bootstrap_servers": bootstrap_servers}
        self.topic = topic
        self._producer = idempotent_producer(self._settings, linger_ms=linger_ms, **extra)
        self._pending: set[asyncio.Future[Any]] = set()
        self._running = False

    async def __aenter__(self) -> KafkaReviewProducer:
        await self._producer.start()
        self._running = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, event: ReviewEvent) -> None:
        key, value = encode_event(event)
        await self.send_raw(key, value)

    async def send_raw(self, key: bytes, value: bytes) -> None:
        """Queue one record; :meth:`flush` (or leaving the context) waits for delivery."""
        fut = await self._producer.send(self.topic, value=value, key=key)
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)
        if len(self._pending) >= 10_000:
            await self.flush()

    async def flush(self) -> None:
        """Wait until every queued record is acknowledged (raises if one failed)."""
        await self._producer.flush()
        pending, self._pending = list(self._pending), set()
        for fut in pending:
            await fut

    async def close(self) -> None:
        """Flush and stop; safe to call twice."""
        if not self._running:
            return
        self._running = False
        try:
            await self.flush()
        finally:
            await self._producer.stop()


async def publish(
    publisher: RawPublisher,
    records: Iterable[tuple[bytes, bytes]],
    *,
    rate: float | None = None,
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Send (key, value) pairs, paced to ``rate`` per second when given; returns the count."""
    started = time.monotonic()
    sent = 0
    for key, value in records:
        if rate is not None:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await publisher.send_raw(key, value)
        sent += 1
        if on_sent is not None and sent % 100 == 0:
            on_sent(sent)
    await publisher.flush()
    if on_sent is not None:
        on_sent(sent)
    return sent
