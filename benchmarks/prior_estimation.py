"""Class-prior estimation under label shift: BBSE and EM against the naive predicted-label
share, on real held-out reviews resampled to known priors.

The pool is the shipped model's own validation split of ``../shared/data/reviews.csv`` (the
split ``endpoint/model_data/model.json`` records: stratified, test_size 0.2, seed 42; 400
reviews per class the model never saw). The split is rebuilt here and checked: scoring it must
give exactly the validation confusion matrix stored with the model.

Each run draws a window of ``n`` reviews with known class priors ``q``: the class of each review
from ``q`` (multinomial), then a review of that class from the pool (uniform, with
replacement). The three estimates of ``sentiment-monitor priors`` (the same function,
:func:`monitors.prior_estimates`) are taken on the window:

* naive: the predicted-label shares;
* BBSE: the model's validation confusion matrix inverted (``monitors.bbse``);
* EM: maximum likelihood on the predicted probabilities, source priors = the model's training
  priors (``monitors.em_priors``).

Reported per (priors, window size): the mean absolute error against ``q`` (mean over classes
and runs) and the coverage of the simultaneous 95 % intervals (share of runs whose interval
contains ``q`` for all three classes).

BBSE's confusion matrix comes from the same 1,200 reviews the windows are drawn from, as the
shipped one does, so for these windows it is exact: that flatters BBSE. In a real stream the
matrix carries the sampling error of its 400 reviews per class. The bootstrap columns ("bs")
put that error back: over ``--replicates`` bootstrap resamples of the pool (400 per class, with
replacement), BBSE uses the resample's confusion matrix; the windows still come from the pool,
which stands in for the population. The same resamples fit a temperature (log-loss) for "EM-TS":
EM on probabilities temperature-scaled once more on the resample, with the resample's mean
scaled probabilities as source priors.

The shipped model's probabilities are calibrated at training (vector scaling, Alexandari et
al. 2020, fitted on out-of-fold scores of a 10-fold cross-validation of the training split, so
not on this pool); EM runs on them. Before calibration the model was under-confident
(NLL-optimal temperature 0.57 on this pool), which pulled EM towards the training priors: mean
absolute error at 1,000-review windows was naive 0.062, BBSE 0.027, EM 0.057; with calibration
EM is the most accurate of the three at 200 and 1,000 reviews.

The module also builds the larger, cross-fitted pool of ``accuracy_estimation.py``
(:func:`crossfit_pool`: every review scored by a model trained and calibrated without it).

Usage: ``.venv/bin/python benchmarks/prior_estimation.py [--runs 400] [--seed 0] [--replicates 50]``
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from endpoint.model import ModelInfo
from endpoint.train import Reviews, TrainConfig, fit_recipe, load_reviews
from monitors import PriorEstimate, bbse, em_priors, prior_estimates
from stream.monitor_cli import load_model, score

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "reviews.csv"
PRIORS: tuple[tuple[float, float, float], ...] = (
    (0.20, 0.20, 0.60),
    (0.50, 0.20, 0.30),
    (0.10, 0.10, 0.80),
    (1 / 3, 1 / 3, 1 / 3),
    (0.60, 0.30, 0.10),
)
SIZES: tuple[int, ...] = (200, 1000, 5000)
METHODS: tuple[str, ...] = ("naive", "bbse", "em", "bbse_bs", "em_ts_bs")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Pool:
    """Scored reviews to draw windows from: true class index (0..2), predicted class index,
    probabilities (n, 3)."""

    true: IntArray
    predicted: IntArray
    probabilities: FloatArray

    def take(self, idx: IntArray) -> Pool:
        return Pool(self.true[idx], self.predicted[idx], self.probabilities[idx])

    def confusion(self) -> IntArray:
        """Counts ``[predicted, true]``."""
        c = np.zeros((3, 3), dtype=np.int64)
        np.add.at(c, (self.predicted, self.true), 1)
        return c


def validation_split(model: ModelInfo, data: Path) -> tuple[Reviews, IntArray]:
    """The reviews of ``data`` and the rows of the model's validation split (rebuilt from
    model.json: reviews neither the model nor its calibration saw)."""
    from sklearn.model_selection import train_test_split

    training = model.metadata["training"]
    config = training["config"]
    reviews = load_reviews(data)
    if reviews.sha256 != training["data_sha256"]:
        raise SystemExit(f"{data} is not the file the model was trained on (sha256 differs)")
    _, valid = train_test_split(
        np.arange(len(reviews)),
        test_size=config["test_size"],
        stratify=reviews.labels,
        random_state=config["seed"],
    )
    return reviews, np.asarray(valid, dtype=np.int64)


def validation_pool(model: ModelInfo, data: Path) -> Pool:
    """The model's validation split, rebuilt from model.json and scored."""
    reviews, valid = validation_split(model, data)
    scored = score(model, [reviews.texts[i] for i in valid])
    pool = Pool(reviews.labels[valid] + 1, scored.predicted + 1, scored.probabilities)
    shipped = model.confusion_matrix
    if shipped is None or not np.array_equal(pool.confusion().T, shipped):
        raise SystemExit("the rebuilt validation split does not reproduce model.json's confusion")
    return pool


