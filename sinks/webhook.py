"""Alert notifiers: a signed HTTP webhook, and the delivery machinery SNS shares.

A notifier is an :class:`~stream.pipeline.AlertSink` whose ``emit`` only queues: a background
task delivers each alert in order, retrying with jittered exponential backoff (and the
receiver's ``Retry-After``), so a slow or failing receiver never holds the stream up. The
alerts themselves are already durable elsewhere (``alerts.jsonl``, the lake, the alert topic);
a notification that is still failing after ``max_attempts`` is logged and counted in
:attr:`Notifier.failed`. ``close()`` (or leaving ``async with``) waits up to
``drain_timeout_s`` for the queue to empty, then releases the HTTP client; it is safe to call
twice.

Identity: every notification carries the labels of the matching Prometheus rule
(``alertname``, ``category``, ``severity``, ``team``, see ``deploy/prometheus/rules/``) and the
episode's ``alert_id``, so an Alertmanager notification and an in-app one can be correlated.

Privacy: review texts go only to a receiver configured with ``include_text=True``. Otherwise
every field named ``text``, ``texts`` or ``*_text(s)`` is removed, at any depth, before the body
is encoded (example review ids and evidence terms stay).

The webhook posts one JSON document per alert::

    {"version": 1, "source": "sentiment-monitor", "alert_id": "...", "status": "firing",
     "labels": {"alertname": "SentimentShift", "category": "Dresses", "severity": "critical",
                "team": "business"},
     "name": ..., "category": ..., "severity": ..., "summary": ..., "window_start": ...,
     "window_end": ..., "raised_at": ..., "evidence": {...}}

with ``Content-Type: application/json``, ``X-Sentiment-Alert-Id``, ``X-Sentiment-Delivery``
(the same on every retry of one notification, for de-duplication) and, when a secret is set,
``X-Sentiment-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>``. A receiver checks
it with ``hmac.compare_digest`` before it trusts the body.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

import aiohttp
from pydantic import SecretStr

from stream.events import Alert

__all__ = [
    "SIGNATURE_HEADER",
    "AlertReceivers",
    "DeliveryError",
    "Notifier",
    "WebhookAlertSink",
    "alert_labels",
    "alert_payload",
    "build_notifiers",
    "sign",
    "strip_text",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Sentiment-Signature"
PAYLOAD_VERSION = 1
SOURCE = "sentiment-monitor"

#: the team each in-app alert is routed to (same as the ``team`` label of its Prometheus rule)
_TEAMS: Mapping[str, str] = {
    "SentimentShift": "business",
    "PriorShift": "business",
    "LabelDrift": "business",
    "AccuracyDrop": "business",
    "DataDrift": "business",
    "PredictionDrift": "business",
}
_TEXT_KEY = re.compile(r"(?:^|_)texts?$")


def strip_text(value: Any) -> Any:
    """``value`` without any mapping entry named ``text``, ``texts`` or ``*_text(s)``, at any
    depth (lists and mappings are copied; other values are returned as they are)."""
    if isinstance(value, Mapping):
        return {
            k: strip_text(v)
            for k, v in value.items()
            if not (isinstance(k, str) and _TEXT_KEY.search(k))
        }
    if isinstance(value, list | tuple):
        return [strip_text(v) for v in value]
    return value


def alert_labels(alert: Alert) -> dict[str, str]:
    """The labels the Prometheus rule of the same alert carries."""
    return {
        "alertname": alert.name,
        "category": alert.category,
        "severity": str(alert.severity),
        "team": _TEAMS.get(alert.name, "business"),
    }


def alert_payload(alert: Alert, *, include_text: bool = False) -> dict[str, Any]:
    """The JSON document a notifier sends for ``alert`` (texts stripped unless allowed)."""
    doc: dict[str, Any] = {
        "version": PAYLOAD_VERSION,
        "source": SOURCE,
        "labels": alert_labels(alert),
        **alert.to_json_dict(),
    }
    return doc if include_text else strip_text(doc)


def sign(secret: str | bytes, body: bytes) -> str:
    """The value of :data:`SIGNATURE_HEADER` for ``body``: ``sha256=<hex digest>``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


