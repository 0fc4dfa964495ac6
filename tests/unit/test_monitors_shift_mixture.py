"""The mixture Shiryaev-Roberts detector: exact statistics, alarm points, budget, vectorisation,
state and the migration of CUSUM states."""

from __future__ import annotations

import itertools
import json
import math
import tracemalloc
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitors.shift import (
    MIXTURE_ODDS_RATIOS,
    BernoulliCusum,
    BernoulliMixtureSR,
    SentimentShiftMonitor,
    cusum_threshold,
)

L0 = math.log(5 / 6)  # p0 = 0.2, odds ratio 2 -> p1 = 1/3: ln((1 - p1) / (1 - p0))


def _reference(
    p0: float, odds_ratios: list[float], weights: list[float], xs: list[int]
) -> list[float]:
    """log sum_j w_j R^j_n step by step, in logs: R_n = L(x_n) (1 + R_{n-1})."""
    total = sum(weights)
    log_r = [-math.inf] * len(odds_ratios)
    out = []
    for x in xs:
        for j, r in enumerate(odds_ratios):
            odds = p0 / (1 - p0) * r
            p1 = odds / (1 + odds)
            ll = math.log(p1 / p0) if x else math.log((1 - p1) / (1 - p0))
            log_r[j] = ll + (
                math.log1p(math.exp(log_r[j]))
                if log_r[j] < 30
                else log_r[j] + math.log1p(math.exp(-log_r[j]))
            )
        top = max(math.log(w / total) + v for w, v in zip(weights, log_r, strict=True))
        out.append(
            top
            + math.log(
                sum(
                    math.exp(math.log(w / total) + v - top)
                    for w, v in zip(weights, log_r, strict=True)
                )
            )
        )
    return out


def test_statistic_is_the_weighted_sum_of_shiryaev_roberts_statistics() -> None:
    # p0 = 0.2; odds ratio 2 -> p1 = 1/3 (ratios 5/3, 5/6); odds ratio 4 -> p1 = 1/2 (5/2, 5/8)
    d = BernoulliMixtureSR(0.2, odds_ratios=[2.0, 4.0], weights=[1.0, 3.0], threshold=100.0)
    ra = rb = Fraction(0)
    for x in (1, 1, 0):
        d.update(x)
        ra = (Fraction(5, 3) if x else Fraction(5, 6)) * (1 + ra)
        rb = (Fraction(5, 2) if x else Fraction(5, 8)) * (1 + rb)
        assert d.statistic == pytest.approx(math.log(float(ra / 4 + 3 * rb / 4)), abs=1e-12)
    # R^a = 245/54, R^b = 195/32
    assert (ra, rb) == (Fraction(245, 54), Fraction(195, 32))
    np.testing.assert_allclose(d.comp_log_r, [math.log(245 / 54), math.log(195 / 32)])
    # CUSUM runs of both alternatives: never back at zero, 3 events with 2 negatives
    assert d.comp_run_count.tolist() == [3, 3]
    assert (d.run_count, d.run_negatives) == (3, 2)


def test_alarm_point_run_and_resolution() -> None:
    d = BernoulliMixtureSR(
        0.2, odds_ratios=[2.0, 4.0], weights=[1.0, 1.0], threshold=2.5, resolve_threshold=0.5
    )
    xs = [0, 0, 1, 1, 1, 0, 0, 0, 0]
    want = _reference(0.2, [2.0, 4.0], [1.0, 1.0], xs)
    first = next(i for i, v in enumerate(want) if v > 2.5)
    transitions = d.update_many(xs, stamps=np.arange(10.0, 19.0))
    # the mixture crosses 2.5 at index 4 (log R = 3.28); the odds-ratio-4 alternative carries it
    # and its CUSUM run starts after the two zeros: 3 events, 3 negatives, stamp 12
    assert first == 4
    assert transitions[0].index == 4 and transitions[0].status == "firing"
    assert transitions[0].statistic == pytest.approx(want[4], abs=1e-12)
    assert (transitions[0].count, transitions[0].negatives, transitions[0].start) == (3, 3, 12.0)
    # then the parent's mirror CUSUM at odds ratio 2: -L0 per calm event, over 0.5 on the 3rd
    assert [(t.index, t.status, t.count) for t in transitions[1:]] == [(7, "resolved", 3)]
    assert transitions[1].statistic == pytest.approx(-3 * L0, abs=1e-12)
    # the alarm side restarted from R = 0: one calm event since, R^j = L_j(0)
    assert not d.firing and d.statistic == 0.0
    np.testing.assert_allclose(d.comp_log_r, [math.log(5 / 6), math.log(5 / 8)])


