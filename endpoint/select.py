"""Model selection in the manner of SageMaker Autopilot: search the recipe's main
hyper-parameters on a validation split, rank the candidates on a leaderboard, and keep the
best one that scores fast enough for the stream.

The data is split three ways, stratified and seeded:

* a **held-out** part (``holdout_size`` of the rows) that neither the search nor the final
  training ever sees; the winner's figures on it are the honest estimate of how it does;
* the rest, the **search** part, which :func:`endpoint.train.train` splits again exactly as
  it always does (``TrainConfig.test_size``, the same seed) into the training reviews every
  candidate is fitted on and the validation reviews every candidate is ranked on.

Each candidate is one TF-IDF + logistic-regression recipe (:func:`search_space`): word n-gram
length, minimum document frequency, sublinear term frequency, an optional character n-gram
block, the regularisation strength and class weights. FLAML's cost-frugal search (CFO) walks
the space from the cheap end, starting at the shipped recipe, for ``budget_s`` seconds (or
``max_trials``). Candidates are fitted without calibration (it needs ten more fits each), and
scored by the portable model exactly as the stream scores, which also gives their speed
(reviews/s in one process, best of three) and size (the saved model directory). A candidate
slower than ``min_reviews_per_s`` is infeasible, whatever its macro-F1: a stream cannot score
at 500/s what arrives at 5,000/s.

The winner is then trained again with its calibration, by its own trainer, on the whole
search part (``refit``, the default, as FLAML's ``retrain_full`` and Autopilot's final model
do): its recipe run on all the rows split at ``holdout_size`` with the same seed, whose
training part is exactly the search part and whose validation part exactly the held-out one,
so the final model learns from the validation reviews too and its validation figures are its
held-out figures. Without ``refit`` it is trained on the same training reviews as its
candidate, so its validation figures are comparable with the leaderboard's. Either way it is
scored once on the held-out part.

Public API::

    search_space() -> dict                                    # FLAML's space
    recipe(params, base=TrainConfig()) -> TrainConfig          # one point of it
    params_of(config) -> dict                                  # and back
    select(reviews, budget_s=..., min_reviews_per_s=..., ...) -> Selection
    format_leaderboard(selection, top=10) -> str
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .finetune import FinetuneConfig, finetune
from .model import LABELS
from .train import (
    Reviews,
    TrainConfig,
    TrainResult,
    _speed,
    _split,
    _validate,
    build_pipeline,
    export_model,
    train,
)

__all__ = [
    "Candidate",
    "Selection",
    "format_leaderboard",
    "params_of",
    "recipe",
    "search_space",
    "select",
    "selection_metadata",
]

#: The character n-gram block a candidate may add (None: words only).
CHAR_BLOCKS: dict[str, tuple[int, int] | None] = {"none": None, "2-5": (2, 5), "3-5": (3, 5)}


def search_space() -> dict[str, Any]:
    """The hyper-parameters the search varies, as a FLAML search space."""
    from flaml.tune.sample import choice, loguniform, randint

    return {
        "word_max_n": randint(1, 4),  # word n-grams (1, n), n in 1..3
        "min_df": randint(1, 6),
        "sublinear_tf": choice([True, False]),
        "char": choice(list(CHAR_BLOCKS)),
        "C": loguniform(0.03, 30.0),
        "class_weight": choice(["none", "balanced"]),
    }


def params_of(config: TrainConfig) -> dict[str, Any]:
    """The search-space point of a recipe (the inverse of :func:`recipe`)."""
    char = next((k for k, v in CHAR_BLOCKS.items() if v == config.char_ngrams), None)
    if char is None or config.word_ngrams[0] != 1:
        raise ValueError(f"recipe outside the search space: {config}")
    return {
        "word_max_n": config.word_ngrams[1],
        "min_df": config.min_df,
        "sublinear_tf": config.sublinear_tf,
        "char": char,
        "C": config.C,
        "class_weight": config.class_weight or "none",
    }


def recipe(params: Mapping[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """The training recipe at one point of :func:`search_space` (the rest from ``base``);
    ``C`` is kept to 4 significant digits, so a recipe is the one its description names."""
    base = base or TrainConfig()
    if params["char"] not in CHAR_BLOCKS:
        raise ValueError(f"char must be one of {sorted(CHAR_BLOCKS)}, got {params['char']!r}")
    return replace(
        base,
        word_ngrams=(1, int(params["word_max_n"])),
        min_df=int(params["min_df"]),
        sublinear_tf=bool(params["sublinear_tf"]),
        char_ngrams=CHAR_BLOCKS[params["char"]],
        C=float(f"{float(params['C']):.4g}"),  # as the leaderboard prints it
        class_weight="balanced" if params["class_weight"] == "balanced" else None,
    )


@dataclass(frozen=True)
class Candidate:
    """One recipe the search tried, with its figures on the validation reviews."""

    trial: int  #: order in which the search tried it (0: the shipped recipe)
    params: dict[str, Any]
    macro_f1: float
    accuracy: float
    f1: dict[str, float]  #: per class label
    reviews_per_s: float
    size_bytes: int
    fit_s: float
    feasible: bool  #: fast enough for ``min_reviews_per_s``

    def describe(self) -> str:
        p = self.params
        if p.get("flavour") == "ensemble":
            member = Candidate.describe(replace(self, params={**p, "flavour": p["member"]}))
            w = float(p["weight"])
            return f"ensemble: {member} x {w:.2f} + TF-IDF x {1 - w:.2f}"
        if p.get("flavour", "tfidf") != "tfidf":
            frozen = int(p.get("frozen_layers", 0))
            top = f" above {frozen} frozen layers" if frozen else ""
            return (
                f"{p['flavour']} fine-tuned{top}, {p['epochs']} epochs, max length "
                f"{p['max_length']}, lr {p['learning_rate']:g}"
            )
        words = "words 1" if p["word_max_n"] == 1 else f"words 1-{p['word_max_n']}"
        char = "" if p["char"] == "none" else f" + chars {p['char']}"
        weight = ", balanced" if p["class_weight"] == "balanced" else ""
        sub = "" if p["sublinear_tf"] else ", raw tf"
        return f"{words}{char}, min_df {p['min_df']}{sub}, C {p['C']:.3g}{weight}"


@dataclass
class Selection:
    """What :func:`select` found: the leaderboard (best first, feasible ones before the
    rest), the winner trained with its calibration, and its figures on the held-out part."""

    leaderboard: list[Candidate]
    winner: Candidate
    result: TrainResult
    holdout: dict[str, Any]
    min_reviews_per_s: float
    budget_s: float
    search_s: float
    split: dict[str, int]
    #: Whether the winner was trained again on the whole search part (:func:`_refit`).
    refit: bool = False


def _holdout_split(
    reviews: Reviews, holdout_size: float, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    # the trainers' own split: with holdout_size as their test_size, the parts they train
    # and validate on are the search and held-out parts (what _refit relies on)
    search_idx, holdout_idx = _split(reviews, TrainConfig(test_size=holdout_size, seed=seed))
    return np.sort(search_idx), np.sort(holdout_idx)


def _subset(reviews: Reviews, idx: npt.NDArray[np.int64]) -> Reviews:
    return Reviews(
        texts=[reviews.texts[i] for i in idx],
        labels=reviews.labels[idx],
        categories=[reviews.categories[i] for i in idx] if reviews.categories else [],
        source=reviews.source,
        sha256=reviews.sha256,
    )


def _size_bytes(model: Any) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = model.save(Path(tmp) / "model")
        return sum(f.stat().st_size for f in out.rglob("*") if f.is_file())


def _rank_key(c: Candidate) -> tuple[bool, float, float]:
    return (not c.feasible, -c.macro_f1, -c.reviews_per_s)


def select(
    reviews: Reviews,
    *,
    budget_s: float,
    min_reviews_per_s: float = 0.0,
    max_trials: int | None = None,
    holdout_size: float = 0.2,
    base: TrainConfig | None = None,
    progress: Callable[[Candidate], None] | None = None,
    transformers: Sequence[FinetuneConfig] = (),
    ensembles: bool = True,
    refit: bool = True,
) -> Selection:
    """Search recipes for ``budget_s`` seconds (at most ``max_trials``), rank them, and train
    the best feasible one with its calibration. Raises :class:`ValueError` when no candidate
    reaches ``min_reviews_per_s`` (the message names the fastest).

    Each of ``transformers`` (fine-tuning recipes of a transformer flavour) is one more
    candidate, fine-tuned after the search (outside its budget) on the same training reviews
    less its calibration share and ranked on the same validation reviews by its uncalibrated
    figures, like the others; it is kept, calibrated, if it wins. With ``ensembles``, each
    is also stacked with the TF-IDF recipe (:func:`endpoint.stack.stack`: fitted on the same
    rows, weighed and calibrated on that share), one more candidate ranked the same way.

    With ``refit`` the winner is trained again on the whole search part (:func:`_refit`);
    without, the model kept is the one trained on the candidates' training reviews."""
    from flaml.tune.searcher.blendsearch import CFO
    from flaml.tune.tune import run

    if budget_s <= 0:
        raise ValueError("budget_s must be > 0")
    if not 0.0 < holdout_size < 1.0:
        raise ValueError("holdout_size must be in (0, 1)")
    base = base or TrainConfig()
    search_idx, holdout_idx = _holdout_split(reviews, holdout_size, base.seed)
    search = _subset(reviews, search_idx)
    train_idx, valid_idx = _split(search, base)
    x_train = [search.texts[i] for i in train_idx]
    x_valid = [search.texts[i] for i in valid_idx]
    y_train, y_valid = search.labels[train_idx], search.labels[valid_idx]
    board: list[Candidate] = []
    tried: dict[str, dict[str, float]] = {}

    def evaluate(params: dict[str, Any]) -> dict[str, float]:
        config = replace(recipe(params, base), calibration_folds=0)
        point = params_of(config)  # the recipe's own point: C as the recipe keeps it
        key = json.dumps(point, sort_keys=True)
        if key in tried:  # a point the search proposes again is the same recipe: fit once
            return tried[key]
        started = time.perf_counter()
        model = export_model(build_pipeline(config).fit(x_train, y_train))
        fit_s = time.perf_counter() - started
        figures = _validate(model.predict_proba(x_valid), y_valid)
        speed = float(_speed(model, x_valid)["reviews_per_s"])
        candidate = Candidate(
            trial=len(board),
            params=point,
            macro_f1=figures.macro_f1,
            accuracy=figures.accuracy,
            f1={label: figures.per_class[label]["f1"] for label in LABELS},
            reviews_per_s=speed,
            size_bytes=_size_bytes(model),
            fit_s=fit_s,
            feasible=speed >= min_reviews_per_s,
        )
        board.append(candidate)
        if progress is not None:
            progress(candidate)
        tried[key] = {"macro_f1": figures.macro_f1, "reviews_per_s": speed}
        return tried[key]

    space = search_space()
    start_point = params_of(base)
    searcher = CFO(
        metric="macro_f1",
        mode="max",
        space=space,
        points_to_evaluate=[start_point],
        low_cost_partial_config={"word_max_n": 1, "char": "none"},
        cat_hp_cost={"char": [1, 4, 3]},  # relative fit cost of "none", "2-5", "3-5"
        metric_constraints=[("reviews_per_s", ">=", float(min_reviews_per_s))],
        seed=base.seed,
    )
    started = time.perf_counter()
    run(
        evaluate,
        config=space,
        metric="macro_f1",
        mode="max",
        search_alg=searcher,
        time_budget_s=budget_s,
        num_samples=max_trials if max_trials is not None else -1,
        verbose=0,
    )
    search_s = time.perf_counter() - started
    if not board:
        raise ValueError("the search finished no candidate within the budget: raise it")
    # trial -> the fine-tuned or stacked model and the fine-tuning recipe it came from
    fine_tuned: dict[int, tuple[TrainResult, FinetuneConfig]] = {}
    for recipe_ in transformers:
        # split as train() splits it, so its validation reviews are the leaderboard's
        fine = finetune(search, replace(recipe_, test_size=base.test_size, seed=base.seed))
        found = [(fine, _finetune_params(fine))]
        if ensembles:
            found.append(_stack_candidate(search, fine))
        for result_, params in found:
            candidate = _candidate(result_, x_valid, y_valid, params)
            candidate = replace(
                candidate, trial=len(board), feasible=candidate.reviews_per_s >= min_reviews_per_s
            )
            board.append(candidate)
            fine_tuned[candidate.trial] = (result_, recipe_)
            if progress is not None:
                progress(candidate)
    board.sort(key=_rank_key)
    winner = board[0]
    if not winner.feasible:
        fastest = max(board, key=lambda c: c.reviews_per_s)
        raise ValueError(
            f"no candidate scores {min_reviews_per_s:,.0f} reviews/s; the fastest of "
            f"{len(board)} scored {fastest.reviews_per_s:,.0f}/s ({fastest.describe()}): "
            "lower --min-reviews-per-s or scale the scorer out"
        )
    kept, finetuned = fine_tuned.get(winner.trial, (None, None))
    if refit:
        result = _refit(reviews, winner, base, holdout_size, finetuned)
    else:
        result = kept or train(search, recipe(winner.params, base))
    held_x = [reviews.texts[i] for i in holdout_idx]
    held = _validate(result.model.predict_proba(held_x), reviews.labels[holdout_idx])
    holdout = {
        "rows": len(holdout_idx),
        "accuracy": held.accuracy,
        "macro_f1": held.macro_f1,
        "log_loss": held.log_loss,
        "expected_calibration_error": held.ece,
        "per_class": held.per_class,
    }
    selection = Selection(
        leaderboard=board,
        winner=winner,
        result=result,
        holdout=holdout,
        min_reviews_per_s=min_reviews_per_s,
        budget_s=budget_s,
        search_s=search_s,
        split={
            "train": len(train_idx),
            "validation": len(valid_idx),
            "holdout": len(holdout_idx),
        },
        refit=refit,
    )
    result.model.metadata["selection"] = selection_metadata(selection)
    return selection