#: Where the cross-fitted pool is cached (outside the checkout), per data file and recipe.
CACHE = Path(
    os.environ.get("SENTIMENT_MONITOR_CACHE", Path.home() / ".cache" / "sentiment-monitor")
)
#: Folds of the cross-fitted pool.
CROSS_FIT_FOLDS = 5


@dataclass(frozen=True)
class CrossFitPool:
    """Every review of the data file, each scored by a model (recipe and calibration) fitted on
    the other folds only: ``pool`` in the file's row order, ``fold`` per row, and per fold the
    class shares of its fitting data (the source priors of that fold's model)."""

    reviews: Reviews
    pool: Pool
    fold: IntArray
    source_priors: FloatArray  # (folds, 3)


def crossfit_pool(
    data: Path, config: TrainConfig | None = None, folds: int = CROSS_FIT_FOLDS
) -> CrossFitPool:
    """Cross-fitting over the whole file: a stratified, seeded ``folds``-fold split; each
    fold's model is fitted and calibrated on the other folds exactly as ``endpoint.train``
    fits the shipped one (:func:`endpoint.train.fit_recipe`, same recipe and seed) and scores
    its held-out fold. Cached under ``CACHE`` (``$SENTIMENT_MONITOR_CACHE``), keyed by the
    file's sha256, the recipe and the scikit-learn version; a first run fits ``folds`` times
    ``calibration_folds + 1`` models (2-6 minutes on two cores, longer when they are shared)."""
    import hashlib
    import json

    import sklearn
    from sklearn.model_selection import StratifiedKFold

    config = config or TrainConfig()
    reviews = load_reviews(data)
    key = json.dumps(
        [reviews.sha256, asdict(config), folds, sklearn.__version__], sort_keys=True, default=str
    )
    path = CACHE / f"crossfit-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if path.is_file():
        with np.load(path) as z:
            return CrossFitPool(
                reviews,
                Pool(z["true"], z["predicted"], z["probabilities"]),
                z["fold"],
                z["source_priors"],
            )
    n = len(reviews)
    probabilities = np.zeros((n, 3))
    fold = np.zeros(n, dtype=np.int64)
    source_priors = np.zeros((folds, 3))
    split = StratifiedKFold(folds, shuffle=True, random_state=config.seed)
    for f, (fit_idx, held_idx) in enumerate(split.split(np.zeros(n), reviews.labels)):
        started = time.perf_counter()
        y = reviews.labels[fit_idx]
        pipeline, chosen = fit_recipe([reviews.texts[i] for i in fit_idx], y, config)
        held = [reviews.texts[i] for i in held_idx]
        probabilities[held_idx] = (
            pipeline.predict_proba(held)
            if chosen is None
            else chosen.calibration.apply(pipeline.decision_function(held))
        )
        fold[held_idx] = f
        source_priors[f] = np.bincount(y + 1, minlength=3) / len(y)
        print(
            f"cross-fit fold {f + 1}/{folds}: fitted on {len(fit_idx):,}, scored {len(held):,} "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    pool = Pool(
        (reviews.labels + 1).astype(np.int64),
        np.argmax(probabilities, axis=1).astype(np.int64),
        probabilities,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(
        tmp,
        true=pool.true,
        predicted=pool.predicted,
        probabilities=pool.probabilities,
        fold=fold,
        source_priors=source_priors,
    )
    tmp.replace(path)  # atomic: a concurrent or interrupted run never leaves half a file
    return CrossFitPool(reviews, pool, fold, source_priors)


def temperature_scaled(probabilities: FloatArray, t: float) -> FloatArray:
    """``softmax(log p / t)``: the probabilities of logits divided by ``t``."""
    z = np.log(np.maximum(probabilities, 1e-300)) / t
    z -= z.max(axis=1, keepdims=True)
    out: FloatArray = np.exp(z)
    out /= out.sum(axis=1, keepdims=True)
    return out


def fit_temperature(pool: Pool) -> float:
    """The temperature minimising the negative log-likelihood of the true classes."""
    from scipy.optimize import minimize_scalar

    rows = np.arange(len(pool.true))

    def nll(t: float) -> float:
        return float(-np.log(temperature_scaled(pool.probabilities, t)[rows, pool.true]).mean())

    return float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x)


@dataclass(frozen=True)
class Replicate:
    """What a bootstrap resample of the pool gives: its confusion matrix, and the pool's
    probabilities temperature-scaled with a temperature fitted on the resample, with the
    resample's mean scaled probabilities as EM source priors."""

    confusion: IntArray
    calibrated: FloatArray
    source_priors: FloatArray

    @classmethod
    def of(cls, pool: Pool, rng: np.random.Generator) -> Replicate:
        by_class = [np.flatnonzero(pool.true == k) for k in range(3)]
        rows = np.concatenate([rng.choice(idx, size=idx.size) for idx in by_class])
        sample = pool.take(rows)
        t = fit_temperature(sample)
        return cls(
            confusion=sample.confusion(),
            calibrated=temperature_scaled(pool.probabilities, t),
            source_priors=temperature_scaled(sample.probabilities, t).mean(axis=0),
        )


@dataclass
class Cell:
    """Per-method sums over the runs of one (priors, size) cell."""

    abs_error: dict[str, float]
    covered: dict[str, int]
    runs: int = 0

    @classmethod
    def empty(cls) -> Cell:
        return cls(dict.fromkeys(METHODS, 0.0), dict.fromkeys(METHODS, 0))

    def mae(self, method: str) -> float:
        return self.abs_error[method] / self.runs

    def coverage(self, method: str) -> float:
        return self.covered[method] / self.runs

    def add(self, method: str, q: FloatArray, est: PriorEstimate) -> None:
        self.abs_error[method] += float(np.abs(est.priors - q).mean())
        self.covered[method] += int(np.all((est.lower <= q) & (q <= est.upper)))


def _window(
    pool: Pool, q: FloatArray, n: int, rng: np.random.Generator
) -> tuple[IntArray, FloatArray, FloatArray]:
    """One window: the rows of ``pool`` it uses, how many reviews each stands for, and its
    predicted-class counts."""
    counts = rng.multinomial(n, q)
    drawn = np.concatenate(
        [rng.choice(np.flatnonzero(pool.true == k), size=c) for k, c in enumerate(counts)]
    )
    weights = np.bincount(drawn, minlength=len(pool.true))
    used = np.flatnonzero(weights).astype(np.int64)
    w = weights[used].astype(np.float64)
    predicted = np.bincount(pool.predicted[used], weights=w, minlength=3).astype(np.float64)
    return used, w, predicted


def run_cell(
    pool: Pool,
    replicates: Sequence[Replicate],
    model: ModelInfo,
    q: FloatArray,
    n: int,
    runs: int,
    rng: np.random.Generator,
    confidence: float,
) -> Cell:
    """``runs`` windows of ``n`` reviews at priors ``q``, each estimated as shipped and with
    the next bootstrap replicate's confusion matrix and calibration."""
    confusion = pool.confusion()
    cell = Cell.empty()
    for r in range(runs):
        used, w, counts = _window(pool, q, n, rng)
        est = prior_estimates(
            pool.probabilities[used],
            counts,
            confusion=confusion,
            source_priors=model.class_priors,
            confidence=confidence,
            weights=w,
        )
        for method, e in est.items():
            cell.add(method, q, e)
        rep = replicates[r % len(replicates)]
        cell.add("bbse_bs", q, bbse(rep.confusion, counts, confidence=confidence))
        cell.add(
            "em_ts_bs",
            q,
            em_priors(rep.calibrated[used], rep.source_priors, weights=w, confidence=confidence),
        )
        cell.runs += 1
    return cell


def _fmt_q(q: Sequence[float]) -> str:
    return "/".join(f"{round(v * 100):d}" for v in q)


LABELS = {
    "naive": "naive",
    "bbse": "BBSE",
    "em": "EM",
    "bbse_bs": "BBSE bs",
    "em_ts_bs": "EM-TS bs",
}


def _row(label: str, values: Sequence[str]) -> str:
    return (
        f"{label:<17} | "
        + " ".join(f"{v:>8}" for v in values[:5])
        + " | "
        + " ".join(f"{v:>8}" for v in values[5:])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=400, help="windows per (priors, size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replicates", type=int, default=50, help="bootstrap resamples")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"{args.data} not found (the shared data set sits beside the checkout)")
    started = time.perf_counter()
    model = load_model()
    pool = validation_pool(model, args.data)
    rng = np.random.default_rng(args.seed)
    replicates = [Replicate.of(pool, rng) for _ in range(args.replicates)]
    accuracy = float(np.mean(pool.predicted == pool.true))
    print(
        f"Pool: the model's validation split, {len(pool.true):,} reviews "
        f"({'/'.join(str(c) for c in np.bincount(pool.true))} neg/neu/pos), model "
        f"{model.version}; its confusion matrix reproduces model.json's."
    )
    print(
        f"Model calibration on the pool: accuracy {accuracy:.3f}, mean confidence "
        f"{pool.probabilities.max(axis=1).mean():.3f}, NLL-optimal temperature "
        f"{fit_temperature(pool):.2f} (1: calibrated, < 1: under-confident)."
    )
    print(
        f"{args.runs} seeded windows per row (seed {args.seed}); truth = the priors drawn from; "
        f"simultaneous {args.confidence:.0%} intervals.\n"
        "naive = predicted-label shares; BBSE, EM = as `sentiment-monitor priors` (confusion "
        "matrix of model.json; EM source priors = training priors);\n"
        f"bs = over {args.replicates} bootstrap resamples of the pool: BBSE with the resample's "
        "confusion matrix, EM-TS on probabilities temperature-scaled on the resample.\n"
    )
    names = [LABELS[m] for m in METHODS]
    head = _row("priors %   window", [*names, *names])
    print(f"{'':<17} | {'mean absolute error':^44} | {'interval coverage':^44}")
    print(head)
    print("-" * len(head))
    totals: dict[int, list[Cell]] = {n: [] for n in SIZES}
    for q_tuple in PRIORS:
        q = np.asarray(q_tuple, dtype=np.float64)
        for n in SIZES:
            cell = run_cell(pool, replicates, model, q, n, args.runs, rng, args.confidence)
            totals[n].append(cell)
            print(
                _row(
                    f"{_fmt_q(q_tuple):<10} {n:>6}",
                    [f"{cell.mae(m):.4f}" for m in METHODS]
                    + [f"{cell.coverage(m):.1%}" for m in METHODS],
                )
            )
    print("-" * len(head))
    for n in SIZES:
        cells = totals[n]
        print(
            _row(
                f"{'mean':<10} {n:>6}",
                [f"{np.mean([c.mae(m) for c in cells]):.4f}" for m in METHODS]
                + [f"{np.mean([c.coverage(m) for c in cells]):.1%}" for m in METHODS],
            )
        )
    print("\nnaive MAE / estimator MAE, mean over the five priors:")
    for n in SIZES:
        naive = np.mean([c.mae("naive") for c in totals[n]])
        ratios = ", ".join(
            f"{LABELS[m]} {naive / np.mean([c.mae(m) for c in totals[n]]):.2f}" for m in METHODS[1:]
        )
        print(f"  window {n:>5}: {ratios}")
    print(f"\n{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
