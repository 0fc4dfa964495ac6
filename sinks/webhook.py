"""Alert notifications over HTTP: the webhook transport, and the notifiers the settings ask for.

:class:`WebhookAlertSink` is a :class:`~sinks.notifier.Notifier` (queue, retries, ``close()``)
over :class:`HttpTransport`, which POSTs the document of :mod:`sinks.alert_format` with
``Content-Type: application/json``, ``X-Sentiment-Alert-Id``, ``X-Sentiment-Delivery`` (the
same on every retry of one notification, for de-duplication) and, when a secret is set,
``X-Sentiment-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>``.

2xx is delivered; 408, 425, 429, 5xx, timeouts and connection errors are retried (a
``Retry-After`` in seconds raises the wait); any other status is final (the receiver rejects
the request as it is). The URL may hold credentials (``user:password@``) or a token in its
path: logs, errors and ``repr`` show only its scheme, host and port.

:func:`build_notifiers` makes one notifier per receiver configured in the settings (webhook,
SNS).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
from pydantic import SecretStr

from sinks.alert_format import PAYLOAD_VERSION, SIGNATURE_HEADER, SOURCE, encode_payload, sign
from sinks.notifier import Notifier
from stream.errors import DeliveryError, redact_url, redact_urls
from stream.retry import retriable_status

__all__ = [
    "AlertReceivers",
    "HttpTransport",
    "WebhookAlertSink",
    "build_notifiers",
]


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class HttpTransport:
    """POSTs each notification as JSON to ``url``, signed with ``secret`` (HMAC-SHA256) if
    given."""

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        timeout_s: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http(s)://..., got {redact_url(url)!r}")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self.url = url
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._headers = dict(headers or {})
        self._session: aiohttp.ClientSession | None = None

    @property
    def target(self) -> str:
        return redact_url(self.url)

    def body(self, payload: Mapping[str, Any]) -> bytes:
        """The exact bytes posted (and signed) for ``payload``."""
        return encode_payload(payload).encode()

    async def send(self, payload: Mapping[str, Any], delivery_id: str) -> None:
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
                raise DeliveryError(
                    f"HTTP {resp.status} from {self.target}",
                    retriable=retriable_status(resp.status),
                    retry_after=_retry_after(resp.headers.get("Retry-After")),
                )
        except (aiohttp.ClientError, TimeoutError) as err:
            raise DeliveryError(
                f"{type(err).__name__} posting to {self.target}: {redact_urls(str(err))}",
                retriable=True,
            ) from err

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class WebhookAlertSink(Notifier):
    """A :class:`~sinks.notifier.Notifier` that POSTs each alert to ``url`` (see the module
    doc); ``options`` are the notifier's (``max_attempts``, ``backoff_s``, ...)."""

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
        transport = HttpTransport(url, secret=secret, timeout_s=timeout_s, headers=headers)
        super().__init__(transport, include_text=include_text, **options)

    def __repr__(self) -> str:  # never shows the secret, nor the URL's credentials or path
        return f"WebhookAlertSink({self.transport.target!r}, include_text={self.include_text})"


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
        from sinks.sns import SnsAlertSink  # here: aiobotocore costs a worker 9 MB and 0.3 s

        out.append(
            SnsAlertSink(
                receivers.sns_topic_arn,
                region=receivers.sns_region,
                endpoint_url=receivers.sns_endpoint_url,
                include_text=receivers.sns_include_text,
            )
        )
    return out
