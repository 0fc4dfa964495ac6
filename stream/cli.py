"""``sentiment-monitor``: the one command-line entry point."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections import Counter
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stream.events import LABELS, OTHER_CATEGORY, Alert, Batch
from stream.pipeline import Pipeline, Summary
from stream.settings import Settings

__all__ = ["app"]

app = typer.Typer(
    name="sentiment-monitor",
    help="Real-time sentiment monitor for product reviews.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


def _lake_labels() -> tuple[list[str], list[int]]:
    from stream.review import lake_training_labels

    return lake_training_labels(Settings())


def _mount_subcommands() -> None:
    from endpoint.cli import LABEL_SOURCES, endpoint_app, explain_command, model_app

    LABEL_SOURCES["lake"] = _lake_labels

    app.add_typer(model_app, name="model", help="Train and package the sentiment model.")
    app.add_typer(endpoint_app, name="endpoint", help="Serve (or deploy) the model endpoint.")
    app.command("explain")(explain_command)

    from stream.lake_cli import lake_app

    app.add_typer(lake_app, name="lake", help="Query the data lake with SQL.")

    from stream.monitor_cli import baseline_app, bias_command, priors_command

    app.add_typer(baseline_app, name="baseline", help="Build the monitors' baseline from a CSV.")
    app.command("priors")(priors_command)
    app.command("bias")(bias_command)

    from stream.review_cli import review_app

    app.add_typer(review_app, name="review", help="Human review in Label Studio.")

    from stream.report.cli import explore_command, report_command

    app.command("report")(report_command)
    app.command("explore")(explore_command)


_mount_subcommands()


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """A command that cannot start for a reason the user can fix (its /metrics port is
    taken) prints that reason, not a traceback, and exits 1."""
    from stream.app import MetricsUnavailable

    try:
        yield
    except MetricsUnavailable as err:
        console.print(f"[red]{escape(str(err))}[/red]")
        raise typer.Exit(1) from err


def _settings(**overrides: object) -> Settings:
    base = Settings()
    changes = {k: v for k, v in overrides.items() if v is not None}
    return base.model_copy(update=changes)


@app.command()
def run(
    scenario: Annotated[
        str, typer.Option(help="Synthetic scenario: steady, negative-surge, prior-shift, ...")
    ] = "steady",
    events: Annotated[int, typer.Option(min=1, help="How many synthetic events to replay.")] = (
        20_000
    ),
    seed: Annotated[int, typer.Option(help="Seed of the synthetic generator.")] = 7,
    data: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Replay a real reviews CSV instead."),
    ] = None,
    shuffle: Annotated[
        bool, typer.Option(help="Replay --data in a seeded random order (else file order).")
    ] = True,
    baseline: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Monitor baseline from `baseline build`; default: learnt from the first events.",
        ),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(min=0.1, help="Pace the replay to this many events/s.")
    ] = None,
    lake: Annotated[str | None, typer.Option(help="Lake root (default ./lake).")] = None,
    alerts: Annotated[Path | None, typer.Option(help="Alert log (default ./alerts.jsonl).")] = (
        None
    ),
    metrics_port: Annotated[
        int | None, typer.Option(help="Port of /metrics on 127.0.0.1 (default 9108; 0: any).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    linger: Annotated[
        float, typer.Option(min=0, help="Keep serving /metrics this many seconds after the end.")
    ] = 0.0,
) -> None:
    """Replay a built-in stream of review events (or a CSV) through the whole pipeline."""
    settings = _settings(lake_path=lake, alerts_path=alerts, metrics_port=metrics_port)
    if baseline is not None:
        monitor = settings.monitor.model_copy(update={"baseline_path": baseline})
        settings = settings.model_copy(update={"monitor": monitor})
    name, records = _records(scenario, events, seed, data, settings.max_text_bytes, shuffle=shuffle)
    with _refusals():
        pipeline = _replay(settings, name, records, rate=rate, progress=progress, linger=linger)
    _print_summary(pipeline.summary, settings)


def _replay(
    settings: Settings,
    name: str,
    records: list[tuple[bytes, bytes]],
    *,
    rate: float | None,
    progress: bool,
    linger: float,
) -> Pipeline:
    """Run ``records`` through the whole pipeline (lake, monitors, alerts, metrics) with a
    progress bar, and return the finished pipeline."""
    from stream.app import run_pipeline
    from stream.lake_factory import build_lake_sink
    from stream.sources import ReplaySource

    lake_sink = build_lake_sink(settings)
    # A rerun of the same stream replaces what an earlier run stored in this lake: its files
    # are committed, so no pending marker names them and the rewind lists the lake.
    source = ReplaySource(
        records,
        name=name,
        rate=rate,
        chunk=settings.batch.max_events,
        on_rewind=functools.partial(lake_sink.rewind, listing=True),
    )
    bar, on_batch = _replay_progress(f"replaying {name}", len(records), enabled=progress)

    async def go() -> Pipeline:
        return await run_pipeline(
            settings,
            source,
            source_name="replay",
            lake=lake_sink,
            on_batch=on_batch,
            on_alert=_show_alert,
            linger_s=linger,
        )

    with bar:
        return asyncio.run(go())


def _show_alert(alert: Alert) -> None:
    style = "bold red" if alert.status == "firing" else "green"
    console.print(
        f"[{style}]ALERT {alert.status}[/] "
        + _shown(f"{alert.name} [{alert.category}] {alert.summary}")
    )


def _replay_progress(
    description: str, total: int, *, enabled: bool
) -> tuple[Progress, Callable[[Batch], None]]:
    """A progress bar over ``total`` records and the ``on_batch`` callback that advances it
    (by every record of a batch, scored or dead) and shows the rate so far."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled,
    )
    task = bar.add_task(description, total=total, rate="")

    def on_batch(batch: Batch) -> None:
        done = bar.tasks[0].completed + len(batch.scored) + len(batch.dead)
        elapsed = bar.tasks[0].elapsed or 0.0
        speed = f"{done / elapsed:,.0f} ev/s" if elapsed > 0 else ""
        bar.update(task, completed=done, rate=speed)

    return bar, on_batch


