"""``sentiment-monitor lake``: look into the data lake.

``query "SQL"`` answers SQL over the views ``reviews``, ``dead_letters``, ``alerts`` and
``labels`` (human labels) with DuckDB (a local lake, or S3 through the lake's endpoint and
credentials), or with Athena (``--athena``, over the Glue tables). Settings come from the
environment as for every command (``SENTIMENT_LAKE_PATH``, ``SENTIMENT_LAKE__S3_ENDPOINT_URL``,
...).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import pyarrow as pa
import typer
from rich.console import Console
from rich.table import Table

from stream.errors import ConfigurationError, describe
from stream.settings import Settings

__all__ = ["lake_app"]

lake_app = typer.Typer(
    name="lake",
    help="Query and inspect the data lake.",
    no_args_is_help=True,
    add_completion=False,
)


@lake_app.callback()
def lake() -> None:
    """Query and inspect the data lake (a directory or s3://bucket/prefix)."""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return str(value)


def render(table: pa.Table, console: Console, *, title: str | None = None) -> None:
    """A result as a rich table."""
    out = Table(title=title, show_lines=False)
    for name in table.column_names:
        out.add_column(name)
    for row in table.to_pylist():
        out.add_row(*(_cell(row[name]) for name in table.column_names))
    console.print(out)
    console.print(f"{table.num_rows} row{'s' if table.num_rows != 1 else ''}", style="dim")


@lake_app.command()
def query(
    sql: Annotated[
        str, typer.Argument(help="SQL over the views reviews, dead_letters, alerts, labels.")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the rows as a JSON array instead.")
    ] = False,
    lake: Annotated[
        str | None, typer.Option(help="Lake root: a directory or s3://bucket/prefix.")
    ] = None,
    athena: Annotated[
        bool, typer.Option("--athena", help="Run through Athena (needs lake.glue_database).")
    ] = False,
) -> None:
    """Answer SQL over the lake."""
    from stream.lake_factory import build_lake_query

    settings = Settings()
    if lake is not None:
        settings = settings.model_copy(update={"lake_path": lake})
    try:
        result = build_lake_query(settings, athena=athena).query(sql)
    except ConfigurationError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    except Exception as err:
        typer.echo(f"error: {describe(err)}", err=True)  # URLs without credentials or paths
        raise typer.Exit(1) from err
    if as_json:
        rows = [{k: _json_value(v) for k, v in row.items()} for row in result.to_pylist()]
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, default=str) + "\n")
        return
    render(result, Console())