def test_min_count_delays_the_alarm() -> None:
    d = BernoulliMixtureSR(
        0.2, odds_ratios=[2.0, 4.0], weights=[1.0, 1.0], threshold=1.2, min_count=6
    )
    (t,) = d.update_many([1] * 10)
    assert (t.index, t.count, t.negatives) == (5, 6, 6)
    assert t.statistic == pytest.approx(_reference(0.2, [2.0, 4.0], [1.0, 1.0], [1] * 6)[-1])


def test_default_grid_and_weights() -> None:
    d = BernoulliMixtureSR(0.2)
    np.testing.assert_allclose(d.odds_ratios, MIXTURE_ODDS_RATIOS)
    w = 1 / np.log(np.asarray(MIXTURE_ODDS_RATIOS))
    np.testing.assert_allclose(d.weights, w / w.sum())
    assert d.weights.sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"odds_ratios": []}, "odds_ratios"),
        ({"odds_ratios": [2.0, 1.0]}, "odds_ratios"),
        ({"odds_ratios": [2.0], "weights": [1.0, 1.0]}, "weights"),
        ({"odds_ratios": [2.0, 3.0], "weights": [1.0, 0.0]}, "weights"),
        ({"threshold": 0.0}, "threshold"),
    ],
)
def test_bad_parameters_raise(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BernoulliMixtureSR(**kwargs)  # type: ignore[arg-type]


def test_long_batches_are_split_without_overflow() -> None:
    # 4,000 calm events move the log-LR of odds ratio 9 by about 2,500: more than e^600 holds,
    # so the update takes several steps; a surge after them still matches the recursion
    xs = [0] * 4000 + [1] * 30
    d = BernoulliMixtureSR(0.2, threshold=1000.0)
    d.update_many(xs)
    want = _reference(
        0.2, list(MIXTURE_ODDS_RATIOS), (1 / np.log(MIXTURE_ODDS_RATIOS)).tolist(), xs
    )
    assert d.statistic == pytest.approx(want[-1], rel=1e-9)
    assert math.isfinite(d.statistic) and np.all(np.isfinite(d.comp_log_r))


def test_false_alarm_budget_holds_by_simulation() -> None:
    # 400 stationary streams of 2,000 events, budget 10 % per stream
    rng = np.random.default_rng(7)
    h = cusum_threshold(0.1, 2000)
    alarms = 0
    for _ in range(400):
        d = BernoulliMixtureSR(0.2, threshold=h)
        alarms += bool(d.update_many(rng.random(2000) < 0.2))
    assert alarms <= 40


def test_detects_a_doubling_sooner_than_the_cusum() -> None:
    rng = np.random.default_rng(3)
    h = cusum_threshold(0.001, 100_000)
    calm, surge = rng.random(5000) < 0.2, rng.random(5000) < 0.5
    mix = BernoulliMixtureSR(0.2, threshold=h)
    cusum = BernoulliCusum(0.2, odds_ratio=2.0, threshold=h)
    assert mix.update_many(calm) == [] and cusum.update_many(calm) == []
    (a,) = mix.update_many(surge)
    (b,) = cusum.update_many(surge)
    assert a.index < b.index == 115


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    xs=st.lists(st.booleans(), max_size=300),
    cuts=st.lists(st.integers(0, 300), max_size=5),
    threshold=st.floats(0.5, 5.0),
)
def test_vectorised_update_equals_step_by_step(
    xs: list[bool], cuts: list[int], threshold: float
) -> None:
    kw = {"odds_ratios": [1.5, 3.0, 8.0], "threshold": threshold, "min_count": 3}
    a = BernoulliMixtureSR(0.2, **kw)  # type: ignore[arg-type]
    b = BernoulliMixtureSR(0.2, **kw)  # type: ignore[arg-type]
    stamps = np.arange(len(xs), dtype=np.float64)
    got = []
    bounds = [0, *sorted(c for c in cuts if c <= len(xs)), len(xs)]
    for lo, hi in itertools.pairwise(bounds):
        got += [
            (lo + t.index, t.status, t.count, t.negatives, t.start)
            for t in a.update_many(xs[lo:hi], stamps[lo:hi])
        ]
    want = []
    for i, x in enumerate(xs):
        want += [
            (i, t.status, t.count, t.negatives, t.start)
            for t in b.update_many([x], stamps[i : i + 1])
        ]
    assert got == want
    sa, sb = a.state(), b.state()
    for key in ("statistic", "resolve_statistic"):
        assert sa.pop(key) == pytest.approx(sb.pop(key), abs=1e-9)
    for key in ("comp_log_r", "comp_cusum"):
        va, vb = sa.pop(key), sb.pop(key)
        assert [v is None for v in va] == [v is None for v in vb]
        assert [v for v in va if v is not None] == pytest.approx(
            [v for v in vb if v is not None], abs=1e-9
        )
    assert sa == sb


