"""Ground truth from people: how the model does on the reviews annotators labelled (pure).

:class:`HumanLabels` holds the labelled reviews as columns (the model's class, the person's
class, the category, the event time, why the review was picked and its inclusion probability)
and answers:

* :meth:`HumanLabels.by_sample`: accuracy and macro-F1 per selection reason. Only the ``audit``
  sample is a probability sample of the stream; low-confidence, disagreement and alert picks
  are chosen *because* the model is likely wrong, so their accuracy is reported beside the
  audit's, never mixed into it;
* :meth:`HumanLabels.audited_accuracy`: the stream's accuracy estimated from the audit sample
  (Hajek estimator, weights 1 / inclusion probability) with a Wilson interval on the Kish
  effective sample size (with one inclusion probability this is the plain Wilson interval);
* :meth:`HumanLabels.audited_class_shares`: the true class mix estimated from the audit
  sample (label drift measured on human labels, not on ratings);
* :meth:`HumanLabels.by_window`: accuracy and macro-F1 of all human labels per event-time
  window (tumbling, ``window_s`` seconds);
* :meth:`HumanLabels.agreement`: share of human labels equal to the model's, per category.

:func:`ground_truth_windows` evaluates event-time windows on the best ground truth there is
for each review: a person's label where one was synced, else the class of its star rating.
Per window: the confusion matrix, accuracy and macro-F1, the true class mix with its label
drift against the baseline's, the accuracy drop test against the baseline's confusion, and,
apart from them, the audit sample's accuracy estimate with its interval and the scores of the
other (biased) human labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from monitors._stats import wilson_interval
from monitors.baseline import classification_scores
from monitors.drift import AccuracyDrift, DistributionDrift, accuracy_drift, distribution_drift

__all__ = [
    "NO_LABEL",
    "Estimate",
    "GroundTruthWindow",
    "HumanLabels",
    "Scores",
    "ground_truth_windows",
    "wilson_interval",
]

#: The class of a review that has no label (no person's, or no star rating).
NO_LABEL: Final = -2


@dataclass(frozen=True, slots=True)
class Scores:
    n: int
    accuracy: float
    macro_f1: float


@dataclass(frozen=True, slots=True)
class Estimate:
    """An accuracy estimate: the value, its interval and the sample it rests on."""

    value: float
    lower: float
    upper: float
    n: int
    effective_n: float


def _scores(predicted: npt.NDArray[np.int64], label: npt.NDArray[np.int64]) -> Scores:
    confusion = np.zeros((3, 3), dtype=np.int64)
    np.add.at(confusion, (predicted + 1, label + 1), 1)
    accuracy, macro_f1 = classification_scores(confusion)
    return Scores(len(predicted), accuracy, macro_f1)


@dataclass(frozen=True, slots=True)
class HumanLabels:
    """Labelled reviews as columns (see the module doc); classes are -1/0/1, times Unix s."""

    predicted: npt.NDArray[np.int64]
    label: npt.NDArray[np.int64]
    category: tuple[str, ...]
    reason: tuple[str, ...]
    inclusion_probability: npt.NDArray[np.float64]
    event_time_s: npt.NDArray[np.float64]
    labeled_at_s: npt.NDArray[np.float64]

    @classmethod
    def from_columns(
        cls,
        predicted: Sequence[int],
        label: Sequence[int],
        category: Sequence[str],
        reason: Sequence[str],
        inclusion_probability: Sequence[float],
        event_time_s: Sequence[float],
        labeled_at_s: Sequence[float],
    ) -> HumanLabels:
        n = len(predicted)
        columns = (label, category, reason, inclusion_probability, event_time_s, labeled_at_s)
        if any(len(c) != n for c in columns):
            raise ValueError("every column needs one value per labelled review")
        probs = np.asarray(inclusion_probability, dtype=np.float64)
        if n and not bool(((probs > 0) & (probs <= 1)).all()):
            raise ValueError("inclusion probabilities must be in (0, 1]")
        return cls(
            np.asarray(predicted, dtype=np.int64),
            np.asarray(label, dtype=np.int64),
            tuple(category),
            tuple(reason),
            probs,
            np.asarray(event_time_s, dtype=np.float64),
            np.asarray(labeled_at_s, dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.predicted)

    def _mask(self, values: tuple[str, ...], wanted: str) -> npt.NDArray[np.bool_]:
        return np.fromiter((v == wanted for v in values), dtype=np.bool_, count=len(values))

    def by_sample(self) -> dict[str, Scores]:
        """Accuracy and macro-F1 per selection reason (only reasons that have labels)."""
        out: dict[str, Scores] = {}
        for reason in sorted(set(self.reason)):
            m = self._mask(self.reason, reason)
            out[reason] = _scores(self.predicted[m], self.label[m])
        return out

    def audited_accuracy(self, confidence: float = 0.95) -> Estimate | None:
        """The stream's accuracy from the audit sample (None without audited labels)."""
        m = self._mask(self.reason, "audit")
        n = int(m.sum())
        if n == 0:
            return None
        return _weighted_accuracy(
            self.predicted[m] == self.label[m], self.inclusion_probability[m], confidence
        )

    def audited_class_shares(self) -> tuple[float, float, float] | None:
        """The stream's true class mix (negative, neutral, positive) estimated from the
        audit sample (weights 1 / inclusion probability): label drift on human labels,
        to hold against the baseline's priors. None without audited labels."""
        m = self._mask(self.reason, "audit")
        if not bool(m.any()):
            return None
        w = 1.0 / self.inclusion_probability[m]
        mix = np.bincount(self.label[m] + 1, weights=w, minlength=3) / w.sum()
        return (float(mix[0]), float(mix[1]), float(mix[2]))

    def by_window(self, window_s: float) -> dict[float, Scores]:
        """Accuracy and macro-F1 of every human label per event-time window (its start)."""
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        starts = np.floor(self.event_time_s / window_s) * window_s
        return {
            float(s): _scores(self.predicted[starts == s], self.label[starts == s])
            for s in np.unique(starts)
        }

    def agreement(self) -> dict[str, tuple[int, float]]:
        """Per category: (labels, share where the person chose the model's class)."""
        out: dict[str, tuple[int, float]] = {}
        same = self.predicted == self.label
        for category in sorted(set(self.category)):
            m = self._mask(self.category, category)
            out[category] = (int(m.sum()), float(same[m].mean()))
        return out

    def newest_label_s(self) -> float | None:
        return float(self.labeled_at_s.max()) if len(self) else None


