"""The negative-share CUSUM: exact statistics, alarm points, budget, vectorisation, reset."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from monitors.shift import (
    BernoulliCusum,
    SentimentShiftMonitor,
    cusum_threshold,
    shrink_shares,
    upper_shares,
)

L1 = math.log(5 / 3)  # p0 = 0.2, odds ratio 2 -> p1 = 1/3: ln(p1 / p0)
L0 = math.log(5 / 6)  # ln((1 - p1) / (1 - p0))


def test_log_likelihood_ratio_increments_are_exact() -> None:
    d = BernoulliCusum(0.2, odds_ratio=2.0, threshold=100.0)
    assert d.p1 == pytest.approx(1 / 3, abs=1e-15)
    d.update(1)
    assert d.statistic == pytest.approx(L1, abs=1e-12)
    d.update(1).update(0)
    assert d.statistic == pytest.approx(2 * L1 + L0, abs=1e-12)
    d.update(0).update(0).update(0).update(0).update(0)
    # 2 L1 + 6 L0 = 1.0216 - 1.0939 < 0: the statistic is reflected at zero
    assert d.statistic == 0.0
    assert d.run_count == 0


def test_alarm_and_resolution_points() -> None:
    d = BernoulliCusum(0.2, odds_ratio=2.0, threshold=1.2, resolve_threshold=0.5)
    transitions = d.update_many([1, 1, 0, 1, 0, 0, 0, 0], stamps=np.arange(8.0))
    # S = 0.511, 1.022, 0.839, 1.350 > 1.2 -> fires at index 3 on a run of 4 (3 negatives);
    # then R = 0.182, 0.365, 0.547 > 0.5 -> resolves at index 6 after 3 events
    assert [(t.index, t.status, t.count, t.negatives) for t in transitions] == [
        (3, "firing", 4, 3),
        (6, "resolved", 3, 0),
    ]
    assert transitions[0].statistic == pytest.approx(3 * L1 + L0, abs=1e-12)
    assert transitions[1].statistic == pytest.approx(-3 * L0, abs=1e-12)
    assert transitions[0].start == 0.0
    assert not d.firing and d.statistic == 0.0


def test_min_count_delays_the_alarm() -> None:
    d = BernoulliCusum(0.2, odds_ratio=2.0, threshold=1.2, min_count=6)
    (t,) = d.update_many([1] * 10)
    # S crosses 1.2 at the 3rd event but the run needs 6 events
    assert (t.index, t.count, t.negatives) == (5, 6, 6)
    assert t.statistic == pytest.approx(6 * L1, abs=1e-12)


def test_run_start_is_the_event_after_the_last_zero() -> None:
    d = BernoulliCusum(0.2, odds_ratio=2.0, threshold=1.2)
    (t,) = d.update_many([0, 0, 1, 1, 1], stamps=[10.0, 11.0, 12.0, 13.0, 14.0])
    assert (t.index, t.start, t.count) == (4, 12.0, 3)
    assert d.drift_detected and d.firing


def test_fires_once_per_episode() -> None:
    d = BernoulliCusum(0.2, odds_ratio=2.0, threshold=2.0)
    transitions = d.update_many([1] * 200)
    assert [t.status for t in transitions] == ["firing"]
    assert d.firing


def test_threshold_formula() -> None:
    assert cusum_threshold(0.001, 100_000) == pytest.approx(math.log(1e8))
    with pytest.raises(ValueError, match="alpha"):
        cusum_threshold(0.0, 10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p0": 0.0}, "p0"),
        ({"p0": 1.0}, "p0"),
        ({"odds_ratio": 1.0}, "odds_ratio"),
        ({"threshold": 0.0}, "threshold"),
        ({"min_count": 0}, "min_count"),
        ({"resolve_threshold": -1.0}, "resolve_threshold"),
    ],
)
def test_bad_parameters_raise(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BernoulliCusum(**kwargs)  # type: ignore[arg-type]


def test_false_alarm_budget_holds_by_simulation() -> None:
    # 400 stationary streams of 2,000 events, budget 10 % per stream: the bound N e^-h is
    # conservative, the observed rate is far below it.
    rng = np.random.default_rng(7)
    h = cusum_threshold(0.1, 2000)
    alarms = 0
    for _ in range(400):
        d = BernoulliCusum(0.2, odds_ratio=2.0, threshold=h)
        alarms += bool(d.update_many(rng.random(2000) < 0.2))
    assert alarms <= 40
    assert alarms == 0


def test_detects_a_doubling_quickly() -> None:
    rng = np.random.default_rng(3)
    d = BernoulliCusum(0.2, odds_ratio=2.0, threshold=cusum_threshold(0.001, 100_000))
    assert d.update_many(rng.random(5000) < 0.2) == []
    (t,) = d.update_many(rng.random(5000) < 0.5)
    # expected delay about h / E[l] = 18.4 / 0.164 = 112 events
    assert (t.index, t.count, t.negatives) == (115, 107, 55)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    xs=st.lists(st.booleans(), max_size=300),
    cuts=st.lists(st.integers(0, 300), max_size=5),
    threshold=st.floats(0.5, 5.0),
)
def test_vectorised_update_equals_step_by_step(
    xs: list[bool], cuts: list[int], threshold: float
) -> None:
    a = BernoulliCusum(0.2, odds_ratio=2.5, threshold=threshold, min_count=3)
    b = BernoulliCusum(0.2, odds_ratio=2.5, threshold=threshold, min_count=3)
    stamps = np.arange(len(xs), dtype=np.float64)
    got = []
    bounds = [0, *sorted(c for c in cuts if c <= len(xs)), len(xs)]
    for lo, hi in itertools.pairwise(bounds):
        got += [(lo + t.index, t.status, t.count) for t in a.update_many(xs[lo:hi], stamps[lo:hi])]
    want = []
    for i, x in enumerate(xs):
        want += [(i, t.status, t.count) for t in b.update_many([x], stamps[i : i + 1])]
    assert got == want
    sa, sb = a.state(), b.state()
    for key in ("statistic", "resolve_statistic"):
        assert sa.pop(key) == pytest.approx(sb.pop(key), abs=1e-9)
    assert sa == sb


@settings(max_examples=50, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), p0=st.floats(0.05, 0.5))
def test_stationary_stream_stays_within_budget(seed: int, p0: float) -> None:
    # budget 1e-5 per stream of 3,000 events: any alarm here would break the bound by far
    d = BernoulliCusum(p0, odds_ratio=2.0, threshold=cusum_threshold(1e-5, 3000))
    xs = np.random.default_rng(seed).random(3000) < p0
    assert d.update_many(xs) == []


@settings(max_examples=40, deadline=None, derandomize=True)
@given(xs=st.lists(st.booleans(), max_size=200), p0=st.floats(0.05, 0.6))
def test_reset_restores_the_start_state(xs: list[bool], p0: float) -> None:
    fresh = BernoulliCusum(p0, threshold=1.5, min_count=2)
    d = BernoulliCusum(p0, threshold=1.5, min_count=2)
    d.update_many(xs, np.arange(len(xs), dtype=np.float64))
    d.p0 = 0.9
    d.reset()
    assert d.state() == fresh.state()
    assert d.p0 == pytest.approx(p0)


def test_state_round_trip_continues_identically() -> None:
    rng = np.random.default_rng(1)
    xs = rng.random(600) < 0.35
    a = BernoulliCusum(0.2, threshold=4.0)
    a.update_many(xs[:300])
    b = BernoulliCusum(0.2, threshold=4.0)
    b.load_state(a.state())
    assert [t.index for t in a.update_many(xs[300:])] == [t.index for t in b.update_many(xs[300:])]


def test_shrink_shares_method_of_moments() -> None:
    # no between-group variance beyond sampling: every group gets the pooled share
    np.testing.assert_allclose(shrink_shares([20, 21, 19], [100, 100, 100]), [0.2, 0.2, 0.2])
    # clear heterogeneity: pooled 0.3; observed variance 0.04, sampling 0.0021 -> between
    # 0.0379, prior strength 0.21 / 0.0379 - 1 = 4.5409; group 1: (10 + 4.5409*0.3) / 104.5409
    got = shrink_shares([10, 50], [100, 100])
    between = 0.04 - 0.3 * 0.7 / 100
    m = 0.3 * 0.7 / between - 1
    np.testing.assert_allclose(got, [(10 + m * 0.3) / (100 + m), (50 + m * 0.3) / (100 + m)])


def _monitor(reference_events: int = 100) -> SentimentShiftMonitor:
    return SentimentShiftMonitor(
        ("A", "B", "other"),
        baseline_negatives=[200, 200, 0],
        baseline_totals=[1000, 1000, 0],
        odds_ratio=2.0,
        threshold=8.0,
        resolve_threshold=6.0,
        min_count=10,
        reference_events=reference_events,
    )


def test_references_are_upper_bounds_of_the_baseline_share() -> None:
    m = _monitor()
    # homogeneous groups: every reference is the 90 % Jeffreys bound of the pooled share
    upper = stats.beta.ppf(0.9, 400.5, 1600.5)
    assert m.overall_reference == pytest.approx(upper)
    np.testing.assert_allclose(m.reference_shares(), [upper] * 3)
    overall, groups = upper_shares([10, 50], [100, 100], 0.9)
    assert overall == pytest.approx(stats.beta.ppf(0.9, 60.5, 140.5))
    between = 0.04 - 0.3 * 0.7 / 100
    s = 0.3 * 0.7 / between - 1
    want = stats.beta.ppf(
        0.9, [10 + 0.3 * s + 0.5, 50 + 0.3 * s + 0.5], [90 + 0.7 * s + 0.5, 50 + 0.7 * s + 0.5]
    )
    np.testing.assert_allclose(groups, want)


def test_category_reference_follows_the_rest_of_the_stream() -> None:
    m = _monitor()
    upper = stats.beta.ppf(0.9, 400.5, 1600.5)
    # category B turns 50 % negative over the last 100 events: A's reference moves up by
    # B's log-odds rise (smoothed with 50 pseudo-events at the baseline share 0.2)
    group = np.ones(100, dtype=np.int64)
    neg = np.arange(100) % 2 == 0
    m.update(group, neg, np.arange(100.0), [f"r{i}" for i in range(100)], [[]] * 100)
    rest_now = (50 + 50 * 0.2) / (100 + 50)
    odds = upper / (1 - upper) * (rest_now / (1 - rest_now)) / 0.25
    assert m.reference_shares()[0] == pytest.approx(odds / (1 + odds))
    # B's own reference stays at its baseline bound (the rest, A, has no events)
    assert m.reference_shares()[1] == pytest.approx(upper)


def test_monitor_attributes_a_category_surge_to_that_category() -> None:
    m = _monitor()
    rng = np.random.default_rng(0)
    n = 3000
    group = rng.integers(0, 2, n)
    neg = np.where(group == 0, rng.random(n) < 0.6, rng.random(n) < 0.2)
    tokens = [["zipper", "broke"] if x else ["lovely"] for x in neg]
    events = m.update(group, neg, np.arange(float(n)), [f"r{i}" for i in range(n)], tokens)
    # the stream as a whole is 40 % negative, so "all" fires too; B stays quiet
    assert [(e.group, e.transition.status) for e in events] == [
        ("all", "firing"),
        ("A", "firing"),
    ]
    first = events[1]
    assert len(first.example_ids) == 5
    assert {w for w, _ in first.terms} <= {"zipper", "broke"}
