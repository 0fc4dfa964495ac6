"""Which terms pushed reviews towards "negative" more than they used to: alert evidence from
the model's own per-term contributions.

The model explains each review's negative-class score exactly as a sum of per-term
contributions (``endpoint.explain``: coefficient times TF-IDF value). The monitors never see
the model: whoever builds the suite passes an :data:`Explainer` (texts -> one mapping
``term -> contribution to the negative score`` per text), and these values are all this module
works with.

:class:`ContributionSums` adds up the contributions of a set of reviews per term (bounded
memory: past ``2 * capacity`` terms it keeps the ``capacity`` with the largest absolute sums,
so the terms that matter are summed exactly and the tail is forgotten). For a set ``S`` of
``n`` reviews, the mean contribution of term ``w`` is ``m_S(w) = sum_{i in S} phi_w(i) / n``
(0 for a review without the term), and the mean negative score of ``S`` is the intercept plus
``sum_w m_S(w)``.

:func:`contribution_growth` ranks terms by ``m_window(w) - m_reference(w)``: how much more
term ``w`` contributes to an average negative review of the alert's window than to an average
negative review of the reference (for a SentimentShift in a category: the category's own
baseline negatives). The growths of all terms add up to the change of the mean negative
score, so the top terms are the ones that explain most of it; a term the category's negatives
always used (its usual vocabulary of complaint) has about the same mean in both and does not
show, and a word the model does not know contributes nothing (the log-odds terms of
:mod:`monitors.terms` still name it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BatchContributions",
    "ContributionSums",
    "Explainer",
    "TermGrowth",
    "contribution_growth",
    "top_examples",
]

#: Texts -> per text, ``term -> contribution to the negative class score``.
Explainer = Callable[[Sequence[str]], Sequence[Mapping[str, float]]]


class ContributionSums:
    """Per-term sums of contributions over ``n`` reviews, and per term the number of reviews
    that hold it (see module doc)."""

    __slots__ = ("capacity", "docs", "n", "sums")

    def __init__(self, capacity: int = 300) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.sums: dict[str, float] = {}
        self.docs: dict[str, int] = {}
        self.n = 0

    def update(self, rows: Iterable[Mapping[str, float]]) -> None:
        """Add reviews, one mapping ``term -> contribution`` each."""
        sums, docs = self.sums, self.docs
        for row in rows:
            self.n += 1
            for term, value in row.items():
                sums[term] = sums.get(term, 0.0) + value
                docs[term] = docs.get(term, 0) + 1
        if len(sums) > 2 * self.capacity:
            keep = sorted(sums, key=lambda t: (-abs(sums[t]), t))[: self.capacity]
            self.sums = {t: sums[t] for t in keep}
            self.docs = {t: docs.get(t, 0) for t in keep}

    def merge(self, other: ContributionSums) -> None:
        """Add the reviews summed in ``other``."""
        for term, value in other.sums.items():
            self.sums[term] = self.sums.get(term, 0.0) + value
        for term, count in other.docs.items():
            self.docs[term] = self.docs.get(term, 0) + count
        self.n += other.n

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ContributionSums):
            return NotImplemented
        return (self.n, self.sums, self.docs) == (other.n, other.sums, other.docs)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ContributionSums(n={self.n}, terms={len(self.sums)})"

    def mean(self, term: str) -> float:
        """Mean contribution of ``term`` per review (0 without reviews)."""
        return self.sums.get(term, 0.0) / self.n if self.n else 0.0

    def clear(self) -> None:
        self.sums.clear()
        self.docs.clear()
        self.n = 0

    def state(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "n": self.n, "sums": self.sums, "docs": self.docs}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ContributionSums:
        out = cls(int(state.get("capacity", 300)))
        out.n = int(state["n"])
        out.sums = {str(k): float(v) for k, v in state["sums"].items()}
        out.docs = {str(k): int(v) for k, v in state.get("docs", {}).items()}
        return out


@dataclass(frozen=True, slots=True)
class TermGrowth:
    """A term's mean contribution to the negative score in the window and in the reference,
    their difference, and how many window reviews hold the term."""

    term: str
    growth: float
    window_mean: float
    reference_mean: float
    reviews: int

    def to_json(self) -> dict[str, Any]:
        return {
            "term": self.term,
            "growth": round(self.growth, 6),
            "window_mean": round(self.window_mean, 6),
            "baseline_mean": round(self.reference_mean, 6),
            "reviews": self.reviews,
        }


def contribution_growth(
    window: ContributionSums,
    reference: ContributionSums | None,
    *,
    top: int = 10,
    min_reviews: int = 3,
) -> list[TermGrowth]:
    """The ``top`` terms whose mean contribution to the negative score grew most from
    ``reference`` to ``window`` (growth > 0, held by at least ``min_reviews`` window reviews;
    highest growth first, ties by term). No reference counts as a reference of zeros."""
    if not window.n:
        return []
    ref = reference if reference is not None and reference.n else None
    out = []
    for term, count in window.docs.items():
        if count < min_reviews or term not in window.sums:
            continue
        now = window.mean(term)
        then = ref.mean(term) if ref is not None else 0.0
        if now - then > 0:
            out.append(TermGrowth(term, now - then, now, then, count))
    out.sort(key=lambda g: (-g.growth, g.term))
    return out[:top]


def top_examples(rows: Sequence[Mapping[str, float]], terms: Iterable[str], k: int) -> list[int]:
    """Indices of the ``k`` rows in which ``terms`` contribute most to the negative score
    (sum over the terms; ties: the later row first), the best first."""
    wanted = tuple(terms)
    scores = [sum(row.get(t, 0.0) for t in wanted) for row in rows]
    order = sorted(range(len(rows)), key=lambda i: (-scores[i], -i))
    return order[: max(k, 0)]


class BatchContributions:
    """The texts of one batch's ``n`` reviews (None: unknown) and their contributions: given
    (one mapping per review), or computed by ``explainer`` only for the reviews asked for,
    each once (ask for all of them first with :meth:`prefetch`: one call)."""

    __slots__ = ("_cache", "_explainer", "_given", "texts")

    def __init__(
        self,
        n: int,
        texts: Sequence[str] | None,
        contributions: Sequence[Mapping[str, float]] | None,
        explainer: Explainer | None,
    ) -> None:
        self.texts = texts if texts is not None and len(texts) == n else None
        self._given = (
            contributions if contributions is not None and len(contributions) == n else None
        )
        self._explainer = explainer if self.texts is not None else None
        self._cache: dict[int, Mapping[str, float]] = {}

    def prefetch(self, indices: Sequence[int]) -> None:
        """Explain the reviews at ``indices`` now, in one call."""
        if self._given is None and self._explainer is not None and indices:
            self.rows(indices)

    def rows(self, indices: Sequence[int]) -> list[Mapping[str, float]]:
        """The contributions of the reviews at ``indices`` ({} where unknown)."""
        if self._given is not None:
            return [self._given[i] for i in indices]
        if self._explainer is None or self.texts is None:
            return [{} for _ in indices]
        missing = [i for i in dict.fromkeys(indices) if i not in self._cache]
        if missing:
            texts = self.texts
            rows = self._explainer([texts[i] for i in missing])
            if len(rows) != len(missing):
                raise ValueError(f"the explainer answered {len(rows)} of {len(missing)} texts")
            self._cache.update(zip(missing, rows, strict=True))
        return [self._cache[i] for i in indices]