class DeliveryError(Exception):
    """One failed attempt. ``retriable``: whether trying again can help; ``retry_after``:
    the receiver's requested wait in seconds, if it gave one."""

    def __init__(self, message: str, *, retriable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retriable = retriable
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class _Job:
    alert: Alert
    delivery_id: str


class Notifier(abc.ABC):
    """Queues alerts and delivers them from one background task (see the module doc).

    Subclasses implement :meth:`_send` (one attempt; raise :class:`DeliveryError`) and
    :meth:`_release` (close their client)."""

    def __init__(
        self,
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
        self.include_text = include_text
        self._max_attempts = max_attempts
        self._backoff = backoff_s
        self._max_backoff = max_backoff_s
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
                    type(self).__name__,
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
                log.error("%s: closed with %d alerts not sent", type(self).__name__, left)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._release()

    async def _run(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._deliver(job)
            except Exception:  # a bug must not stop the notifications that follow
                self.failed += 1
                log.exception("%s: alert %s not delivered", type(self).__name__, job.alert.alert_id)
            finally:
                self._queue.task_done()

    async def _deliver(self, job: _Job) -> None:
        payload = alert_payload(job.alert, include_text=self.include_text)
        for attempt in range(1, self._max_attempts + 1):
            self.attempts += 1
            try:
                await self._send(payload, job.delivery_id)
            except DeliveryError as err:
                failure = err
            else:
                self.delivered += 1
                return
            if not failure.retriable or attempt == self._max_attempts:
                self.failed += 1
                log.error(
                    "%s: alert %s (%s) not delivered after %d attempts: %s",
                    type(self).__name__,
                    job.alert.alert_id,
                    job.alert.name,
                    attempt,
                    failure,
                )
                return
            delay = self._delay(attempt, failure.retry_after)
            log.warning(
                "%s: attempt %d for alert %s failed (%s); retrying in %.1f s",
                type(self).__name__,
                attempt,
                job.alert.alert_id,
                failure,
                delay,
            )
            await self._sleep(delay)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter in [50 %, 100 %]; a ``Retry-After`` raises it."""
        base = min(self._max_backoff, self._backoff * 2.0 ** (attempt - 1))
        delay = base * (0.5 + 0.5 * self._rng())
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._max_backoff))
        return delay

    @abc.abstractmethod
    async def _send(self, payload: Mapping[str, Any], delivery_id: str) -> None:
        """One attempt to deliver ``payload``; raise :class:`DeliveryError` on failure."""

    @abc.abstractmethod
    async def _release(self) -> None:
        """Close whatever client the notifier holds (called once, by :meth:`close`)."""


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class WebhookAlertSink(Notifier):
    """POSTs each alert as JSON to ``url``, signed with ``secret`` (HMAC-SHA256) if given.

    2xx is delivered; 408, 425, 429, 5xx, timeouts and connection errors are retried; any
    other status is final (the receiver rejects the request as it is)."""

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        include_text: bool = False,
        timeout_s: float = 10.0,
        headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(include_text=include_text, **options)
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http(s)://..., got {url!r}")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self.url = url
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._headers = dict(headers or {})
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never shows the secret
        return f"WebhookAlertSink({self.url!r}, include_text={self.include_text})"

    def body(self, payload: Mapping[str, Any]) -> bytes:
        """The exact bytes posted (and signed) for ``payload``."""
        return json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str).encode()

    async def _send(self, payload: Mapping[str, Any], delivery_id: str) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        body = self.body(payload)
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "User-Agent": f"{SOURCE}-webhook/{PAYLOAD_VERSION}",
            "X-Sentiment-Alert-Id": str(payload.get("alert_id", "")),
            "X-Sentiment-Delivery": delivery_id,
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        try:
            async with self._session.post(self.url, data=body, headers=headers) as resp:
                if 200 <= resp.status < 300:
                    return
                retriable = resp.status in (408, 425, 429) or resp.status >= 500
                raise DeliveryError(
                    f"HTTP {resp.status} from {self.url}",
                    retriable=retriable,
                    retry_after=_retry_after(resp.headers.get("Retry-After")),
                )
        except (aiohttp.ClientError, TimeoutError) as err:
            raise DeliveryError(
                f"{type(err).__name__} posting to {self.url}: {err}", retriable=True
            ) from err

    async def _release(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class AlertReceivers(Protocol):
    """Where alerts go besides the alert log (``stream.settings.AlertSettings``)."""

    @property
    def webhook_url(self) -> SecretStr | None: ...
    @property
    def webhook_secret(self) -> SecretStr | None: ...
    @property
    def webhook_include_text(self) -> bool: ...
    @property
    def webhook_timeout_s(self) -> float: ...
    @property
    def webhook_max_attempts(self) -> int: ...
    @property
    def sns_topic_arn(self) -> str | None: ...
    @property
    def sns_region(self) -> str: ...
    @property
    def sns_endpoint_url(self) -> str | None: ...
    @property
    def sns_include_text(self) -> bool: ...


def build_notifiers(receivers: AlertReceivers) -> list[Notifier]:
    """One notifier per configured receiver (none when neither a webhook nor SNS is set)."""
    out: list[Notifier] = []
    if receivers.webhook_url is not None and receivers.webhook_url.get_secret_value():
        secret = receivers.webhook_secret
        out.append(
            WebhookAlertSink(
                receivers.webhook_url.get_secret_value(),
                secret=secret.get_secret_value() if secret is not None else None,
                include_text=receivers.webhook_include_text,
                timeout_s=receivers.webhook_timeout_s,
                max_attempts=receivers.webhook_max_attempts,
            )
        )
    if receivers.sns_topic_arn:
        from sinks.sns import SnsAlertSink

        out.append(
            SnsAlertSink(
                receivers.sns_topic_arn,
                region=receivers.sns_region,
                endpoint_url=receivers.sns_endpoint_url,
                include_text=receivers.sns_include_text,
            )
        )
    return out
