"""Distinctive terms for alert evidence, in bounded memory.

:class:`BoundedCounter` counts terms with at most ``capacity`` entries kept between updates
(frequent-items pruning: when it grows past twice its capacity it keeps the ``capacity`` most
frequent terms), so heavy terms are counted almost exactly and the tail is forgotten.

:func:`distinctive_terms` ranks the terms of a target corpus against a reference corpus with
the log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi and Quinn 2008,
"Fightin' Words", eq. 16-22): for term ``w`` with target count ``y``, reference count ``r``,
corpus sizes ``n`` and ``m``, and prior ``a_w = a0 * f_w`` from the background frequencies::

    delta_w = ln((y + a_w) / (n + a0 - y - a_w)) - ln((r + a_w) / (m + a0 - r - a_w))
    z_w = delta_w / sqrt(1 / (y + a_w) + 1 / (r + a_w))
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np

__all__ = [
    "STOPWORDS",
    "TOKEN_PATTERN",
    "BoundedCounter",
    "content_words",
    "distinctive_terms",
    "tokenize",
]

#: A word token of the lower-cased text (RE2-compatible: SQL engines tokenise alike).
TOKEN_PATTERN = r"[a-z][a-z']*[a-z]|[a-z]"  # noqa: S105 - a regex, not a secret
_TOKEN = re.compile(TOKEN_PATTERN)

#: Very common function words: never useful as evidence.
_STOPWORDS_TEXT = """about after all also am an and any are as at back be because been before
being but by can could did do does doesn't don't even for from get got had has have he her here
him his how i i'm if in into is isn't it it's its just like me more most much my no not now of
off on one only or other our out over so some such than that the their them then there these
they this those through to too up us very was wasn't way we well were what when where which
while who why will with would you your"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (letters and inner apostrophes)."""
    return _TOKEN.findall(text.lower())


def content_words(tokens: Iterable[str]) -> list[str]:
    """The tokens worth reporting as evidence: three letters or more, no stopwords."""
    return [t for t in tokens if len(t) >= 3 and t not in STOPWORDS]


class BoundedCounter:
    """Term counts with bounded memory (at most ``2 * capacity`` entries)."""

    def __init__(self, capacity: int = 500) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.counts: Counter[str] = Counter()
        self.total = 0

    def update(self, tokens: Iterable[str]) -> None:
        before = self.counts.total()
        self.counts.update(content_words(tokens))
        self.total += self.counts.total() - before
        if len(self.counts) > 2 * self.capacity:
            self.counts = Counter(dict(self.counts.most_common(self.capacity)))

    def clear(self) -> None:
        self.counts.clear()
        self.total = 0

    def state(self) -> dict[str, object]:
        return {"capacity": self.capacity, "counts": dict(self.counts), "total": self.total}

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> BoundedCounter:
        capacity = state["capacity"]
        counts = state["counts"]
        total = state["total"]
        if not isinstance(capacity, int) or not isinstance(counts, dict):
            raise TypeError("bad BoundedCounter state")
        out = cls(capacity)
        out.counts = Counter({str(k): int(v) for k, v in counts.items()})
        out.total = int(total) if isinstance(total, int) else out.counts.total()
        return out


def distinctive_terms(
    target: Mapping[str, int],
    reference: Mapping[str, int],
    *,
    background: Mapping[str, int] | None = None,
    prior_strength: float = 500.0,
    top: int = 10,
    min_count: int = 3,
    target_total: int | None = None,
    reference_total: int | None = None,
) -> list[tuple[str, float]]:
    """The ``top`` terms most over-represented in ``target`` against ``reference``, with their
    z-scores, by the log-odds ratio with an informative Dirichlet prior.

    ``background`` gives the prior's term frequencies (default: target plus reference);
    ``prior_strength`` is ``a0``. Only target terms seen at least ``min_count`` times and with a
    positive z-score are returned, highest z first (ties by term).
    """
    if prior_strength <= 0:
        raise ValueError("prior_strength must be > 0")
    terms = sorted(w for w, c in target.items() if c >= min_count)
    if not terms:
        return []
    bg = background if background is not None else Counter(target) + Counter(reference)
    bg_total = float(sum(bg.values()))
    vocab = max(len(bg), 1)
    n = float(target_total if target_total is not None else sum(target.values()))
    m = float(reference_total if reference_total is not None else sum(reference.values()))
    y = np.array([target[w] for w in terms], dtype=np.float64)
    r = np.array([reference.get(w, 0) for w in terms], dtype=np.float64)
    f = (np.array([bg.get(w, 0) for w in terms], dtype=np.float64) + 0.5) / (bg_total + 0.5 * vocab)
    a = prior_strength * f
    delta = np.log((y + a) / (n + prior_strength - y - a)) - np.log(
        (r + a) / (m + prior_strength - r - a)
    )
    z = delta / np.sqrt(1.0 / (y + a) + 1.0 / (r + a))
    order = sorted(range(len(terms)), key=lambda i: (-z[i], terms[i]))
    return [(terms[i], round(float(z[i]), 3)) for i in order[:top] if z[i] > 0]
