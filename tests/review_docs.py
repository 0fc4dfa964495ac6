"""What the decoder tests share: the published JSON Schema of a review event, the source
position and clock they decode at, and JSON encoding of a document."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stream.events import SourcePosition

__all__ = ["NOW", "POS", "SCHEMA", "encode"]

SCHEMA: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "schemas" / "review-event.v1.schema.json").read_text()
)
POS = SourcePosition("kafka", "reviews", "3", 42)
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def encode(doc: object) -> bytes:
    return json.dumps(doc).encode()
