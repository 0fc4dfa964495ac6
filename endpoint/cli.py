"""Command-line sub-apps for the model and the local endpoint, mounted by the main CLI::

    from endpoint.cli import endpoint_app, model_app
    app.add_typer(model_app, name="model")
    app.add_typer(endpoint_app, name="endpoint")

Commands:

* ``model train [--data CSV] [--out DIR] [--seed N] [--c C]``: train, print accuracy,
  macro-F1 and the confusion matrix, save the model directory (default: the shipped one);
* ``model select [--data CSV] [--out DIR] [--budget-minutes N] [--min-reviews-per-s R]``:
  search the recipe's hyper-parameters, print the leaderboard, save the calibrated winner
  (``endpoint.select``);
* ``model package [--model-dir DIR] [--out model.tar.gz]``: build the SageMaker artifact;
* ``model importance [--data CSV] [--top N] [--model-dir DIR]``: the global importance table
  (mean absolute contribution per term and class over the reviews of ``--data``);
* ``explain TEXT [--top N] [--model-dir DIR]`` (mounted at the top level by the main CLI):
  the exact per-term contributions of one review, coloured by direction;
* ``endpoint serve [--host H] [--port P] [--workers N] [--model-dir DIR]``: run the local
  SageMaker-compatible endpoint (port default ``$SAGEMAKER_BIND_TO_PORT``, else 8080);
* ``endpoint deploy --s3-uri s3://bucket/prefix --role ARN [--endpoint-name N] [--region R]
  [--instance-type T] [--instance-count N] [--capture-percent P] ... [--dry-run]``: upload
  the artifact and create or update the SageMaker endpoint (``endpoint.deploy``); the dry run
  prints the requests as JSON and needs no credentials.

Not part of the SageMaker artifact (it uses typer and rich).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from endpoint.deploy import DeployOptions
    from endpoint.model import SentimentModel
    from endpoint.train import TrainResult

__all__ = ["LABEL_SOURCES", "endpoint_app", "explain_command", "model_app"]

model_app = typer.Typer(
    help="Train and package the sentiment model.", no_args_is_help=True, add_completion=False
)
endpoint_app = typer.Typer(
    help="Serve the model locally or deploy it to SageMaker.",
    no_args_is_help=True,
    add_completion=False,
)
_console = Console()

#: ``--model-dir``: an existing model directory (None: the shipped model).
_ModelDirOption = Annotated[
    Path | None,
    typer.Option(exists=True, file_okay=False, help="Model directory; default: shipped."),
]
_DataOption = Annotated[
    Path | None,
    typer.Option(
        exists=True,
        dir_okay=False,
        help="Reviews CSV (sentiment, review_body); default ../shared/data/reviews.csv.",
    ),
]
_LengthStepOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Transformer: batches are padded to a multiple of this many tokens (each "
        "distinct length compiles once more; on a GPU, --max-length's value makes one "
        "shape) \\[default: 16].",
    ),
]


#: Named sources of extra labelled reviews for ``model train --labels NAME``: each returns
#: (texts, classes -1/0/1). The project's CLI registers ``lake`` (endpoint/ itself reads no
#: lake: its artifact runs alone in the model container).
LABEL_SOURCES: dict[str, Callable[[], tuple[list[str], list[int]]]] = {}


def _extra_labels(name: str) -> tuple[list[str], list[int]]:
    if name in LABEL_SOURCES:
        return LABEL_SOURCES[name]()
    path = Path(name)
    if not path.exists():
        known = ", ".join(sorted(LABEL_SOURCES)) or "none"
        raise typer.BadParameter(
            f"{name}: neither a label source ({known}) nor a Parquet file", param_hint="--labels"
        )
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["review_text", "label"])
    return (
        [str(t) for t in table.column("review_text").to_pylist()],
        [int(v) for v in table.column("label").to_pylist()],
    )


class Flavour(StrEnum):
    """The model flavours ``model train`` builds."""

    tfidf = "tfidf"
    minilm = "minilm"
    mpnet = "mpnet"
    ensemble = "ensemble"


@model_app.command("train")
def train_command(
    data: _DataOption = None,
    out: Annotated[
        Path | None, typer.Option(file_okay=False, help="Model directory; default: shipped.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the stratified 80/20 split.")] = 42,
    c: Annotated[
        float, typer.Option("--c", min=1e-6, help="Inverse regularisation strength.")
    ] = 1.0,
    labels: Annotated[
        str | None,
        typer.Option(
            help="Add human labels to the training part: `lake` (the lake's labels/, joined "
            "with their reviews) or a Parquet file with review_text and label columns.",
        ),
    ] = None,
    calibration: Annotated[
        Literal["vector", "bcts", "auto"],
        typer.Option(
            help="vector: a temperature per class (default); bcts: one temperature "
            "(bias-corrected temperature scaling). Both with a bias per class. auto: the one "
            "of the smaller 5-fold cross-validated log loss on the reviews that fit it.",
        ),
    ] = "vector",
    calibration_folds: Annotated[
        int,
        typer.Option(help="Folds whose out-of-fold scores fit the calibration (0: none)."),
    ] = 10,
    flavour: Annotated[
        Flavour,
        typer.Option(
            help="tfidf: TF-IDF + logistic regression (the shipped default); minilm: "
            "all-MiniLM-L6-v2 fine-tuned; mpnet: all-mpnet-base-v2, its top layers "
            "fine-tuned (both need the transformer extra; see the README); ensemble: the "
            "--member transformer stacked with TF-IDF trained on the same rows.",
        ),
    ] = Flavour.tfidf,
    member: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="Ensemble: a minilm or mpnet model directory trained on --data.",
        ),
    ] = None,
    max_length: Annotated[
        int, typer.Option(min=3, max=512, help="Transformer: tokens a review is truncated to.")
    ] = 128,
    epochs: Annotated[
        int | None,
        typer.Option(min=1, help="Transformer: passes over the data \\[default: the recipe's]."),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(min=1, help="Transformer: reviews per step \\[default: the recipe's]."),
    ] = None,
    frozen_layers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Transformer: bottom layers kept pre-trained \\[default: the recipe's: "
            "minilm 0, mpnet 9].",
        ),
    ] = None,
    learning_rate: Annotated[
        float | None,
        typer.Option(
            help="Transformer: peak learning rate \\[default: the recipe's, 5e-5].",
        ),
    ] = None,
    length_step: _LengthStepOption = None,
) -> None:
    """Train on a stratified 80 % split, validate on the rest, save the model. With
    --labels, also train without them and report macro-F1 before and after (same split).
    A transformer flavour is fine-tuned on the training part less a 10 % share that fits its
    calibration; it is written to --out (default: ``<flavour>-model``), never over the
    shipped model. The ensemble flavour stacks the --member transformer with the TF-IDF
    recipe fitted on the rows that transformer was fine-tuned on; its weights and calibration
    are fitted on the member's calibration share, and it is validated on the same reviews."""
    from endpoint.train import (
        DEFAULT_DATA,
        DEFAULT_MODEL_DIR,
        TrainConfig,
        load_reviews,
        save_model,
        train_and_save,
        train_with_labels,
    )

    data_path = data or DEFAULT_DATA
    if not data_path.is_file():
        raise typer.BadParameter(f"{data_path} not found", param_hint="--data")
    if (member is not None) != (flavour is Flavour.ensemble):
        raise typer.BadParameter(
            "--member is the ensemble flavour's, and that flavour needs it", param_hint="--member"
        )
    if member is not None:
        _stack_command(data_path, member, out or Path("ensemble-model"), calibration)
        return
    if flavour is not Flavour.tfidf:
        if labels is not None:
            raise typer.BadParameter("--labels is for the tfidf flavour", param_hint="--labels")
        _finetune_command(
            data_path,
            out or Path(f"{flavour.value}-model"),
            FinetuneOptions(
                flavour.value,
                max_length,
                epochs,
                batch_size,
                frozen_layers,
                learning_rate,
                length_step,
                seed,
                calibration,
            ),
        )
        return
    try:
        config = TrainConfig(
            seed=seed, C=c, calibration_method=calibration, calibration_folds=calibration_folds
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    if labels is None:
        with _console.status("training..."):
            result = train_and_save(data_path, out or DEFAULT_MODEL_DIR, config)
    else:
        texts, classes = _extra_labels(labels)
        with _console.status("training without and with the human labels..."):
            report = train_with_labels(load_reviews(data_path), texts, classes, config)
        result = report.after
        save_model(result, out or DEFAULT_MODEL_DIR)
        table = Table(title=f"human labels from {labels}: {report.added} added to training")
        for column in ("model", "training reviews", "accuracy", "macro-F1"):
            table.add_column(column, justify="left" if column == "model" else "right")
        for name, r in (("before", report.before), ("after", report.after)):
            table.add_row(name, str(r.n_train), f"{r.accuracy:.4f}", f"{r.macro_f1:.4f}")
        _console.print(table)
        _console.print(
            f"labels added: {report.added}; left out (text in the validation split): "
            f"{report.held_out}; macro-F1 change: "
            f"{report.after.macro_f1 - report.before.macro_f1:+.4f}"
        )
    _print_result(result)


@dataclass(frozen=True)
class FinetuneOptions:
    """``model train``'s options for a transformer flavour."""

    flavour: str
    max_length: int
    epochs: int | None
    batch_size: int | None
    frozen_layers: int | None
    learning_rate: float | None
    length_step: int | None
    seed: int
    calibration: Literal["vector", "bcts", "auto"]


def _finetune_command(data: Path, out: Path, options: FinetuneOptions) -> None:
    from endpoint.finetune import FinetuneConfig, finetune_and_save
    from endpoint.transformer import MissingExtra

    try:
        config = FinetuneConfig.recipe(
            options.flavour,
            max_length=options.max_length,
            epochs=options.epochs,
            batch_size=options.batch_size,
            frozen_layers=options.frozen_layers,
            learning_rate=options.learning_rate,
            length_step=options.length_step,
            seed=options.seed,
            calibration_method=options.calibration,
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err

    def progress(epoch: int, epochs: int, step: int, steps: int, loss: float, s: float) -> None:
        if epoch == 0:
            _console.print(f"frozen layers' outputs  batch {step}/{steps}  {s:.0f} s")
        else:
            _console.print(
                f"epoch {epoch}/{epochs}  step {step}/{steps}  loss {loss:.4f}  {s:.0f} s"
            )

    try:
        result = finetune_and_save(data, out, config, progress)
    except (MissingExtra, ValueError) as err:  # ValueError: e.g. --frozen-layers too many
        _console.print(f"[red]{err}[/]")
        raise typer.Exit(2) from None
    _print_result(result)


def _stack_command(
    data: Path, member: Path, out: Path, calibration: Literal["vector", "bcts", "auto"]
) -> None:
    from endpoint.stack import StackConfig, stack_and_save
    from endpoint.transformer import MissingExtra

    with _console.status("training the TF-IDF member, weighing and validating the ensemble..."):
        try:
            result = stack_and_save(data, member, out, StackConfig(calibration_method=calibration))
        except (MissingExtra, ValueError) as err:  # e.g. --data not the member's data
            _console.print(f"[red]{err}[/]")
            raise typer.Exit(2) from None
    classifier = result.model.metadata["classifier"]
    weights = ", ".join(f"{k} {v:.2f}" for k, v in classifier["weights"].items())
    singles = ", ".join(
        f"{k} {v:.4f}" for k, v in classifier["members_macro_f1_on_validation"].items()
    )
    _console.print(f"weights: {weights}; each member alone, macro-F1: {singles}")
    _print_result(result)


def _print_result(result: TrainResult) -> None:
    from endpoint.model import LABELS

    m = result.model
    _console.print(
        f"[bold]{m.name}[/] version [bold]{m.version}[/]: {m.size_text}, "
        f"{result.n_train} training reviews, {result.seconds:.1f} s"
    )
    _console.print(
        f"validation ({result.n_validation} reviews): accuracy [bold]{result.accuracy:.4f}[/],"
        f" macro-F1 [bold]{result.macro_f1:.4f}[/]"
    )
    table = Table(title="confusion matrix (rows: true, columns: predicted)")
    table.add_column("true \\ predicted")
    for label in LABELS:
        table.add_column(label, justify="right")
    table.add_column("recall", justify="right")
    for k, label in enumerate(LABELS):
        row = result.confusion[k]
        table.add_row(
            label, *(str(int(v)) for v in row), f"{result.per_class[label]['recall']:.3f}"
        )
    _console.print(table)
    _console.print(f"saved to {result.model_dir}")


@model_app.command("select")
def select_command(
    data: _DataOption = None,
    out: Annotated[
        Path, typer.Option(file_okay=False, help="Where the winner's model directory goes.")
    ] = Path("selected-model"),
    budget_minutes: Annotated[
        float, typer.Option(min=0.05, help="Time for the search (the winner's training after).")
    ] = 5.0,
    min_reviews_per_s: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Speed budget: a candidate scoring fewer reviews/s in one process is not "
            "picked, whatever its macro-F1.",
        ),
    ] = 1000.0,
    max_trials: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many candidates.")
    ] = None,
    holdout: Annotated[
        float,
        typer.Option(
            min=0.01, max=0.9, help="Share of the rows held out from search and training."
        ),
    ] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the splits and of the search.")] = 42,
    top: Annotated[int, typer.Option(min=1, help="Leaderboard rows to print.")] = 10,
    transformer: Annotated[
        list[Flavour] | None,
        typer.Option(
            help="Also fine-tune this transformer flavour as a candidate (repeatable; minilm "
            "or mpnet; outside the search's budget: about 30-40 minutes each on 2 cores at "
            "the recipes' defaults).",
        ),
    ] = None,
    max_length: Annotated[
        int, typer.Option(min=3, max=512, help="Transformer candidates: truncation length.")
    ] = 128,
    epochs: Annotated[
        list[int] | None,
        typer.Option(
            min=1,
            help="Transformer candidates: epochs (repeatable: one candidate per value, times "
            "the learning rates) \\[default: each recipe's].",
        ),
    ] = None,
    learning_rate: Annotated[
        list[float] | None,
        typer.Option(
            help="Transformer candidates: peak learning rate (repeatable, as --epochs) "
            "\\[default: each recipe's].",
        ),
    ] = None,
    frozen_layers: Annotated[
        list[int] | None,
        typer.Option(
            min=0,
            help="Transformer candidates: bottom encoder layers kept pre-trained (repeatable, "
            "as --epochs; fewer frozen layers train more of the encoder, slower) "
            "\\[default: each recipe's].",
        ),
    ] = None,
    length_step: _LengthStepOption = None,
    ensemble: Annotated[
        bool,
        typer.Option(
            help="Also stack each transformer candidate with the TF-IDF recipe (the ensemble "
            "flavour), one more candidate each (a minute or two).",
        ),
    ] = True,
    refit: Annotated[
        bool,
        typer.Option(
            help="Train the winner again on the whole search part (its training and "
            "validation reviews) before judging it on the held-out part; --no-refit keeps "
            "the candidate as ranked (a transformer winner's refit is one more fine-tuning).",
        ),
    ] = True,
) -> None:
    """Search the recipe's hyper-parameters (FLAML) on a validation split, print the
    leaderboard, and save the best candidate that meets the speed budget, calibrated, with
    its figures on a held-out split that the search and the training never saw."""
    from endpoint.finetune import grid
    from endpoint.select import format_leaderboard, select
    from endpoint.train import DEFAULT_DATA, TrainConfig, load_reviews, save_model
    from endpoint.transformer import MissingExtra

    try:
        transformers = grid(
            [f.value for f in transformer or [] if f is not Flavour.tfidf],
            epochs=epochs or (),
            learning_rates=learning_rate or (),
            frozen_layers=frozen_layers or (),
            max_length=max_length,
            length_step=length_step,
            seed=seed,
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err

    data_path = data or DEFAULT_DATA
    if not data_path.is_file():
        raise typer.BadParameter(f"{data_path} not found", param_hint="--data")
    reviews = load_reviews(data_path)
    with _console.status("searching...") as status:

        def progress(c: Any) -> None:
            status.update(
                f"searching: {c.trial + 1} candidates; last macro-F1 {c.macro_f1:.4f} at "
                f"{c.reviews_per_s:,.0f} reviews/s ({c.describe()})"
            )

        try:
            selection = select(
                reviews,
                budget_s=budget_minutes * 60,
                min_reviews_per_s=min_reviews_per_s,
                max_trials=max_trials,
                holdout_size=holdout,
                base=TrainConfig(seed=seed),
                progress=progress,
                transformers=transformers,
                ensembles=ensemble,
                refit=refit,
            )
        except (ValueError, MissingExtra) as err:
            _console.print(f"[red]model select:[/] {err}")
            raise typer.Exit(1) from None
    typer.echo(format_leaderboard(selection, top))
    path = save_model(selection.result, out)
    _console.print(f"saved the winner to {path}")


@model_app.command("package")
def package_command(
    model_dir: _ModelDirOption = None,
    out: Annotated[Path, typer.Option(dir_okay=False, help="Archive to write.")] = Path(
        "model.tar.gz"
    ),
) -> None:
    """Build the SageMaker model.tar.gz (model files plus code/inference.py)."""
    from endpoint.artifact import build_artifact

    path = build_artifact(out, model_dir)
    _console.print(f"wrote {path} ({path.stat().st_size} bytes)")


def _tfidf_model(model_dir: Path | None) -> SentimentModel:
    """The TF-IDF model in ``model_dir`` (default: the shipped one): explanations are per-term
    contributions, which only that flavour has."""
    from endpoint.inference import model_fn
    from endpoint.model import SentimentModel
    from endpoint.train import DEFAULT_MODEL_DIR

    model = model_fn(model_dir or DEFAULT_MODEL_DIR)
    if not isinstance(model, SentimentModel):
        raise typer.BadParameter(
            f"explanations are per-term contributions of the tfidf flavour; {model_dir} holds "
            f"the {model.flavour} flavour",
            param_hint="--model-dir",
        )
    return model


def _signed(value: float, digits: int = 3) -> str:
    """A contribution coloured by its direction (green raises the class score, red lowers)."""
    colour = "green" if value > 0 else "red" if value < 0 else "dim"
    return f"[{colour}]{value:+.{digits}f}[/]"


def explain_command(
    text: Annotated[str, typer.Argument(help="The review text to explain.")],
    top: Annotated[int, typer.Option(min=1, help="Terms to list (largest first).")] = 15,
    model_dir: _ModelDirOption = None,
) -> None:
    """Explain one review: each term's exact contribution to each class score."""
    from endpoint.explain import explain
    from endpoint.model import LABELS

    model = _tfidf_model(model_dir)
    [e] = explain(model, [text], top)
    [probs] = model.predict_proba([text]).tolist()
    k = e.label + 1
    mix = ", ".join(f"{label} {p:.1%}" for label, p in zip(LABELS, probs, strict=True))
    _console.print(f"[bold]{LABELS[k]}[/] ({mix})")
    table = Table(title=f"contributions to each class score (sorted by {LABELS[k]})")
    table.add_column("term")
    table.add_column("tf-idf", justify="right")
    for label in LABELS:
        table.add_column(label, justify="right", style="bold" if label == LABELS[k] else None)
    table.add_row("[dim](intercept)[/]", "", *(_signed(v) for v in e.base))
    for t in e.terms:
        table.add_row(escape(t.term), f"{t.value:.3f}", *(_signed(v) for v in t.contributions))
    if any(e.remainder):
        table.add_row("[dim](other terms)[/]", "", *(_signed(v) for v in e.remainder))
    table.add_row("[bold]score[/]", "", *(f"[bold]{v:+.3f}[/]" for v in e.logits))
    _console.print(table)
    if not e.terms:
        _console.print("[dim]no term of this text is in the model's vocabulary[/]")


@model_app.command("importance")
def importance_command(
    data: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Reviews CSV; default the training data."),
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="Terms to list.")] = 25,
    model_dir: _ModelDirOption = None,
) -> None:
    """Global importance: mean |contribution| per term and class over a set of reviews."""
    from endpoint.explain import global_importance
    from endpoint.model import LABELS
    from endpoint.train import DEFAULT_DATA, load_reviews

    model = _tfidf_model(model_dir)
    texts = load_reviews(data or DEFAULT_DATA).texts
    rows = global_importance(model, texts, top)
    table = Table(title=f"mean |contribution| over {len(texts)} reviews (signed mean beside)")
    table.add_column("term")
    table.add_column("doc. freq.", justify="right")
    for label in LABELS:
        table.add_column(label, justify="right")
    for r in rows:
        table.add_row(
            escape(r.term),
            f"{r.document_frequency:.1%}",
            *(f"{a:.4f} {_signed(m, 4)}" for a, m in zip(r.mean_abs, r.mean, strict=True)),
        )
    _console.print(table)