def _refit(
    reviews: Reviews,
    winner: Candidate,
    base: TrainConfig,
    holdout_size: float,
    finetuned: FinetuneConfig | None,
) -> TrainResult:
    """The winner's recipe trained again, with its calibration, on all of ``reviews`` split
    as :func:`_holdout_split` splits them (``holdout_size``, ``base.seed``): the trainer's
    training part is the search part and its validation part the held-out one.
    ``finetuned``: the fine-tuning recipe of a transformer or ensemble winner."""
    if finetuned is None:
        return train(reviews, replace(recipe(winner.params, base), test_size=holdout_size))
    fine = finetune(reviews, replace(finetuned, test_size=holdout_size, seed=base.seed))
    if winner.params.get("flavour") == "ensemble":
        return _stack_candidate(reviews, fine)[0]
    return fine


def _stack_candidate(search: Reviews, fine: TrainResult) -> tuple[TrainResult, dict[str, Any]]:
    """The fine-tuned ``fine`` stacked with the TF-IDF recipe (:mod:`endpoint.stack`), and
    the params that describe it on the leaderboard."""
    from .stack import stack

    result = stack(search, fine.model)
    result.seconds += fine.seconds  # its member's fine-tuning is part of its fit
    weight = float(result.model.metadata["classifier"]["weights"][fine.model.flavour])
    params = {**_finetune_params(fine), "flavour": "ensemble", "member": fine.model.flavour}
    return result, {**params, "weight": weight}


