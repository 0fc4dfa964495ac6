"""Which scored reviews go to people for a label: the review queue's selection (pure).

Per micro-batch :meth:`ReviewSelector.select` takes the batch's columns and picks, per review,
at most one reason (in this priority order):

* ``audit``: a random sample of every category, drawn with a fixed probability
  (``audit_rate``) from a seeded hash of the review id. The draw depends on nothing the model or
  the stream says, so the audited reviews are a probability sample and an accuracy measured on
  them is unbiased (each pick records its inclusion probability). The same review id always
  gets the same draw: a batch replayed after a restart picks the same reviews;
* ``alert``: an example review of an alert that is firing (``Alert.evidence`` names them);
* ``disagreement``: the predicted class differs from the class of the star rating;
* ``low_confidence``: the model's top probability is below ``threshold``.

A budget caps the picks at ``budget_per_hour`` per product category and clock hour (``now``
is passed in), in that priority order, so a surge cannot flood the annotators; what the
budget turns away is counted per reason in :attr:`ReviewSelector.dropped`. Audit draws come
first, so the budget cuts them only when ``audit_rate`` times a category's reviews in an hour
exceeds it; then the hour's audit sample keeps its earliest draws, which stays unbiased as
long as the model's accuracy does not change within the hour (keep ``audit_rate`` well below
the budget, and watch the ``audit`` drops). Unknown categories share the ``other`` budget.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from stream.events import category_or_other

__all__ = [
    "NO_RATING",
    "REASONS",
    "Pick",
    "ReviewSelector",
    "SelectionConfig",
    "audit_draws",
]

#: Why a review was picked, in priority order (the budget serves them in this order).
REASONS: Final = ("audit", "alert", "disagreement", "low_confidence")
#: The ``true`` value of a review without a star rating.
NO_RATING: Final = -2
_HOUR_S: Final = 3600
_DRAW_SCALE: Final = float(2**53)


_FNV_BASIS: Final = 0xCBF29CE484222325
_FNV_PRIME: Final = np.uint64(0x100000001B3)
_MASK64: Final = 2**64 - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _utf8(review_ids: Sequence[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """Start offsets (n + 1) and bytes of the ids' UTF-8 (lone surrogates kept as
    surrogatepass bytes instead of failing)."""
    try:
        arr = pa.array(review_ids, type=pa.large_string())
    except (UnicodeEncodeError, pa.ArrowException):
        arr = pa.array(
            [r.encode("utf-8", "surrogatepass") for r in review_ids], type=pa.large_binary()
        )
    _validity, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8)
        if data_buf is not None and data_buf.size
        else np.zeros(1, np.uint8)
    )
    return offsets.astype(np.int64), data


def audit_draws(review_ids: Sequence[str], seed: int) -> npt.NDArray[np.float64]:
    """A uniform number in [0, 1) per review id: FNV-1a over the id's UTF-8 bytes from a
    seed-derived basis, its length mixed in, then the splitmix64 finaliser; the top 53 bits
    make the number. The same id and seed always give the same number; computed a byte
    position at a time over the whole batch (no per-review Python)."""
    n = len(review_ids)
    if n == 0:
        return np.empty(0, dtype=np.float64)
    offsets, data = _utf8(review_ids)
    starts, lengths = offsets[:-1], np.diff(offsets)
    h = np.full(n, _FNV_BASIS ^ _splitmix64(seed & _MASK64), dtype=np.uint64)
    last = len(data) - 1
    for j in range(int(lengths.max())):
        has = lengths > j
        byte = data[np.minimum(starts + j, last)].astype(np.uint64)
        h = np.where(has, (h ^ byte) * _FNV_PRIME, h)
    h ^= lengths.astype(np.uint64)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) / _DRAW_SCALE


@dataclass(frozen=True, slots=True)
class SelectionConfig:
    """How many reviews go to people, and which. Bad values raise ``ValueError``."""

    categories: tuple[str, ...]
    threshold: float = 0.6  #: low confidence: top probability below this
    audit_rate: float = 0.01  #: inclusion probability of the random audit sample
    budget_per_hour: int = 20  #: most picks per category and clock hour
    seed: int = 13  #: key of the audit draw

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if not 0.0 <= self.audit_rate <= 1.0:
            raise ValueError(f"audit_rate must be in [0, 1], got {self.audit_rate}")
        if self.budget_per_hour < 0:
            raise ValueError(f"budget_per_hour must be >= 0, got {self.budget_per_hour}")


@dataclass(frozen=True, slots=True)
class Pick:
    """One review picked for a label: its row in the batch, why, and the probability that the
    audit draw includes a review (the audit sample's design weight is its inverse)."""

    row: int
    review_id: str
    category: str  #: the budget's category (``other`` for one outside the allow-list)
    reason: str
    inclusion_probability: float


@dataclass(slots=True)
class ReviewSelector:
    """Picks reviews per batch under an hourly budget per category (see the module doc).
    ``state()`` / ``from_state()`` keep the hour's spent budget across a restart."""

    config: SelectionConfig
    #: picks per (category, hour number since the epoch): the budget spent
    spent: dict[tuple[str, int], int] = field(default_factory=dict)
    #: picks the budget turned away, per reason
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    #: picks made, per reason
    picked: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))

    def select(
        self,
        review_ids: Sequence[str],
        categories: Sequence[str],
        predicted: npt.ArrayLike,
        probabilities: npt.ArrayLike,
        true: npt.ArrayLike,
        now_s: float,
        alert_ids: Collection[str] = (),
        *,
        first_row: int = 0,
    ) -> list[Pick]:
        """The picks of one batch, in priority order. ``probabilities`` is ``n x 3``
        (negative, neutral, positive); ``true`` the class of the rating (-1/0/1) or
        :data:`NO_RATING`; ``now_s`` the processing time (Unix seconds), which names the
        budget's hour; ``alert_ids`` the example review ids of firing alerts; ``predicted``
        the model's class (-1/0/1)."""
        n = len(review_ids)
        if n == 0:
            return []
        probs = np.asarray(probabilities, dtype=np.float64).reshape(n, 3)
        rated = np.asarray(true, dtype=np.int64)
        predicted_class = np.asarray(predicted, dtype=np.int64)
        reason = np.full(n, len(REASONS), dtype=np.int64)
        c = self.config
        masks = (
            audit_draws(review_ids, c.seed) < c.audit_rate if c.audit_rate > 0 else None,
            _in(review_ids, alert_ids) if alert_ids else None,
            (rated != NO_RATING) & (rated != predicted_class),
            probs.max(axis=1) < c.threshold,
        )
        # Lowest reason index wins: assign in reverse priority order.
        for index in range(len(REASONS) - 1, -1, -1):
            mask = masks[index]
            if mask is not None:
                reason[mask] = index
        if first_row > 0:
            earlier = reason[:first_row]
            earlier[earlier != REASONS.index("alert")] = len(REASONS)
        rows = np.flatnonzero(reason < len(REASONS))
        if not len(rows):
            return []
        order = rows[np.argsort(reason[rows], kind="stable")]
        return self._spend(order, reason, review_ids, categories, int(now_s // _HOUR_S))

    def _spend(
        self,
        order: npt.NDArray[np.int64],
        reason: npt.NDArray[np.int64],
        review_ids: Sequence[str],
        categories: Sequence[str],
        hour: int,
    ) -> list[Pick]:
        allowed = set(self.config.categories)
        budget = self.config.budget_per_hour
        self._forget_before(hour)
        picks: list[Pick] = []
        for row in order.tolist():
            category = category_or_other(categories[row], allowed)
            why = REASONS[int(reason[row])]
            key = (category, hour)
            used = self.spent.get(key, 0)
            if used >= budget:
                self.dropped[why] += 1
                continue
            self.spent[key] = used + 1
            self.picked[why] += 1
            picks.append(
                Pick(row, review_ids[row], category, why, self._inclusion(why)),
            )
        return picks

    def _inclusion(self, why: str) -> float:
        return self.config.audit_rate if why == "audit" else 1.0

    def _forget_before(self, hour: int) -> None:
        for key in [k for k in self.spent if k[1] < hour]:
            del self.spent[key]

    # -- state -----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The spent budget and the counts, as a JSON-able dict."""
        return {
            "spent": [[c, h, n] for (c, h), n in sorted(self.spent.items())],
            "dropped": dict(self.dropped),
            "picked": dict(self.picked),
        }

    @classmethod
    def from_state(cls, config: SelectionConfig, state: Mapping[str, Any]) -> ReviewSelector:
        selector = cls(config)
        selector.spent = {(str(c), int(h)): int(n) for c, h, n in state.get("spent", ())}
        for name in REASONS:
            selector.dropped[name] = int(state.get("dropped", {}).get(name, 0))
            selector.picked[name] = int(state.get("picked", {}).get(name, 0))
        return selector


def _in(review_ids: Sequence[str], wanted: Collection[str]) -> npt.NDArray[np.bool_]:
    wanted_set = wanted if isinstance(wanted, set | frozenset) else set(wanted)
    return np.fromiter((r in wanted_set for r in review_ids), dtype=np.bool_, count=len(review_ids))
