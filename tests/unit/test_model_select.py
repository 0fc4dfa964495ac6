"""``model select``: a FLAML search over the recipe, ranked on the same validation split
training uses, the winner calibrated and judged on reviews that neither saw."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from endpoint.card import CARD_FILE
from endpoint.model import MODEL_FILE, SentimentModel
from endpoint.select import Candidate, Selection, params_of, recipe, select
from endpoint.train import DEFAULT_DATA, Reviews, TrainConfig, load_reviews, train
from tests.toy_reviews import write_toy_reviews

pytestmark = pytest.mark.skipif(not DEFAULT_DATA.is_file(), reason="needs ../shared/data")


@pytest.fixture(scope="module")
def reviews() -> Reviews:
    """1,500 real reviews (a seeded sample), so a candidate fits in well under a second."""
    full = load_reviews(DEFAULT_DATA)
    idx = np.sort(np.random.default_rng(7).choice(len(full), 1500, replace=False))
    return Reviews([full.texts[i] for i in idx], full.labels[idx], [], full.source, full.sha256)


@pytest.fixture(scope="module")
def selection(reviews: Reviews) -> Selection:
    base = TrainConfig(seed=3, calibration_folds=5)
    return select(reviews, budget_s=300, max_trials=4, min_reviews_per_s=0, base=base)


def test_recipe_and_its_search_point_round_trip() -> None:
    shipped = TrainConfig()
    assert params_of(shipped) == {
        "word_max_n": 2,
        "min_df": 2,
        "sublinear_tf": True,
        "char": "none",
        "C": 1.0,
        "class_weight": "none",
    }
    assert recipe(params_of(shipped)) == shipped
    chars = replace(shipped, char_ngrams=(3, 5), class_weight="balanced", C=0.5)
    assert recipe(params_of(chars)) == chars
    assert recipe({**params_of(shipped), "C": 0.9999999999999998}).C == 1.0
    assert recipe({**params_of(shipped), "C": 0.123456}).C == 0.1235
    with pytest.raises(ValueError, match="char must be one of"):
        recipe({**params_of(shipped), "char": "1-9"})
    with pytest.raises(ValueError, match="outside the search space"):
        params_of(replace(shipped, char_ngrams=(1, 9)))


def test_a_candidate_describes_its_recipe() -> None:
    def described(config: TrainConfig) -> str:
        params = params_of(config)
        return Candidate(0, params, 0.5, 0.5, {}, 1.0, 1, 0.1, True).describe()

    assert described(TrainConfig()) == "words 1-2, min_df 2, C 1"
    assert (
        described(
            TrainConfig(
                word_ngrams=(1, 1),
                char_ngrams=(3, 5),
                sublinear_tf=False,
                C=0.287,
                class_weight="balanced",
            )
        )
        == "words 1 + chars 3-5, min_df 2, raw tf, C 0.287, balanced"
    )


def test_the_search_starts_at_the_shipped_recipe_and_ranks_best_first(
    selection: Selection,
) -> None:
    board = selection.leaderboard
    assert len(board) == 4
    assert sorted(c.trial for c in board) == [0, 1, 2, 3]
    first = next(c for c in board if c.trial == 0)
    assert recipe(first.params, TrainConfig(seed=3)) == TrainConfig(seed=3)
    f1s = [c.macro_f1 for c in board]
    assert f1s == sorted(f1s, reverse=True)
    assert selection.winner is board[0]
    assert all(c.feasible and c.reviews_per_s > 0 and c.size_bytes > 0 for c in board)
    assert len({json.dumps(c.params, sort_keys=True) for c in board}) == 4


def test_candidates_are_ranked_on_the_split_training_validates_on(
    reviews: Reviews, selection: Selection
) -> None:
    # The first candidate is the shipped recipe uncalibrated: training it on the same
    # search part gives exactly its leaderboard figures.
    first = next(c for c in selection.leaderboard if c.trial == 0)
    search_rows = selection.split["train"] + selection.split["validation"]
    assert search_rows + selection.split["holdout"] == len(reviews) == 1500
    assert selection.split["holdout"] == 300
    from endpoint.select import _holdout_split, _subset

    search_idx, holdout_idx = _holdout_split(reviews, 0.2, 3)
    assert not set(search_idx) & set(holdout_idx)
    plain = train(_subset(reviews, search_idx), TrainConfig(seed=3, calibration_folds=0))
    assert plain.macro_f1 == first.macro_f1
    assert plain.accuracy == first.accuracy


def test_the_winner_is_calibrated_and_judged_on_the_held_out_rows(
    selection: Selection, tmp_path: Path
) -> None:
    from endpoint.train import save_model

    result = selection.result
    # its ECE before and after are on the 300 held-out reviews here (refit); the no-refit
    # winner's, on its 240 validation reviews, are checked in the test below
    assert result.calibration is not None
    winner = recipe(selection.winner.params, TrainConfig(seed=3, calibration_folds=5))
    expected = {k: v for k, v in asdict(winner).items() if k != "name"}
    assert result.model.metadata["training"]["config"] == json.loads(json.dumps(expected))
    root = save_model(result, tmp_path / "winner")
    loaded = SentimentModel.load(root)
    meta = json.loads((root / MODEL_FILE).read_text())
    sel = meta["selection"]
    assert sel["trials"] == 4 and sel["split"]["holdout"] == 300
    assert sel["holdout"]["rows"] == 300 and 0.3 < sel["holdout"]["macro_f1"] < 1.0
    assert [c["trial"] for c in sel["leaderboard"]] == [c.trial for c in selection.leaderboard]
    assert loaded.calibration is not None
    card = (root / CARD_FILE).read_text()
    assert "## Selection" in card and "| rank | recipe | macro-F1 |" in card


def test_the_winner_is_trained_again_on_the_whole_search_part(
    reviews: Reviews, selection: Selection
) -> None:
    """By default the winner's recipe is trained again on the training and validation reviews
    together: its trainer's validation rows are then exactly the held-out ones."""
    from endpoint.select import _holdout_split, _subset, format_leaderboard

    assert selection.refit
    result, held = selection.result, selection.holdout
    search_idx, holdout_idx = _holdout_split(reviews, 0.2, 3)
    assert result.n_validation == held["rows"] == len(holdout_idx) == 300
    assert result.n_train == len(search_idx) == 1200
    assert (result.macro_f1, result.accuracy) == (held["macro_f1"], held["accuracy"])
    assert result.ece == pytest.approx(held["expected_calibration_error"], abs=1e-12)
    config = recipe(selection.winner.params, TrainConfig(seed=3, calibration_folds=5))
    again = train(reviews, replace(config, test_size=0.2))
    probe = [reviews.texts[i] for i in holdout_idx[:50]]
    assert np.array_equal(result.model.predict_proba(probe), again.model.predict_proba(probe))
    board = format_leaderboard(selection)
    assert "trained again on all 1200 search reviews" in board
    # the winner kept as ranked (--no-refit): fitted on the 960 training reviews only
    kept = select(
        reviews,
        budget_s=300,
        max_trials=4,
        min_reviews_per_s=0,
        base=TrainConfig(seed=3, calibration_folds=5),
        refit=False,
    )
    assert kept.winner.params == selection.winner.params
    assert (kept.result.n_train, kept.result.n_validation) == (960, 240)
    assert kept.result.calibration is not None
    assert kept.result.ece < kept.result.ece_uncalibrated
    plain = train(_subset(reviews, search_idx), config)
    assert np.array_equal(kept.result.model.predict_proba(probe), plain.model.predict_proba(probe))
    assert not np.array_equal(
        kept.result.model.predict_proba(probe), again.model.predict_proba(probe)
    )
    assert "trained again" not in format_leaderboard(kept)