def _weighted_accuracy(
    right: npt.NDArray[np.bool_], inclusion_probability: npt.NDArray[np.float64], confidence: float
) -> Estimate:
    w = 1.0 / inclusion_probability
    value = float((w * right).sum() / w.sum())
    effective = float(w.sum() ** 2 / (w * w).sum())
    lower, upper = wilson_interval(value, effective, confidence)
    return Estimate(value, lower, upper, len(right), effective)


@dataclass(frozen=True, slots=True)
class GroundTruthWindow:
    """One event-time window evaluated on human labels over rating classes."""

    start_s: float
    #: counts ``[predicted, true]`` (classes -1/0/1 at indices 0/1/2)
    confusion: npt.NDArray[np.int64]
    human: int  #: reviews whose truth is a person's label
    rated: int  #: reviews whose truth is the class of their star rating
    accuracy: float
    macro_f1: float
    class_shares: tuple[float, float, float]  #: the true class mix
    label_drift: DistributionDrift | None  #: the true mix against the baseline's
    accuracy_drift: AccuracyDrift | None  #: accuracy against the baseline's
    audited: Estimate | None  #: the audit sample's accuracy (unbiased), with its interval
    selected: Scores | None  #: the other human labels (chosen where the model is weak)


def ground_truth_windows(
    window_s: float,
    event_time_s: Sequence[float] | npt.ArrayLike,
    predicted: Sequence[int] | npt.ArrayLike,
    rated: Sequence[int] | npt.ArrayLike,
    human: Sequence[int] | npt.ArrayLike,
    reason: Sequence[str],
    inclusion_probability: Sequence[float] | npt.ArrayLike,
    *,
    reference_counts: Sequence[int] | None = None,
    reference_confusion: Sequence[Sequence[int]] | None = None,
    alpha: float = 0.01,
    min_share_change: float = 0.0,
    min_accuracy_drop: float = 0.0,
    confidence: float = 0.95,
) -> list[GroundTruthWindow]:
    """Per tumbling event-time window (``window_s`` seconds, oldest first; only windows with
    a label): one row per review with the model's class, the class of its rating and the
    person's label (:data:`NO_LABEL` where there is none), and for a person's label the
    reason it was picked and its inclusion probability (ignored elsewhere). The truth of a
    review is the person's label where there is one, else its rating's class. The label drift
    and accuracy tests run when the baseline's true class counts and confusion matrix are
    given (the window tests' ``alpha`` and floors)."""
    if window_s <= 0:
        raise ValueError("window_s must be > 0")
    t = np.asarray(event_time_s, dtype=np.float64)
    pred = np.asarray(predicted, dtype=np.int64)
    rate = np.asarray(rated, dtype=np.int64)
    person = np.asarray(human, dtype=np.int64)
    probs = np.asarray(inclusion_probability, dtype=np.float64)
    n = len(t)
    if any(len(c) != n for c in (pred, rate, person, reason, probs)):
        raise ValueError("every column needs one value per review")
    by_person = person != NO_LABEL
    truth = np.where(by_person, person, rate)
    known = truth != NO_LABEL
    audit = by_person & np.fromiter((r == "audit" for r in reason), np.bool_, count=n)
    if bool((audit & ~((probs > 0) & (probs <= 1))).any()):
        raise ValueError("inclusion probabilities must be in (0, 1]")
    starts = np.floor(t / window_s) * window_s
    out: list[GroundTruthWindow] = []
    for start in np.unique(starts[known]):
        m = known & (starts == start)
        confusion = np.zeros((3, 3), dtype=np.int64)
        np.add.at(confusion, (pred[m] + 1, truth[m] + 1), 1)
        accuracy, macro_f1 = classification_scores(confusion)
        counts = confusion.sum(axis=0)
        shares = counts / counts.sum()
        a = audit & m
        other = by_person & m & ~audit
        out.append(
            GroundTruthWindow(
                start_s=float(start),
                confusion=confusion,
                human=int((by_person & m).sum()),
                rated=int((m & ~by_person).sum()),
                accuracy=accuracy,
                macro_f1=macro_f1,
                class_shares=(float(shares[0]), float(shares[1]), float(shares[2])),
                label_drift=None
                if reference_counts is None
                else distribution_drift(
                    reference_counts, counts, alpha=alpha, min_change=min_share_change
                ),
                accuracy_drift=None
                if reference_confusion is None
                else accuracy_drift(
                    reference_confusion, confusion, alpha=alpha, min_drop=min_accuracy_drop
                ),
                audited=_weighted_accuracy(pred[a] == person[a], probs[a], confidence)
                if a.any()
                else None,
                selected=_scores(pred[other], person[other]) if other.any() else None,
            )
        )
    return out
