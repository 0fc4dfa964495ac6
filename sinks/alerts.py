"""Alert outputs: where the monitors' findings go besides the lake."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

from stream.events import Alert

__all__ = ["JsonlAlertSink", "alert_line"]


def alert_line(alert: Alert) -> str:
    """One alert as a JSON line (the format of ``alerts.jsonl`` and of the alert topic)."""
    return json.dumps(alert.to_json_dict(), sort_keys=True, default=str)


class JsonlAlertSink:
    """Appends each alert as one JSON line to a file (``./alerts.jsonl`` by default)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def emit(self, alerts: Sequence[Alert]) -> None:
        if alerts:
            await asyncio.to_thread(self._append, [alert_line(a) for a in alerts])

    def _append(self, lines: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