@endpoint_app.command("serve")
def serve_command(
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Port; default $SAGEMAKER_BIND_TO_PORT or 8080."),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    model_dir: _ModelDirOption = None,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    body_timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds a request body may take (else 408).")
    ] = 10.0,
    idle_timeout: Annotated[
        float, typer.Option(min=0.001, help="Close a connection idle this many seconds.")
    ] = 30.0,
    auth_token_file: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help="Require 'Authorization: Bearer <first line of this file>' on every route "
            "but /ping; default $ENDPOINT_AUTH_TOKEN_FILE, else the token in "
            "$ENDPOINT_AUTH_TOKEN, else no check.",
        ),
    ] = None,
) -> None:
    """Serve /ping, /invocations and /endpoints/{name}/invocations until Ctrl-C."""
    import logging

    from endpoint.server import DEFAULT_PORT, PORT_ENV, read_auth_token, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s")
    bind_port = port if port is not None else int(os.environ.get(PORT_ENV, DEFAULT_PORT))
    try:
        token = read_auth_token(auth_token_file)
    except (OSError, ValueError) as err:
        raise typer.BadParameter(str(err), param_hint="--auth-token-file") from None
    serve(
        host,
        bind_port,
        workers,
        model_dir,
        body_timeout_s=body_timeout,
        idle_timeout_s=idle_timeout,
        auth_token=token,
    )