@settings(max_examples=50, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), p0=st.floats(0.05, 0.5))
def test_stationary_stream_stays_within_budget(seed: int, p0: float) -> None:
    # budget 1e-5 per stream of 3,000 events: any alarm here would break the bound by far
    d = BernoulliMixtureSR(p0, threshold=cusum_threshold(1e-5, 3000))
    xs = np.random.default_rng(seed).random(3000) < p0
    assert d.update_many(xs) == []


def test_state_round_trip_continues_identically() -> None:
    rng = np.random.default_rng(1)
    xs = np.concatenate([rng.random(320) < 0.2, rng.random(280) < 0.45])
    a = BernoulliMixtureSR(0.2, threshold=10.0)
    b = BernoulliMixtureSR(0.2, threshold=10.0)
    assert json.loads(json.dumps(b.state())) == b.state()  # fresh: minus infinity as None
    a.update_many(xs[:300], np.arange(300.0))
    b.load_state(json.loads(json.dumps(a.state())))
    assert b.state() == a.state()
    ta = a.update_many(xs[300:], np.arange(300.0, 600.0))
    tb = b.update_many(xs[300:], np.arange(300.0, 600.0))
    assert ta == tb and ta


def test_a_cusum_state_migrates_to_the_run_evidence() -> None:
    old = BernoulliCusum(0.2, odds_ratio=2.0, threshold=100.0)
    old.update_many([0, 1, 1, 0, 1], np.arange(5.0))
    state = json.loads(json.dumps(old.state()))
    assert (state["run_count"], state["run_negatives"], state["run_start"]) == (4, 3, 1.0)
    d = BernoulliMixtureSR(0.2, odds_ratios=[2.0, 4.0], threshold=100.0)
    d.load_state(state)
    # each alternative starts from the saved run's log-LR: 3 ln(p1/p0) + ln((1-p1)/(1-p0))
    want = [3 * math.log(5 / 3) + math.log(5 / 6), 3 * math.log(5 / 2) + math.log(5 / 8)]
    np.testing.assert_allclose(d.comp_log_r, want)
    np.testing.assert_allclose(d.comp_cusum, want)
    assert d.comp_run_count.tolist() == [4, 4]
    assert d.comp_run_negatives.tolist() == [3, 3]
    assert d.comp_run_start.tolist() == [1.0, 1.0]
    assert (d.p0, d.firing, d.run_count) == (0.2, False, 4)
    # and it goes on from there: one more negative multiplies in 1 + R
    d.update(1, 5.0)
    np.testing.assert_allclose(
        d.comp_log_r,
        [
            math.log(5 / 3) + math.log1p(math.exp(want[0])),
            math.log(5 / 2) + math.log1p(math.exp(want[1])),
        ],
    )