def _finetune_params(result: TrainResult) -> dict[str, Any]:
    """A fine-tuned candidate's leaderboard params, from its recorded recipe."""
    config = result.model.metadata["training"]["config"]
    keys = ("flavour", "max_length", "epochs", "learning_rate", "batch_size", "frozen_layers")
    return {k: config[k] for k in keys}


def _candidate(
    result: TrainResult,
    x_valid: list[str],
    y_valid: npt.NDArray[np.int64],
    params: dict[str, Any],
) -> Candidate:
    """A fine-tuned or stacked model's figures on the validation reviews ``x_valid`` before
    its calibration (as the TF-IDF candidates are ranked)."""
    model = result.model
    figures = _validate(model.predict_proba(x_valid, calibrated=False), y_valid)
    return Candidate(
        trial=-1,
        params=params,
        macro_f1=figures.macro_f1,
        accuracy=figures.accuracy,
        f1={label: figures.per_class[label]["f1"] for label in LABELS},
        reviews_per_s=float(model.metadata["speed"]["reviews_per_s"]),
        size_bytes=_size_bytes(model),
        fit_s=result.seconds,
        feasible=False,
    )


def selection_metadata(selection: Selection, top: int = 10) -> dict[str, Any]:
    """What ``model.json`` records of the search that picked the model."""
    return {
        "method": "FLAML CFO over the TF-IDF + logistic-regression recipe, plus any "
        "transformer flavour asked for, fine-tuned once per point of its grid and stacked with "
        "the TF-IDF recipe (uncalibrated candidates ranked by validation macro-F1; the winner "
        "trained again with its calibration"
        + (", on the whole search part)" if selection.refit else ")"),
        "budget_s": selection.budget_s,
        "search_s": round(selection.search_s, 1),
        "trials": len(selection.leaderboard),
        "min_reviews_per_s": selection.min_reviews_per_s,
        "split": selection.split,
        "refit": selection.refit,
        "holdout": selection.holdout,
        "leaderboard": [{**asdict(c), "recipe": c.describe()} for c in selection.leaderboard[:top]],
    }