#: C0 and C1 controls, DEL, and the bidirectional formatting characters: never sent raw.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _shown(value: object) -> str:
    """``value`` as console markup that prints exactly its text: rich markup escaped, control
    characters (ANSI escapes, bidi overrides) written visibly as ``\\x1b`` / ``\\u202e``."""
    text = _CONTROL.sub(lambda m: ascii(m.group())[1:-1], str(value))
    return escape(text)


def _print_summary(summary: Summary, settings: Settings) -> None:
    out = Console()
    table = Table(title="Sentiment mix per category", show_footer=True)
    totals: Counter[int] = Counter()
    for counts in summary.mix.values():
        totals.update(counts)
    table.add_column("category", footer="all")
    table.add_column("reviews", justify="right", footer=f"{summary.scored:,}")
    for label_value, label in LABELS.items():
        n = totals[label_value]
        share = n / summary.scored if summary.scored else 0.0
        table.add_column(label, justify="right", footer=f"{share:.1%}")
    for cat in sorted(summary.mix):
        counts = summary.mix[cat]
        n = sum(counts.values())
        table.add_row(_shown(cat), f"{n:,}", *(f"{counts[v] / n:.1%}" for v in LABELS))
    if OTHER_CATEGORY in summary.mix and OTHER_CATEGORY not in settings.categories:
        table.caption = f"{OTHER_CATEGORY}: categories outside SENTIMENT_CATEGORIES"
    out.print(table)

    totals_table = Table(title="Run summary")
    totals_table.add_column("what")
    totals_table.add_column("count", justify="right")
    totals_table.add_row("records in", f"{summary.records_in:,}")
    totals_table.add_row("scored", f"{summary.scored:,}")
    totals_table.add_row("dead letters", f"{sum(summary.dead_letters.values()):,}")
    for reason, n in sorted(summary.dead_letters.items()):
        totals_table.add_row(_shown(f"  {reason}"), f"{n:,}")
    totals_table.add_row("alerts fired", f"{summary.alerts_fired:,}")
    if summary.alerts_fired > len(summary.firing):
        totals_table.add_row(f"  the latest {len(summary.firing)}:", "")
    for a in summary.firing:
        totals_table.add_row(_shown(f"  {a.name} [{a.category}]"), a.raised_at.strftime("%H:%M:%S"))
    out.print(totals_table)
    out.print(_shown(f"lake: {settings.lake_path}   alerts: {settings.alerts_path}"))


