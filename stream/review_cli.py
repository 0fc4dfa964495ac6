"""``sentiment-monitor review``: the human-in-the-loop commands (Label Studio).

* ``review setup`` creates the labeling project (idempotent: an existing one is reused);
* ``review send`` sends what the outbox holds (a pipeline with ``SENTIMENT_REVIEW__ENABLED``
  does this by itself every ``send_interval_s``);
* ``review sync`` pulls completed annotations into the lake's ``labels/`` and prints the
  model's accuracy on them: the audit sample's estimate with its interval, apart from the
  samples picked because the model was unsure.

Settings come from the environment (``SENTIMENT_REVIEW__URL``, ``SENTIMENT_REVIEW__TOKEN``,
``SENTIMENT_REVIEW__STATE_PATH``, ``SENTIMENT_LAKE_PATH``, ...).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table

from stream.errors import SentimentMonitorError, describe
from stream.settings import Settings

__all__ = ["review_app"]

review_app = typer.Typer(
    name="review",
    help="Human review of uncertain reviews in Label Studio.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


@review_app.callback()
def review() -> None:
    """Route uncertain reviews to Label Studio and bring the labels back as ground truth."""


def _expected() -> tuple[type[Exception], ...]:
    """What a command reports as one line and exit status 1 instead of a traceback: bad
    settings, a lake that refuses the labels, Label Studio unreachable (``OSError``) or
    answering an HTTP error (``aiohttp.ClientError``: a 401 for a wrong token, a 5xx)."""
    from aiohttp import ClientError

    return (SentimentMonitorError, OSError, ClientError)


def _settings() -> Settings:
    """The settings, or one line naming each invalid field (its value left out: it may be a
    secret) and exit status 1."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as err:
        fields = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors(include_input=False)
        )
        console.print(f"[red]invalid settings: {fields}[/]")
        raise typer.Exit(1) from None


def _fail(err: Exception) -> typer.Exit:
    console.print(f"[red]{describe(err)}[/]")
    if getattr(err, "status", None) in (401, 403):
        console.print("[red]Label Studio refused the token: check SENTIMENT_REVIEW__TOKEN[/]")
    return typer.Exit(1)


@review_app.command()
def setup() -> None:
    """Create the labeling project (three choices, the model's prediction pre-filled)."""
    from stream.review import ReviewStore, ensure_project, review_client

    settings = _settings()

    async def go() -> int:
        store = ReviewStore(settings.review.state_path, max_outbox=settings.review.max_outbox)
        try:
            async with review_client(settings) as client:
                return await ensure_project(client, store, settings.review.project)
        finally:
            store.close()

    try:
        project = asyncio.run(go())
    except _expected() as err:
        raise _fail(err) from err
    console.print(f"project {settings.review.project!r}: id {project} at {settings.review.url}")


@review_app.command()
def send() -> None:
    """Send the outbox to Label Studio now."""
    from stream.review import ReviewSender, ReviewStore, review_client

    settings = _settings()
    r = settings.review

    async def go() -> tuple[int, int]:
        store = ReviewStore(r.state_path, max_outbox=r.max_outbox)
        try:
            async with review_client(settings) as client:
                sender = ReviewSender(client, store, r.project, batch_size=r.send_batch)
                sent = await sender.send_once()
                return sent, store.outbox_size()
        finally:
            store.close()

    try:
        sent, left = asyncio.run(go())
    except _expected() as err:
        raise _fail(err) from err
    console.print(f"sent {sent} tasks; {left} left in the outbox")


@review_app.command()
def sync() -> None:
    """Pull completed annotations into the lake (labels/) and report accuracy on them."""
    from stream.lake_factory import build_lake_writer
    from stream.review import ReviewStore, human_labels, read_labels, review_client, sync_labels

    settings = _settings()
    r = settings.review

    async def go() -> tuple[int, str | None]:
        store = ReviewStore(r.state_path, max_outbox=r.max_outbox)
        try:
            async with review_client(settings) as client:
                result = await sync_labels(
                    client,
                    store,
                    r.project,
                    build_lake_writer(settings).put,
                    salt=r.hash_salt(),
                    compression=settings.lake.compression,
                )
                return result.new, result.path
        finally:
            store.close()

    try:
        new, path = asyncio.run(go())
    except _expected() as err:
        raise _fail(err) from err
    console.print(f"{new} new labels" + (f" -> {path}" if path else ""))
    labels = human_labels(read_labels(settings))
    if not len(labels):
        console.print("no human labels yet")
        return
    samples = Table(title=f"Model vs {len(labels)} human labels, by why they were picked")
    for column in ("sample", "labels", "accuracy", "macro-F1"):
        samples.add_column(column, justify="left" if column == "sample" else "right")
    for sample, s in labels.by_sample().items():
        samples.add_row(sample, str(s.n), f"{s.accuracy:.3f}", f"{s.macro_f1:.3f}")
    console.print(samples)
    audited = labels.audited_accuracy()
    if audited is None:
        console.print("audited accuracy: no audit labels yet")
    else:
        console.print(
            f"audited accuracy (unbiased, random audit sample of {audited.n}): "
            f"{audited.value:.3f} [95% {audited.lower:.3f}, {audited.upper:.3f}]"
        )
    windows = Table(title="Accuracy on human labels per event-time window")
    for column in ("window start (UTC)", "labels", "accuracy", "macro-F1"):
        windows.add_column(column, justify="left" if column.startswith("window") else "right")
    for start, s in labels.by_window(settings.monitor.window.total_seconds()).items():
        when = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d %H:%M")
        windows.add_row(when, str(s.n), f"{s.accuracy:.3f}", f"{s.macro_f1:.3f}")
    console.print(windows)
