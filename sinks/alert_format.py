"""What an alert notification says: the JSON document every notifier (webhook, SNS) sends,
its identity labels, the exact bytes, and their signature. No I/O.

Identity: every notification carries the labels of the matching Prometheus rule
(``alertname``, ``category``, ``severity``, ``team``, see ``deploy/prometheus/rules/``) and the
episode's ``alert_id``, so an Alertmanager notification and an in-app one can be correlated.

Privacy: words from reviews go only to a receiver configured with ``include_text=True``.
Otherwise every field named ``text``, ``texts``, ``term``, ``terms`` or ``*_text(s)`` /
``*_term(s)`` is removed, at any depth, before the body is encoded: review texts and the
evidence's distinctive terms (example review ids stay).

The document (``version`` 1)::

    {"version": 1, "source": "sentiment-monitor", "alert_id": "...", "status": "firing",
     "labels": {"alertname": "SentimentShift", "category": "Dresses", "severity": "critical",
                "team": "business"},
     "name": ..., "category": ..., "severity": ..., "summary": ..., "window_start": ...,
     "window_end": ..., "raised_at": ..., "evidence": {...}}

encoded as :func:`encode_payload` does (sorted keys, UTF-8). A receiver that was given a
secret checks :data:`SIGNATURE_HEADER` (``sha256=<hex HMAC-SHA256 of the exact body bytes>``)
with ``hmac.compare_digest`` before it trusts the body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from stream.events import Alert

__all__ = [
    "PAYLOAD_VERSION",
    "SIGNATURE_HEADER",
    "SOURCE",
    "alert_labels",
    "alert_payload",
    "encode_payload",
    "sign",
    "strip_private",
]

SIGNATURE_HEADER = "X-Sentiment-Signature"
PAYLOAD_VERSION = 1
SOURCE = "sentiment-monitor"

#: the team each in-app alert is routed to (same as the ``team`` label of its Prometheus rule)
_TEAMS: Mapping[str, str] = {
    "SentimentShift": "business",
    "PriorShift": "business",
    "LabelDrift": "business",
    "AccuracyDrop": "business",
    "EstimatedAccuracyDrop": "business",
    "DataDrift": "business",
    "PredictionDrift": "business",
}
_PRIVATE_KEY = re.compile(r"(?:^|_)(?:texts?|terms?)$")


def strip_private(value: Any) -> Any:
    """``value`` without any mapping entry named ``text(s)``, ``term(s)``, ``*_text(s)`` or
    ``*_term(s)``, at any depth (lists and mappings are copied; other values are returned as
    they are)."""
    if isinstance(value, Mapping):
        return {
            k: strip_private(v)
            for k, v in value.items()
            if not (isinstance(k, str) and _PRIVATE_KEY.search(k))
        }
    if isinstance(value, list | tuple):
        return [strip_private(v) for v in value]
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
    """The JSON document a notifier sends for ``alert`` (words from reviews stripped unless
    ``include_text``)."""
    doc: dict[str, Any] = {
        "version": PAYLOAD_VERSION,
        "source": SOURCE,
        "labels": alert_labels(alert),
        **alert.to_json_dict(),
    }
    return doc if include_text else strip_private(doc)


def encode_payload(payload: Mapping[str, Any]) -> str:
    """The document as sent: JSON with sorted keys, non-ASCII kept."""
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)


def sign(secret: str | bytes, body: bytes) -> str:
    """The value of :data:`SIGNATURE_HEADER` for ``body``: ``sha256=<hex digest>``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