def test_a_speed_budget_no_candidate_meets_is_a_clear_error(reviews: Reviews) -> None:
    with pytest.raises(ValueError, match=r"no candidate scores 1,000,000,000 reviews/s; the fast"):
        select(reviews, budget_s=300, max_trials=2, min_reviews_per_s=1e9)


def test_model_select_command_prints_the_leaderboard_and_saves_the_winner(
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from stream.cli import app

    data = write_toy_reviews(tmp_path / "reviews.csv", 300)
    out = tmp_path / "m"
    args = ["model", "select", "--data", str(data), "--out", str(out), "--max-trials", "2"]
    result = CliRunner().invoke(app, [*args, "--min-reviews-per-s", "0"])
    assert result.exit_code == 0, result.output
    assert "macro-F1" in result.output and "held-out (60 reviews" in result.output
    assert (out / MODEL_FILE).is_file() and (out / CARD_FILE).is_file()
    too_slow = CliRunner().invoke(app, [*args, "--min-reviews-per-s", "1e12"])
    assert too_slow.exit_code == 1 and "no candidate scores" in too_slow.output


def test_model_select_rejects_a_transformer_grid_it_cannot_train(tmp_path: Path) -> None:
    """A bad grid value is a usage error before any search or fine-tuning starts."""
    from typer.testing import CliRunner

    from stream.cli import app

    data = write_toy_reviews(tmp_path / "reviews.csv", 30)
    args = ["model", "select", "--data", str(data), "--out", str(tmp_path / "m")]
    bad = ["--transformer", "minilm", "--learning-rate", "1e-4", "--learning-rate", "0"]
    result = CliRunner().invoke(app, [*args, *bad])
    assert result.exit_code == 2, result.output
    assert "learning_rate must be > 0" in result.output
    assert not (tmp_path / "m").exists()
