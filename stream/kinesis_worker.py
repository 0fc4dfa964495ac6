"""``sentiment-monitor worker --source kinesis``: the pipeline core over a Kinesis stream.

One process reads every shard of the stream (see :mod:`stream.sources.kinesis`), runs the same
core as the replay and Kafka paths (validate, score, lake, monitors, alerts) and checkpoints
each shard in the checkpoint store once the lake holds its records. The monitors' state is
saved beside the checkpoints (:mod:`stream.monitor_state`) so a restart continues its counts
and baseline (a saved state it cannot continue from is logged and counted, and the monitors
start afresh). Because it is the only
consumer of the stream, the monitors see the whole stream in this process: no monitor-feed
topic as on the Kafka path. SIGINT/SIGTERM drain what was read through the sinks, commit and
exit; ``kill -9`` loses nothing either: a restart resumes from the checkpoints and the lake
drops the uncommitted leftovers.
"""

from __future__ import annotations

import asyncio
import logging

from stream.app import build_monitor, discard_saved_state, run_pipeline
from stream.checkpoints import open_checkpoint_store
from stream.lake_factory import build_lake_sink, lake_session
from stream.metrics import PipelineMetrics
from stream.monitor_state import MonitorStateSaving, UnusableMonitorState, monitor_state_store
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
            states = monitor_state_store(
                k.checkpoint_location,
                k.stream_name,
                lambda: lake_session(settings).client(
                    "s3", endpoint_url=k.checkpoint_s3_endpoint_url or settings.lake.s3_endpoint_url
                ),
            )
            metrics = PipelineMetrics(settings.categories)
            try:
                monitor = build_monitor(settings, await states.load())
            except UnusableMonitorState as err:
                discard_saved_state(err, metrics)
                monitor = build_monitor(settings)
            saving = MonitorStateSaving(
                source,
                states,
                lambda: monitor.state(),  # type: ignore[attr-defined]
                every_s=settings.monitor.state_save_s,
            )
            try:
                return await run_pipeline(
                    settings,
                    saving,
                    source_name="kinesis",
                    lake=lake,
                    monitor=monitor,
                    metrics=metrics,
                    serve_metrics=serve_metrics,
                )
            finally:
                await saving.save()


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
