"""Alert notifications to an Amazon SNS topic (optional receiver).

The message is the webhook's JSON document (:func:`sinks.webhook.alert_payload`, texts
stripped unless ``include_text``); the identity is repeated as message attributes
(``alertname``, ``category``, ``severity``, ``team``, ``alert_id``, ``status``), so that
subscriptions can filter on them. For a FIFO topic (``.fifo``) the message group is the
alert name and category, and the de-duplication id the delivery id (the same on retries).
Delivery, retries and ``close()`` are those of :class:`sinks.webhook.Notifier`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from sinks.webhook import DeliveryError, Notifier

__all__ = ["SnsAlertSink"]

_FINAL_CODES = frozenset(
    {"InvalidParameter", "InvalidParameterValue", "NotFound", "AuthorizationError"}
)


class SnsAlertSink(Notifier):
    """Publishes each alert to ``topic_arn``."""

    def __init__(
        self,
        topic_arn: str,
        *,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        include_text: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(include_text=include_text, **options)
        if not topic_arn.startswith("arn:"):
            raise ValueError(f"sns topic must be an ARN (arn:aws:sns:...), got {topic_arn!r}")
        self.topic_arn = topic_arn
        self._region = region
        self._endpoint_url = endpoint_url
        self._client: Any = None
        self._client_cm: Any = None

    def __repr__(self) -> str:
        return f"SnsAlertSink({self.topic_arn!r}, include_text={self.include_text})"

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

    async def _send(self, payload: Mapping[str, Any], delivery_id: str) -> None:
        labels = payload["labels"]
        attributes = {
            **{k: str(v) for k, v in labels.items()},
            "alert_id": str(payload["alert_id"]),
            "status": str(payload["status"]),
        }
        request: dict[str, Any] = {
            "TopicArn": self.topic_arn,
            "Message": json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str),
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
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            raise DeliveryError(f"SNS {code}: {err}", retriable=code not in _FINAL_CODES) from err
        except (BotoCoreError, OSError) as err:
            raise DeliveryError(f"SNS {type(err).__name__}: {err}", retriable=True) from err

    async def _release(self) -> None:
        cm, self._client_cm, self._client = self._client_cm, None, None
        if cm is not None:
            await cm.__aexit__(None, None, None)
