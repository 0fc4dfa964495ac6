"""``sentiment-monitor worker``: one member of the Kafka consumer group."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

from stream.app import Runtime, build_monitor, build_review_loop
from stream.kafka_app import create_app
from stream.kafka_topics import ensure_topics
from stream.settings import Settings

__all__ = ["run_worker"]


def run_worker(settings: Settings, *, loglevel: str = "info") -> None:
    """Start a faust worker with the scoring side and the monitor agent (or one of them:
    ``settings.kafka.role``); blocks until stopped (SIGINT/SIGTERM drain the scoring pipeline
    and commit first)."""
    asyncio.run(ensure_topics(settings.kafka))
    monitors_here = settings.kafka.role != "scoring"
    if monitors_here:
        import monitors.suite  # noqa: F401 - loaded now, not when the first feed message waits

    runtime = Runtime(settings)
    review = build_review_loop(settings) if monitors_here else None
    app, _scoring, suite = create_app(
        settings,
        runtime,
        monitor_factory=lambda state: build_monitor(settings, state),
        review=review,
    )
    worker = faust_worker(app, loglevel)
    # the loop the worker will run (faust's app and agents run on it), read here, on this
    # thread: the metrics server's thread takes the monitors' and the review loop's readings
    # on it
    runtime.serve_metrics(_Readings(suite), worker.loop, review)
    try:
        worker.execute_from_commandline()
    finally:
        logging.getLogger(__name__).info("worker stopped")


def faust_worker(app: faust.App, loglevel: str) -> faust.Worker:
    """A faust worker without its terminal spinner. At a log level of WARNING or above,
    faust's spinner lowers the root logger to DEBUG and spins on every record, so each of
    aiokafka's per-request debug messages built a log record on the hot path."""
    worker = faust.Worker(app, loglevel=loglevel)
    worker.spinner = None
    return worker


class _Readings:
    """Monitor readings of the suite this worker runs (none while it does not hold the feed)."""

    def __init__(self, suite: Any) -> None:
        self._suite = suite

    def readings(self) -> list[Any]:
        current = self._suite()
        return list(current.readings()) if current is not None else []