def _records(
    scenario: str,
    events: int,
    seed: int,
    data: Path | None,
    max_text_bytes: int,
    *,
    shuffle: bool = False,
) -> tuple[str, list[tuple[bytes, bytes]]]:
    if data is not None:
        from stream.replay_csv import read_csv

        replay = read_csv(data, shuffle=shuffle, seed=seed)
        return data.stem, [(r.key, r.value) for r in replay]
    from stream.synthetic import SCENARIOS, generate

    if scenario not in SCENARIOS:
        raise typer.BadParameter(
            f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}",
            param_hint="--scenario",
        )
    gen = generate(scenario, events=events, seed=seed, max_text_bytes=max_text_bytes)
    return scenario, [(r.key, r.value) for r in gen]


@app.command()
def produce(
    to: Annotated[str, typer.Option("--to", help="Where to publish: kafka or kinesis.")] = "kafka",
    scenario: Annotated[str, typer.Option(help="Synthetic scenario to publish.")] = "steady",
    events: Annotated[int, typer.Option(min=1, help="How many synthetic events.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic generator.")] = 7,
    data: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Publish a reviews CSV.")
    ] = None,
    rate: Annotated[float | None, typer.Option(min=0.1, help="Events per second.")] = None,
    topic: Annotated[
        str | None, typer.Option(help="Topic or Kinesis stream (default: the reviews one).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Publish review events (synthetic or from a CSV) keyed by product id."""
    from stream.producer import KafkaReviewProducer, RawPublisher, publish

    if to not in ("kafka", "kinesis"):
        raise typer.BadParameter("choose kafka or kinesis", param_hint="--to")
    settings = Settings()
    target = topic or (
        settings.kinesis.stream_name if to == "kinesis" else settings.kafka.reviews_topic
    )
    name, records = _records(scenario, events, seed, data, settings.max_text_bytes)
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not progress,
    )
    task = bar.add_task(f"publishing {name} to {to}", total=len(records))

    async def go() -> int:
        producer: RawPublisher
        if to == "kinesis":
            from stream.producer_kinesis import KinesisReviewProducer

            async with KinesisReviewProducer(target, settings=settings.kinesis) as producer:
                return await publish(
                    producer, records, rate=rate, on_sent=lambda n: bar.update(task, completed=n)
                )
        async with KafkaReviewProducer(topic=target, settings=settings.kafka) as producer:
            return await publish(
                producer, records, rate=rate, on_sent=lambda n: bar.update(task, completed=n)
            )

    with bar:
        sent = asyncio.run(go())
    console.print(f"published {sent:,} records to {to} {target}")


class WorkerSource(StrEnum):
    kafka = "kafka"
    kinesis = "kinesis"


class KafkaRole(StrEnum):
    all = "all"
    scoring = "scoring"
    monitor = "monitor"


@app.command()
def worker(
    source: Annotated[
        WorkerSource, typer.Option("--source", help="Transport to consume.")
    ] = WorkerSource.kafka,
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "info",
    role: Annotated[
        KafkaRole | None,
        typer.Option(
            help="Kafka: all (default), scoring (never the monitors) or monitor (only the "
            "monitors); overrides SENTIMENT_KAFKA__ROLE.",
        ),
    ] = None,
) -> None:
    """Run a worker. Kafka: joins the consumer group and shares the partitions of `reviews`.
    Kinesis: the one consumer of the stream, checkpointing every shard (docs/kinesis.md)."""
    settings = Settings()
    if source is WorkerSource.kinesis:
        from stream.kinesis_worker import serve

        with _refusals():
            serve(settings, loglevel=loglevel)
        return
    from stream.worker import run_worker

    if role is not None:
        kafka = settings.kafka.model_copy(update={"role": role.value})
        settings = settings.model_copy(update={"kafka": kafka})
    with _refusals():
        run_worker(settings, loglevel=loglevel)