def test_monitor_loads_a_state_saved_with_cusum_detectors() -> None:
    def monitor() -> SentimentShiftMonitor:
        return SentimentShiftMonitor(
            ("A", "other"),
            baseline_negatives=[200, 0],
            baseline_totals=[1000, 0],
            odds_ratio=2.0,
            threshold=8.0,
            resolve_threshold=6.0,
            min_count=10,
            reference_events=50,
        )

    m = monitor()
    group = np.zeros(200, dtype=np.int64)
    neg = np.random.default_rng(2).random(200) < 0.3
    m.update(group, neg, np.arange(200.0), [f"r{i}" for i in range(200)], [[]] * 200)
    state = json.loads(json.dumps(m.state()))
    for s in state["detectors"].values():  # what a CUSUM-era state held
        for key in [k for k in s if k == "kind" or k == "odds_ratios" or k.startswith("comp_")]:
            del s[key]
    loaded = monitor()
    loaded.load_state(state)
    for name, det in loaded.detectors.items():
        src = m.detectors[name]
        assert (det.p0, det.run_count, det.run_negatives) == (
            src.p0,
            src.run_count,
            src.run_negatives,
        )
        n, k = det.run_count, det.run_negatives
        want = np.where(n > 0, k * det._l1s + (n - k) * det._l0s, -np.inf)
        np.testing.assert_allclose(det.comp_log_r, want)


def test_a_large_statistic_then_a_long_calm_matches_the_recursion() -> None:
    # 4,000 events at 35 % under a huge min_count lift log R of odds ratio 2.3 to about 260;
    # 2,000 calm events then move the log-LRs by more than 600 in several steps
    xs = (np.random.default_rng(5).random(4000) < 0.35).astype(int).tolist() + [0] * 2000
    d = BernoulliMixtureSR(0.2, threshold=1000.0, min_count=100_000)
    d.update_many(xs[:4000])
    assert d.statistic > 250
    d.update_many(xs[4000:])
    w = (1 / np.log(MIXTURE_ODDS_RATIOS)).tolist()
    want = _reference(0.2, list(MIXTURE_ODDS_RATIOS), w, xs)
    assert d.statistic == pytest.approx(want[-1], rel=1e-9)
    assert d.statistic > 1


def test_a_large_group_is_worked_in_bounded_steps() -> None:
    # A worker's feed group can hold 100,000 events: one call over them gives what batches of
    # 2,000 give, and holds a few MB, not (alternatives x events) arrays of the whole group
    # over and over (17.6 MB, and about 7 times the time, before the steps were bounded).
    rng = np.random.default_rng(1)
    xs = (rng.random(100_000) < 0.2).astype(np.int64)
    xs[80_000:] = rng.random(20_000) < 0.45
    stamps = np.arange(len(xs), dtype=np.float64)
    whole = BernoulliMixtureSR(0.2, min_count=20)
    tracemalloc.start()
    try:
        got = [(t.index, t.status, t.count) for t in whole.update_many(xs, stamps)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    batched = BernoulliMixtureSR(0.2, min_count=20)
    want = []
    for lo in range(0, len(xs), 2000):
        ts = batched.update_many(xs[lo : lo + 2000], stamps[lo : lo + 2000])
        want += [(lo + t.index, t.status, t.count) for t in ts]
    assert got == want and any(status == "firing" for _i, status, _c in got)
    assert whole.statistic == pytest.approx(batched.statistic, rel=1e-9)
    assert peak < 10 * 2**20, f"{peak / 2**20:.1f} MB"