def format_leaderboard(selection: Selection, top: int = 10) -> str:
    """The leaderboard as plain text, then the winner's validation and held-out figures."""
    head = (
        f"{'#':>3s} {'trial':>5s} {'macro-F1':>8s} {'acc':>6s} "
        + " ".join(f"{'F1 ' + label[:3]:>7s}" for label in LABELS)
        + f" {'reviews/s':>10s} {'size MB':>8s} {'fit s':>6s}  recipe"
    )
    lines = [
        f"{len(selection.leaderboard)} candidates in {selection.search_s:.0f} s "
        f"(budget {selection.budget_s:.0f} s); trained on {selection.split['train']}, "
        f"ranked on {selection.split['validation']} validation reviews",
        head,
    ]
    for rank, c in enumerate(selection.leaderboard[:top], 1):
        mark = "" if c.feasible else "  (too slow)"
        lines.append(
            f"{rank:3d} {c.trial:5d} {c.macro_f1:8.4f} {c.accuracy:6.3f} "
            + " ".join(f"{c.f1[label]:7.3f}" for label in LABELS)
            + f" {c.reviews_per_s:10,.0f} {c.size_bytes / 1e6:8.2f} {c.fit_s:6.1f}  "
            + c.describe()
            + mark
        )
    r, h = selection.result, selection.holdout
    if selection.refit:
        search = selection.split["train"] + selection.split["validation"]
        winner = (
            f"winner (trial {selection.winner.trial}) trained again on all {search} search "
            f"reviews, calibrated: ECE on the held-out {r.ece_uncalibrated:.4f} -> {r.ece:.4f}"
        )
    else:
        winner = (
            f"winner (trial {selection.winner.trial}), calibrated: validation macro-F1 "
            f"{r.macro_f1:.4f}, ECE {r.ece_uncalibrated:.4f} -> {r.ece:.4f}"
        )
    lines += [
        winner,
        f"held-out ({h['rows']} reviews neither the search nor the training saw): "
        f"macro-F1 {h['macro_f1']:.4f}, accuracy {h['accuracy']:.4f}, "
        f"ECE {h['expected_calibration_error']:.4f}",
    ]
    return "\n".join(lines)
