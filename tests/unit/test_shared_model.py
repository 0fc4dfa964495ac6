"""One loaded model per process and directory: the in-process scorer and the monitors (its
vocabulary, confusion matrix and explanations) judge by the same instance."""

from __future__ import annotations

import shutil
from pathlib import Path

from endpoint.inference import default_model_dir
from stream.app import monitor_config
from stream.monitor_cli import load_model as cli_model
from stream.scoring import InProcessScorer, load_model
from stream.settings import EndpointSettings, Settings


def test_the_scorer_and_the_monitors_judge_by_one_model() -> None:
    scorer = InProcessScorer()
    _config, vocabulary, explainer = monitor_config(Settings())
    assert explainer.args[0] is scorer.model
    assert vocabulary is scorer.model.vocabulary
    assert cli_model() is scorer.model


def test_a_directory_is_loaded_once_however_it_is_named(tmp_path: Path) -> None:
    shipped = load_model()
    assert load_model(default_model_dir()) is shipped
    copy = tmp_path / "model"
    shutil.copytree(default_model_dir(), copy)
    other = load_model(tmp_path / "." / "model")
    assert other is not shipped and other.version == shipped.version
    assert load_model(copy) is other
    settings = Settings(endpoint=EndpointSettings(model_dir=copy))
    assert InProcessScorer(copy).model is other
    assert monitor_config(settings)[2].args[0] is other
    # a directory changed while the process runs is read at its next start, by both
    (copy / "model.json").write_text("{}", encoding="utf-8")
    assert load_model(copy) is other
