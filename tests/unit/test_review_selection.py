"""The review queue's selection: reasons, priority, the hourly budget, the audit draw."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from monitors.review import NO_RATING, Pick, ReviewSelector, SelectionConfig, audit_draws

CATS = ("Dresses", "Knits")
HOUR = 3600.0 * 500_000  # a clock hour boundary


def _probs(*top: float) -> np.ndarray:
    """Rows whose top class is positive with probability ``top``, the rest split evenly."""
    return np.array([((1 - t) / 2, (1 - t) / 2, t) for t in top])


def _reference_draw(review_id: str, seed: int) -> float:
    """The audit draw of one id, written out byte by byte (the function under test works a
    byte position at a time over a whole batch)."""
    mask = 2**64 - 1

    def splitmix(x: int) -> int:
        x = (x + 0x9E3779B97F4A7C15) & mask
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        return x ^ (x >> 31)

    data = review_id.encode("utf-8", "surrogatepass")
    h = 0xCBF29CE484222325 ^ splitmix(seed & mask)
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & mask
    h ^= len(data)
    h = splitmix(h - 0x9E3779B97F4A7C15 & mask)  # the finaliser alone (no increment)
    return (h >> 11) / 2**53


def test_audit_draw_matches_the_byte_by_byte_reference() -> None:
    ids = ["r-1", "r-2", "é-3", "", "a much longer review id 0123456789", "\ud800x"]
    draws = audit_draws(ids, seed=13)
    assert draws.tolist() == [_reference_draw(r, 13) for r in ids]
    assert audit_draws(ids, seed=13).tolist() == draws.tolist()
    assert audit_draws(ids, seed=14).tolist() != draws.tolist()
    assert audit_draws([], seed=13).tolist() == []


def test_audit_draw_is_uniform_over_sequential_ids() -> None:
    draws = audit_draws([f"review-{i:08d}" for i in range(20_000)], seed=13)
    assert ((draws >= 0) & (draws < 1)).all()
    assert stats.kstest(draws, "uniform").pvalue > 0.01
    # 1 % of 20,000 is 200, sd 14.1
    assert 158 <= int((draws < 0.01).sum()) <= 242


def test_each_reason_and_its_priority() -> None:
    # a: low confidence; b: confident, rating disagrees; c: confident, rating agrees;
    # d: alert example (also low confidence: alert wins); e: unrated, confident.
    ids = ["a", "b", "c", "d", "e"]
    sel = ReviewSelector(SelectionConfig(CATS, threshold=0.6, audit_rate=0.0, budget_per_hour=10))
    picks = sel.select(
        ids,
        ["Dresses"] * 5,
        [1, 1, 1, 1, 1],
        _probs(0.5, 0.9, 0.9, 0.4, 0.95),
        [1, -1, 1, NO_RATING, NO_RATING],
        HOUR,
        alert_ids={"d", "zz"},
    )
    assert [(p.review_id, p.reason, p.row) for p in picks] == [
        ("d", "alert", 3),
        ("b", "disagreement", 1),
        ("a", "low_confidence", 0),
    ]
    assert all(p.inclusion_probability == 1.0 for p in picks)
    assert sel.picked == {"audit": 0, "alert": 1, "disagreement": 1, "low_confidence": 1}


def test_audit_sample_takes_the_reviews_whose_draw_is_below_the_rate() -> None:
    ids = [f"review-{i}" for i in range(2000)]
    draws = audit_draws(ids, seed=13)
    rate = 0.05
    sel = ReviewSelector(
        SelectionConfig(CATS, threshold=0.0, audit_rate=rate, budget_per_hour=10**6)
    )
    picks = sel.select(ids, ["Knits"] * 2000, [1] * 2000, _probs(*[0.99] * 2000), [1] * 2000, HOUR)
    expected = [ids[i] for i in np.flatnonzero(draws < rate)]
    assert [p.review_id for p in picks] == expected
    assert all(p.reason == "audit" and p.inclusion_probability == rate for p in picks)
    # the draw is uniform: the sample size is binomial(2000, 0.05) = 100 +- 3 sd (29.1)
    assert 71 <= len(picks) <= 129


def test_budget_per_category_per_hour_in_priority_order() -> None:
    sel = ReviewSelector(SelectionConfig(CATS, threshold=0.6, audit_rate=0.0, budget_per_hour=2))
    ids = ["a", "b", "c", "d", "e"]
    cats = ["Dresses", "Dresses", "Dresses", "Knits", "Pants"]
    probs = _probs(0.4, 0.9, 0.5, 0.3, 0.3)
    true = [NO_RATING, -1, NO_RATING, NO_RATING, NO_RATING]
    picks = sel.select(ids, cats, [1] * 5, probs, true, HOUR + 10)
    # Dresses: b (disagreement) first, then a; c is over the budget of 2.
    assert [(p.review_id, p.category) for p in picks] == [
        ("b", "Dresses"),
        ("a", "Dresses"),
        ("d", "Knits"),
        ("e", "other"),
    ]
    assert sel.dropped["low_confidence"] == 1
    # The same hour: Dresses has nothing left, Knits one more.
    again = sel.select(
        ["f", "g", "h"],
        ["Dresses", "Knits", "Knits"],
        [1] * 3,
        _probs(0.3, 0.3, 0.3),
        [NO_RATING] * 3,
        HOUR + 3599,
    )
    assert [p.review_id for p in again] == ["g"]
    assert sel.dropped["low_confidence"] == 3
    # The next hour starts a fresh budget, and the old hour is forgotten.
    later = sel.select(["i"], ["Dresses"], [1], _probs(0.3), [NO_RATING], HOUR + 3600)
    assert [p.review_id for p in later] == ["i"]
    assert set(sel.spent) == {("Dresses", 500_001)}


def test_state_round_trip_keeps_the_spent_budget() -> None:
    config = SelectionConfig(CATS, threshold=0.6, audit_rate=0.0, budget_per_hour=1)
    sel = ReviewSelector(config)
    sel.select(["a"], ["Knits"], [1], _probs(0.3), [NO_RATING], HOUR)
    restored = ReviewSelector.from_state(config, sel.state())
    assert restored.state() == sel.state()
    assert restored.select(["b"], ["Knits"], [1], _probs(0.3), [NO_RATING], HOUR) == []
    assert restored.dropped["low_confidence"] == 1


def test_empty_batch_and_bad_config() -> None:
    sel = ReviewSelector(SelectionConfig(CATS))
    assert sel.select([], [], [], np.empty((0, 3)), [], HOUR) == []
    with pytest.raises(ValueError, match="threshold"):
        SelectionConfig(CATS, threshold=1.5)
    with pytest.raises(ValueError, match="audit_rate"):
        SelectionConfig(CATS, audit_rate=-0.1)
    with pytest.raises(ValueError, match="budget"):
        SelectionConfig(CATS, budget_per_hour=-1)


@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=8),
            st.sampled_from(["Dresses", "Knits", "Pants"]),
            st.floats(0.34, 1.0),
            st.sampled_from([NO_RATING, -1, 0, 1]),
        ),
        max_size=40,
    ),
    st.integers(0, 5),
)
def test_never_more_than_the_budget_and_never_a_review_twice(
    rows: list[tuple[str, str, float, int]], budget: int
) -> None:
    sel = ReviewSelector(
        SelectionConfig(CATS, threshold=0.7, audit_rate=0.2, budget_per_hour=budget)
    )
    picks: list[Pick] = sel.select(
        [r[0] for r in rows],
        [r[1] for r in rows],
        [1] * len(rows),
        _probs(*[r[2] for r in rows]).reshape(len(rows), 3),
        [r[3] for r in rows],
        HOUR,
    )
    per_category: dict[str, int] = {}
    for p in picks:
        per_category[p.category] = per_category.get(p.category, 0) + 1
    assert all(n <= budget for n in per_category.values())
    assert len({p.row for p in picks}) == len(picks)
    assert sum(sel.picked.values()) + sum(sel.dropped.values()) >= len(picks)
