"""``sentiment-monitor worker``: one member of the Kafka consumer group."""

from __future__ import annotations

import asyncio
from typing import Any

import faust

from stream.app import MetricsServer, build_monitor, build_scorer
from stream.kafka_app import create_app
from stream.kafka_topics import ensure_topics
from stream.metrics import PipelineMetrics
from stream.settings import Settings

__all__ = ["run_worker"]


def run_worker(settings: Settings, *, loglevel: str = "info") -> None:
    """Start a faust worker with the scoring and monitor agents; blocks until stopped."""
    asyncio.run(ensure_topics(settings.kafka))
    metrics = PipelineMetrics(settings.categories)
    holder: dict[str, Any] = {}

    def monitor_factory(state: dict[str, Any] | None) -> Any:
        holder["monitor"] = build_monitor(settings, state)
        return holder["monitor"]

    app = create_app(
        settings,
        scorer_factory=lambda: build_scorer(settings, metrics),
        monitor_factory=monitor_factory,
        metrics=metrics,
    )
    server = MetricsServer(metrics, settings.metrics_host, settings.metrics_port)
    server.start(_Readings(holder))
    try:
        faust.Worker(app, loglevel=loglevel).execute_from_commandline()
    finally:
        server.stop()


class _Readings:
    """Monitor readings of whichever suite this worker runs (none until it owns the feed)."""

    def __init__(self, holder: dict[str, Any]) -> None:
        self._holder = holder

    def readings(self) -> list[Any]:
        suite = self._holder.get("monitor")
        return list(suite.readings()) if suite is not None else []
