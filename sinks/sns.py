"""Alert notifications to an Amazon SNS topic (optional receiver).

:class:`SnsAlertSink` is a :class:`~sinks.notifier.Notifier` (queue, retries, ``close()``) over
:class:`SnsTransport`. The message is the document of :mod:`sinks.alert_format` (words from
reviews stripped unless ``include_text``); the identity is repeated as message attributes
(``alertname``, ``category``, ``severity``, ``team``, ``alert_id``, ``status``), so that
subscriptions can filter on them. For a FIFO topic (``.fifo``) the message group is the
alert name and category, and the de-duplication id the delivery id (the same on retries).
Throttling, 5xx and lost connections are retried (:func:`stream.retry.retriable`); anything
else (a bad parameter, no such topic, no permission) is final.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from sinks.alert_format import encode_payload
from sinks.notifier import Notifier
from stream.errors import DeliveryError, describe, redact_url
from stream.retry import retriable

__all__ = ["SnsAlertSink", "SnsTransport"]


class SnsTransport:
    """Publishes each notification to ``topic_arn``."""

    def __init__(
        self, topic_arn: str, *, region: str = "us-east-1", endpoint_url: str | None = None
    ) -> None:
        if not topic_arn.startswith("arn:"):
            raise ValueError(f"sns topic must be an ARN (arn:aws:sns:...), got {topic_arn!r}")
        self.topic_arn = topic_arn
        self._region = region
        self._endpoint_url = endpoint_url
        self._client: Any = None
        self._client_cm: Any = None

    @property
    def target(self) -> str:
        where = f" at {redact_url(self._endpoint_url)}" if self._endpoint_url else ""
        return self.topic_arn + where

    async def _ensure_client(self) -> Any:
        if self._client is None:
            kwargs: dict[str, Any] = {
                "region_name": self._region,
                "config": AioConfig(retries={"mode": "standard", "max_attempts": 3}),
            }
            if self._endpoint_url:
                kwargs["endpoint_url"] = self._endpoint_url
            self._client_cm = get_session().create_client("sns", **kwargs)
            self._client = await self._client_cm.__aenter__()
        return self._client

    async def send(self, payload: Mapping[str, Any], delivery_id: str) -> None:
        labels = payload["labels"]
        attributes = {
            **{k: str(v) for k, v in labels.items()},
            "alert_id": str(payload["alert_id"]),
            "status": str(payload["status"]),
        }
        request: dict[str, Any] = {
            "TopicArn": self.topic_arn,
            "Message": encode_payload(payload),
            "Subject": f"[{payload['status']}] {labels['alertname']} {labels['category']}"[:100],
            "MessageAttributes": {
                k: {"DataType": "String", "StringValue": v} for k, v in attributes.items() if v
            },
        }
        if self.topic_arn.endswith(".fifo"):
            request["MessageGroupId"] = f"{labels['alertname']}-{labels['category']}"
            request["MessageDeduplicationId"] = delivery_id
        try:
            client = await self._ensure_client()
            await client.publish(**request)
        except (ClientError, BotoCoreError, OSError) as err:
            raise DeliveryError(f"SNS {describe(err)}", retriable=retriable(err)) from err

    async def close(self) -> None:
        cm, self._client_cm, self._client = self._client_cm, None, None
        if cm is not None:
            await cm.__aexit__(None, None, None)


class SnsAlertSink(Notifier):
    """A :class:`~sinks.notifier.Notifier` that publishes each alert to ``topic_arn``;
    ``options`` are the notifier's (``max_attempts``, ``backoff_s``, ...)."""

    def __init__(
        self,
        topic_arn: str,
        *,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        include_text: bool = False,
        **options: Any,
    ) -> None:
        transport = SnsTransport(topic_arn, region=region, endpoint_url=endpoint_url)
        super().__init__(transport, include_text=include_text, **options)
        self.topic_arn = topic_arn

    def __repr__(self) -> str:
        return f"SnsAlertSink({self.topic_arn!r}, include_text={self.include_text})"