class DeployAction(StrEnum):
    auto = "auto"
    create = "create"
    update = "update"


@endpoint_app.command("deploy")
def deploy_command(
    s3_uri: Annotated[
        str,
        typer.Option(
            "--s3-uri", help="s3://bucket/prefix for the artifact (and data capture by default)."
        ),
    ],
    role: Annotated[str, typer.Option(help="IAM execution role ARN for the model.")],
    endpoint_name: Annotated[
        str, typer.Option(envvar="SENTIMENT_ENDPOINT__NAME", help="Endpoint to create or update.")
    ] = "review-sentiment",
    region: Annotated[str, typer.Option(envvar="SENTIMENT_ENDPOINT__REGION")] = "us-east-1",
    instance_type: Annotated[str, typer.Option(help="Instance type.")] = "ml.m5.large",
    instance_count: Annotated[int, typer.Option(min=1, help="Instances.")] = 1,
    framework_version: Annotated[
        str, typer.Option(help="scikit-learn container version (Python 3.10+ for the handler).")
    ] = "1.4-2-py312",
    capture: Annotated[bool, typer.Option(help="Data capture on the endpoint.")] = True,
    capture_s3_uri: Annotated[
        str | None, typer.Option(help="Where captured data goes; default <s3-uri>/data-capture.")
    ] = None,
    capture_percent: Annotated[
        int, typer.Option(min=1, max=100, help="Share of requests captured (percent).")
    ] = 100,
    capture_input: Annotated[bool, typer.Option(help="Capture requests.")] = True,
    capture_output: Annotated[bool, typer.Option(help="Capture responses.")] = True,
    action: Annotated[
        DeployAction, typer.Option(help="auto: create the endpoint, or update it if it exists.")
    ] = DeployAction.auto,
    model_dir: _ModelDirOption = None,
    wait: Annotated[bool, typer.Option(help="Wait until the endpoint is InService.")] = True,
    dry_run: Annotated[
        bool, typer.Option(help="Print the requests as JSON; send nothing (no credentials).")
    ] = False,
) -> None:
    """Upload the model artifact to S3 and create or update the SageMaker endpoint."""
    from endpoint.deploy import DeployOptions

    try:
        options = DeployOptions(
            s3_uri=s3_uri,
            role_arn=role,
            endpoint_name=endpoint_name,
            region=region,
            instance_type=instance_type,
            instance_count=instance_count,
            framework_version=framework_version,
            capture=capture,
            capture_s3_uri=capture_s3_uri,
            capture_percent=capture_percent,
            capture_input=capture_input,
            capture_output=capture_output,
            model_dir=model_dir,
            action=action.value,
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    _deploy(options, dry_run=dry_run, wait=wait)


def _deploy(options: DeployOptions, *, dry_run: bool, wait: bool) -> None:
    """Print the plan's requests (``dry_run``), or send them; a failure exits with 1."""
    from endpoint.deploy import execute, plan_deployment

    plan = plan_deployment(options)
    if dry_run:
        typer.echo(json.dumps(plan.to_json(), indent=2))
        return
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        execute(plan, wait=wait, echo=_console.print)
    except (BotoCoreError, ClientError, ValueError) as err:
        _console.print(f"[bold red]deployment failed:[/] {escape(str(err))}")
        raise typer.Exit(1) from err
