"""The delivery engine every alert notifier shares, whatever carries the message.

A :class:`Notifier` is an :class:`~stream.pipeline.AlertSink` whose ``emit`` only queues: a
background task delivers each alert in order through its :class:`Transport` (HTTP, SNS),
retrying with jittered exponential backoff (and the receiver's ``Retry-After``) through
:func:`stream.retry.retrying`, so a slow or failing receiver never holds the stream up. The
alerts themselves are already durable elsewhere (``alerts.jsonl``, the lake, the alert topic);
a notification that is still failing after ``max_attempts`` is logged and counted in
:attr:`Notifier.failed`. ``close()`` (or leaving ``async with``) waits up to
``drain_timeout_s`` for the queue to empty, then closes the transport; it is safe to call
twice.

The engine builds the document (:func:`sinks.alert_format.alert_payload`, words from reviews
only with ``include_text``) and gives each notification a delivery id that stays the same on
every retry (for de-duplication); the transport makes one attempt and raises
:class:`~stream.errors.DeliveryError` (``retriable`` or not) when it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

from sinks.alert_format import alert_payload
from stream.errors import DeliveryError, describe
from stream.events import Alert
from stream.retry import Backoff, retrying

__all__ = ["Notifier", "Transport"]

log = logging.getLogger(__name__)


class Transport(Protocol):
    """Carries one notification. ``target`` names the receiver for logs (no secrets)."""

    @property
    def target(self) -> str: ...

    async def send(self, payload: Mapping[str, Any], delivery_id: str) -> None:
        """One attempt to deliver ``payload``; raise :class:`DeliveryError` on failure."""

    async def close(self) -> None:
        """Release the client (called once, by :meth:`Notifier.close`)."""


@dataclass(frozen=True, slots=True)
class _Job:
    alert: Alert
    delivery_id: str


class Notifier:
    """Queues alerts and delivers them through ``transport`` from one background task (see the
    module doc). ``backoff_s`` 0 retries at once."""

    def __init__(
        self,
        transport: Transport,
        *,
        include_text: bool = False,
        max_attempts: int = 6,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        queue_size: int = 1000,
        drain_timeout_s: float = 10.0,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if max_attempts < 1 or queue_size < 1:
            raise ValueError("max_attempts and queue_size must be >= 1")
        if backoff_s < 0 or max_backoff_s < backoff_s or drain_timeout_s < 0:
            raise ValueError("need 0 <= backoff_s <= max_backoff_s and drain_timeout_s >= 0")
        self.transport = transport
        self.include_text = include_text
        self._max_attempts = max_attempts
        self._backoff = Backoff(backoff_s, max_backoff_s, jitter=0.5) if backoff_s > 0 else None
        self._drain_timeout = drain_timeout_s
        self._sleep = sleep
        self._rng = rng
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: notifications delivered, given up on, and dropped because the queue was full
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        #: attempts made (every retry counts)
        self.attempts = 0

    @property
    def _name(self) -> str:
        return f"{type(self).__name__}({self.transport.target})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def emit(self, alerts: Sequence[Alert]) -> None:
        """Queue ``alerts`` for delivery and return at once (a full queue drops, and logs)."""
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed; it cannot send more alerts")
        if not alerts:
            return
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"{type(self).__name__}-deliver")
        for alert in alerts:
            if self._queue.full():
                self.dropped += 1
                log.error(
                    "%s: queue full, alert %s (%s) not sent; it is in the alert log",
                    self._name,
                    alert.alert_id,
                    alert.name,
                )
                continue
            self._queue.put_nowait(_Job(alert, uuid.uuid4().hex))

    async def close(self) -> None:
        """Deliver what is queued (for at most ``drain_timeout_s``), then stop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            if not self._queue.empty():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._queue.join(), self._drain_timeout)
            left = self._queue.qsize()
            if left:
                self.dropped += left
                log.error("%s: closed with %d alerts not sent", self._name, left)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.transport.close()

    async def _run(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._deliver(job)
            except Exception:  # a bug must not stop the notifications that follow
                self.failed += 1
                log.exception("%s: alert %s not delivered", self._name, job.alert.alert_id)
            finally:
                self._queue.task_done()

    async def _deliver(self, job: _Job) -> None:
        payload = alert_payload(job.alert, include_text=self.include_text)
        tries = 0

        async def attempt() -> None:
            nonlocal tries
            tries += 1
            self.attempts += 1
            await self.transport.send(payload, job.delivery_id)

        failure: DeliveryError | None = None
        try:
            await retrying(
                attempt,
                what=f"{self._name}: alert {job.alert.alert_id}",
                backoff=self._backoff,
                max_attempts=self._max_attempts,
                sleep=self._sleep,
                rng=self._rng,
                log=log,
            )
        except DeliveryError as err:
            failure = err
        if failure is None:
            self.delivered += 1
            return
        self.failed += 1
        # no traceback: its messages could hold the receiver's URL; describe() redacts it
        log.error(
            "%s: alert %s (%s) not delivered after %d attempts: %s",
            self._name,
            job.alert.alert_id,
            job.alert.name,
            tries,
            describe(failure),
        )
