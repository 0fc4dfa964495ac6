"""Accuracy without labels: the estimate against the realised accuracy, on real held-out
reviews resampled to known priors (label shift) and to data drifts.

The pool is the shipped model's validation split of ``../shared/data/reviews.csv`` (rebuilt as
``benchmarks/prior_estimation.py`` does and checked against model.json's confusion matrix):
1,200 reviews that neither the model nor its calibration saw. Each run draws a window of
``--window`` reviews (with replacement) and scores it three ways against the accuracy and
macro-F1 its true labels give (the realised values):

* ours: confidence-based performance estimation on the calibrated probabilities reweighted to
  the window's EM prior estimate (``monitors.estimate_performance`` with the priors and
  covariance of ``monitors.em_priors``; source priors = the model's training priors, as
  ``sentiment-monitor priors`` uses them), as the suite's ``prior_weighted`` estimate;
* CBPE: the same without reweighting (NannyML's confidence-based estimate, which assumes
  ``p(y | x)`` is unchanged), the suite's ``unweighted`` estimate;
* baseline: the validation accuracy / macro-F1 of model.json, assumed to hold;
* oracle q (a reference, not an estimator): ours reweighted to the window's true class shares
  instead of EM's, so its error is what calibration and chance leave.

No estimate that reads only the window's reviews can beat chance: given the reviews, the
realised accuracy of ``n`` reviews scatters around its expectation by about
``sqrt(a (1 - a) / n)`` (0.015 at 1,000 reviews, a mean absolute error of about 0.012), and the
pool's own 400 reviews per class make its per-class accuracy differ from what calibrated
probabilities expect by about 0.02 (that part does not shrink with the window).

Scenarios: label shift (the class of each review drawn from known priors ``q``, then a review
of that class: the priors of ``prior_estimation.py`` and three larger shifts; 33/33/33 is the
pool's own mix, no shift), and data drift (windows drawn from a subset of the pool: one category, or
short or long reviews; their class mix moves with them, as it would). Reported per scenario:
mean realised accuracy, mean absolute error of each estimate (accuracy and macro-F1), and the
coverage of the 95 % intervals (share of runs whose interval holds the realised value).

Usage: ``.venv/bin/python benchmarks/accuracy_estimation.py [--runs 300] [--window 1000]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.prior_estimation import DATA, PRIORS, Pool, validation_pool, validation_split
from monitors import em_priors, estimate_performance
from monitors.baseline import classification_scores
from stream.monitor_cli import load_model

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
METHODS: tuple[str, ...] = ("ours", "cbpe", "baseline", "oracle")
LABELS = {"ours": "ours", "cbpe": "CBPE", "baseline": "baseline", "oracle": "oracle q"}
#: Larger label shifts than prior_estimation's: towards each class in turn.
LARGE_SHIFTS: tuple[tuple[float, float, float], ...] = (
    (0.05, 0.05, 0.90),
    (0.10, 0.80, 0.10),
    (0.80, 0.10, 0.10),
)

#: Draws the pool rows of one window: (rng, window size) -> row indices (with repetitions).
Sampler = Callable[[np.random.Generator, int], IntArray]


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # "label shift" | "data drift"
    sample: Sampler


@dataclass
class Tally:
    """Sums over the runs of one scenario."""

    runs: int = 0
    realised_accuracy: float = 0.0
    abs_error: dict[tuple[str, str], float] = field(default_factory=dict)
    covered: dict[tuple[str, str], int] = field(default_factory=dict)

    def add_error(self, method: str, metric: str, error: float) -> None:
        key = (method, metric)
        self.abs_error[key] = self.abs_error.get(key, 0.0) + abs(error)

    def add_cover(self, method: str, metric: str, inside: bool) -> None:
        key = (method, metric)
        self.covered[key] = self.covered.get(key, 0) + int(inside)

    def mae(self, method: str, metric: str) -> float:
        return self.abs_error[(method, metric)] / self.runs

    def coverage(self, method: str, metric: str) -> float:
        return self.covered[(method, metric)] / self.runs


def _label_shift(pool: Pool, q: tuple[float, float, float]) -> Sampler:
    by_class = [np.flatnonzero(pool.true == k) for k in range(3)]

    def sample(rng: np.random.Generator, n: int) -> IntArray:
        counts = rng.multinomial(n, q)
        return np.concatenate([rng.choice(by_class[k], size=c) for k, c in enumerate(counts)])

    return sample


def _subset(rows: IntArray) -> Sampler:
    def sample(rng: np.random.Generator, n: int) -> IntArray:
        out: IntArray = rng.choice(rows, size=n)
        return out

    return sample


def scenarios(pool: Pool, categories: list[str], words: IntArray) -> list[Scenario]:
    out = [
        Scenario(
            f"priors {'/'.join(f'{round(v * 100)}' for v in q)}",
            "no shift" if max(q) - min(q) < 1e-9 else "label shift",
            _label_shift(pool, q),
        )
        for q in (*PRIORS, *LARGE_SHIFTS)
    ]
    cats = np.asarray(categories)
    short, long = np.quantile(words, [1 / 3, 2 / 3])
    subsets = {
        "Dresses only": np.flatnonzero(cats == "Dresses"),
        "Knits + Blouses": np.flatnonzero(np.isin(cats, ["Knits", "Blouses"])),
        f"short (<= {short:.0f} words)": np.flatnonzero(words <= short),
        f"long (> {long:.0f} words)": np.flatnonzero(words > long),
    }
    out += [Scenario(name, "data drift", _subset(rows)) for name, rows in subsets.items()]
    return out


def run_scenario(
    pool: Pool,
    scenario: Scenario,
    *,
    source_priors: FloatArray,
    baseline: tuple[float, float],
    n: int,
    runs: int,
    rng: np.random.Generator,
) -> Tally:
    tally = Tally()
    for _ in range(runs):
        drawn = scenario.sample(rng, n)
        weights = np.bincount(drawn, minlength=len(pool.true))
        used = np.flatnonzero(weights)
        w = weights[used].astype(np.float64)
        window = pool.take(used)
        realised = np.zeros((3, 3))
        np.add.at(realised, (window.predicted, window.true), w)
        true_acc, true_f1 = classification_scores(realised)
        em = em_priors(window.probabilities, source_priors, weights=w)
        common: dict[str, Any] = {"weights": w, "predicted": window.predicted}
        estimates = {
            "ours": estimate_performance(
                window.probabilities,
                source_priors=source_priors,
                target_priors=em.priors,
                target_covariance=em.covariance,
                **common,
            ),
            "cbpe": estimate_performance(window.probabilities, **common),
            "oracle": estimate_performance(
                window.probabilities,
                source_priors=source_priors,
                target_priors=realised.sum(axis=0) / realised.sum(),
                **common,
            ),
        }
        for method, e in estimates.items():
            tally.add_error(method, "accuracy", e.accuracy - true_acc)
            tally.add_error(method, "macro_f1", e.macro_f1 - true_f1)
            tally.add_cover(method, "accuracy", e.accuracy_lower <= true_acc <= e.accuracy_upper)
            tally.add_cover(method, "macro_f1", e.macro_f1_lower <= true_f1 <= e.macro_f1_upper)
        tally.add_error("baseline", "accuracy", baseline[0] - true_acc)
        tally.add_error("baseline", "macro_f1", baseline[1] - true_f1)
        tally.realised_accuracy += true_acc
        tally.runs += 1
    return tally


def _row(label: str, values: list[str]) -> str:
    return f"{label:<28} | " + " | ".join(
        " ".join(f"{v:>8}" for v in values[i : i + 4]) for i in range(0, len(values), 4)
    )


def _cells(tallies: list[Tally]) -> list[str]:
    """MAE of accuracy and macro-F1 per method, then interval coverage (ours, CBPE)."""
    values = [
        f"{np.mean([t.mae(m, metric) for t in tallies]):.4f}"
        for metric in ("accuracy", "macro_f1")
        for m in METHODS
    ]
    return values + [
        f"{np.mean([t.coverage(m, 'accuracy') for t in tallies]):.1%}" for m in ("ours", "cbpe")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="windows per scenario")
    parser.add_argument("--window", type=int, default=1000, help="reviews per window")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"{args.data} not found (the shared data set sits beside the checkout)")
    started = time.perf_counter()
    model = load_model()
    pool = validation_pool(model, args.data)
    reviews, valid = validation_split(model, args.data)
    categories = [reviews.categories[i] for i in valid]
    words = np.asarray([len(model.tokenize(reviews.texts[i])) for i in valid], dtype=np.int64)
    validation = model.metadata["validation"]
    baseline = (float(validation["accuracy"]), float(validation["macro_f1"]))
    cal = model.metadata.get("calibration", {})
    print(
        f"Pool: the model's validation split, {len(pool.true):,} reviews, model "
        f"{model.version} (calibration: temperature {cal.get('temperature', 1.0):.3f}, "
        f"validation ECE {validation.get('expected_calibration_error', float('nan')):.3f}); "
        f"baseline accuracy {baseline[0]:.3f}, macro-F1 {baseline[1]:.3f}."
    )
    print(
        f"{args.runs} seeded windows of {args.window:,} reviews per scenario (seed {args.seed}); "
        "ours = CBPE reweighted to the EM priors, CBPE = unweighted, baseline = validation "
        "figure assumed.\n"
    )
    head = _row("scenario (mean accuracy)", [*[LABELS[m] for m in METHODS] * 2, "ours", "CBPE"])
    print(f"{'':<28} | {'MAE accuracy':^35} | {'MAE macro-F1':^35} | {'coverage acc':^17}")
    print(head)
    print("-" * len(head))
    rng = np.random.default_rng(args.seed)
    by_kind: dict[str, list[Tally]] = {}
    for sc in scenarios(pool, categories, words):
        t = run_scenario(
            pool,
            sc,
            source_priors=model.class_priors,
            baseline=baseline,
            n=args.window,
            runs=args.runs,
            rng=rng,
        )
        by_kind.setdefault(sc.kind, []).append(t)
        print(_row(f"{sc.name} ({t.realised_accuracy / t.runs:.3f})", _cells([t])))
    print("-" * len(head))
    for kind, tallies in by_kind.items():
        print(_row(f"mean, {kind}", _cells(tallies)))
    print()
    for kind, tallies in by_kind.items():
        ratios = []
        for metric in ("accuracy", "macro_f1"):
            ours, cbpe, base = (
                np.mean([t.mae(m, metric) for t in tallies]) for m in ("ours", "cbpe", "baseline")
            )
            ratios.append(
                f"{metric} ours / CBPE {ours / cbpe:.2f}, ours / baseline {ours / base:.2f}"
            )
        print(f"{kind}: MAE " + "; ".join(ratios))
    print(f"\n{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
