"""``sentiment-monitor worker --source kinesis``: the pipeline core over a Kinesis stream.

One process reads every shard of the stream (see :mod:`stream.sources.kinesis`), runs the same
core as the replay and Kafka paths (validate, score, lake, monitors, alerts) and checkpoints
each shard in the checkpoint store once the lake holds its records. Because it is the only
consumer of the stream, the monitors see the whole stream in this process: no monitor-feed
topic as on the Kafka path. SIGINT/SIGTERM drain what was read through the sinks, commit and
exit; ``kill -9`` loses nothing either: a restart resumes from the checkpoints and the lake
drops the uncommitted leftovers.
"""

from __future__ import annotations

import asyncio
import logging

from sinks import JsonlAlertSink
from sinks.webhook import build_notifiers
from stream.app import run_pipeline
from stream.checkpoints import open_checkpoint_store
from stream.lake_factory import build_lake_sink
from stream.pipeline import Pipeline
from stream.retry import Backoff
from stream.settings import Settings
from stream.sources.kinesis import KinesisSource, ensure_stream, kinesis_client

__all__ = ["run_kinesis_worker", "serve"]


async def run_kinesis_worker(settings: Settings, *, serve_metrics: bool = True) -> Pipeline:
    """Run until SIGINT/SIGTERM (or a fatal error); returns the finished pipeline."""
    k = settings.kinesis
    async with kinesis_client(k) as client:
        if k.create_stream:
            await ensure_stream(client, k.stream_name, k.shards)
        async with open_checkpoint_store(
            k.checkpoint_location,
            k.stream_name,
            region=settings.lake.region,
            s3_endpoint_url=k.checkpoint_s3_endpoint_url or settings.lake.s3_endpoint_url,
            profile=settings.lake.profile,
            max_backoff_s=k.max_backoff_s,
        ) as store:
            lake = build_lake_sink(settings)
            notifiers = build_notifiers(settings.alerts)  # webhook / SNS, when configured
            source = KinesisSource(
                client,
                k.stream_name,
                store,
                on_rewind=lake.rewind,
                initial_position=k.initial_position,
                records_per_call=k.records_per_call,
                poll_interval_s=k.poll_interval_s,
                shard_refresh_s=k.shard_refresh_s,
                backoff=Backoff(max_s=k.max_backoff_s),
                queue_records=max(2 * settings.batch.max_events, k.records_per_call),
            )
            try:
                return await run_pipeline(
                    settings,
                    source,
                    [lake],
                    source_name="kinesis",
                    alert_sinks=[JsonlAlertSink(settings.alerts_path), *notifiers],
                    serve_metrics=serve_metrics,
                )
            finally:
                for notifier in notifiers:
                    await notifier.close()


def serve(settings: Settings, *, loglevel: str = "info") -> None:
    """The CLI's entry: logging, then :func:`run_kinesis_worker` until stopped."""
    logging.basicConfig(
        level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    pipeline = asyncio.run(run_kinesis_worker(settings))
    s = pipeline.summary
    logging.getLogger(__name__).info(
        "stopped: %d records, %d scored, %d dead letters",
        s.records_in,
        s.scored,
        sum(s.dead_letters.values()),
    )
