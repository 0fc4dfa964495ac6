"""``sentiment-monitor report`` (over the lake) and ``explore`` (over a training CSV).

Both write one self-contained HTML page (see :mod:`stream.report.page`). The lake is read
through the project's DuckDB query layer (a directory or ``s3://bucket/prefix`` with the lake
settings' endpoint and credentials), aggregated in SQL, with a progress bar per step. Nothing
heavier than typer and rich is imported until a command runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["csv_table", "explore_command", "parse_time", "report_command"]

_err = Console(stderr=True)


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 date or time; without a zone, UTC."""
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError as err:
        raise typer.BadParameter(f"not an ISO 8601 time: {value!r}") from err
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[str], None]]:
    bar = Progress(
        TextColumn("[bold]{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_err,
        disable=not enabled,
        transient=False,
    )
    task = bar.add_task("reading", total=total)
    started = False

    def step(what: str) -> None:
        nonlocal started
        if started:
            bar.advance(task)
        started = True
        bar.update(task, description=what)

    with bar:
        yield step
        bar.update(task, completed=total, description="done")


def report_command(
    lake: Annotated[
        str | None, typer.Option(help="Lake root: a directory or s3://bucket/prefix.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Reviews from this event time (ISO 8601; UTC if no zone).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Reviews before this event time.")] = None,
    out: Annotated[Path, typer.Option(dir_okay=False, help="Where to write the page.")] = Path(
        "report.html"
    ),
    baseline: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Monitor baseline (from `baseline build`); default: the first reviews.",
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Write an HTML report of the lake: sentiment, balance, mix, bias, drift, priors, terms,
    dead letters (plots with a one-line reading each)."""
    from stream.app import plain_monitor_config
    from stream.errors import ConfigurationError, describe
    from stream.lake_factory import build_duckdb_lake
    from stream.report.data import STEPS, Span, read_lake_data
    from stream.report.page import render
    from stream.report.sections import Levels, lake_sections
    from stream.settings import Settings

    span = Span(parse_time(since), parse_time(until))
    settings = Settings()
    if lake is not None:
        settings = settings.model_copy(update={"lake_path": lake})
    ref = None
    if baseline is not None:
        from monitors import loads_baseline

        ref = loads_baseline(baseline.read_text(encoding="utf-8"))
    try:
        source = build_duckdb_lake(settings)
        con = source.connect()
    except ConfigurationError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    try:
        with _progress(len(STEPS), progress) as step:
            data = read_lake_data(
                con,
                source=settings.lake_path,
                span=span,
                baseline=ref,
                baseline_events=settings.monitor.baseline_events,
                step=step,
            )
    except Exception as err:
        typer.echo(f"error: {describe(err)}", err=True)
        raise typer.Exit(1) from err
    finally:
        con.close()
    levels = Levels.of(plain_monitor_config(settings))
    window = f"{data.first:%Y-%m-%d %H:%M} to {data.last:%Y-%m-%d %H:%M} UTC" if data.n else "-"
    reference = (
        "baseline file"
        if baseline is not None
        else f"first {settings.monitor.baseline_events:,} reviews"
    )
    meta = (
        f"{settings.lake_path}: {data.n:,} reviews, {window}, per {data.grain}; "
        f"drift and priors against the {reference}."
    )
    page = render("Sentiment monitor report", meta, lake_sections(data, levels))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    _err.print(f"report of {data.n:,} reviews written to {out}")


def explore_command(
    data: Annotated[
        Path,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Training CSV (sentiment/review_body/product_category, or Kaggle's).",
        ),
    ],
    out: Annotated[Path, typer.Option(dir_okay=False, help="Where to write the page.")] = Path(
        "explore.html"
    ),
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Write an HTML report of a training CSV: balance, lengths, per-category sentiment,
    bias metrics, top terms of negative reviews."""
    import duckdb

    from stream.app import plain_monitor_config
    from stream.report.data import read_csv_data
    from stream.report.page import render
    from stream.report.sections import Levels, csv_sections
    from stream.settings import Settings

    try:
        table = csv_table(data)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--data") from err
    con = duckdb.connect(":memory:")
    try:
        with _progress(6, progress) as step:
            agg = read_csv_data(con, table, source=str(data), step=step)
    finally:
        con.close()
    meta = f"{data}: {agg.n:,} labelled reviews (rows without a label or text are left out)."
    page = render(
        f"Training data: {data.name}",
        meta,
        csv_sections(agg, Levels.of(plain_monitor_config(Settings()))),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    _err.print(f"report of {agg.n:,} reviews written to {out}")


def csv_table(path: Path) -> pa.Table:
    """The rows of a reviews CSV with text as an Arrow table for :func:`read_csv_data`
    (read by :func:`endpoint.data.read_review_csv`, which knows the course and Kaggle
    layouts)."""
    import pyarrow as pa

    from endpoint.data import read_review_csv

    rows = [r for r in read_review_csv(path).rows if r.text]
    return pa.table(
        {
            "product_category": pa.array([r.category for r in rows], pa.string()),
            "channel": pa.array([r.channel for r in rows], pa.string()),
            "review_text": pa.array([r.text for r in rows], pa.string()),
            "sentiment": pa.array([r.sentiment for r in rows], pa.int8()),
            "rating": pa.array([r.rating for r in rows], pa.int8()),
        }
    )
