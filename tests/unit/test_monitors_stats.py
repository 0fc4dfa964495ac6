"""Statistical helpers, drift tests and terms against hand-computed values and scipy."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from monitors._stats import (
    beta_ppf,
    chi2_homogeneity,
    chi2_sf,
    fisher_greater,
    js_distance,
    ks_binned,
    logit_shift,
    norm_cdf,
    norm_ppf,
    project_to_simplex,
    proportion_ci,
    psi,
    wilson_interval,
)
from monitors.baseline import FeatureReference, classification_scores
from monitors.drift import (
    accuracy_drift,
    distribution_drift,
    feature_drift,
    mix_adjusted_reference,
)
from monitors.terms import BoundedCounter, distinctive_terms, tokenize


def test_psi_hand_computed() -> None:
    # shares (0.5, 0.5) -> (0.25, 0.75): (0.25-0.5) ln(0.5) + (0.75-0.5) ln(1.5)
    want = -0.25 * math.log(0.5) + 0.25 * math.log(1.5)
    assert psi([50, 50], [25, 75], smoothing=0.0) == pytest.approx(want, abs=1e-12)
    assert psi([10, 10], [10, 10]) == 0.0


def test_js_distance_is_scipys_base_2() -> None:
    assert js_distance([1, 3], [3, 1]) == pytest.approx(
        jensenshannon([0.25, 0.75], [0.75, 0.25], base=2)
    )
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)


def test_chi2_matches_scipy_when_cells_are_large() -> None:
    ref, cur = np.array([200, 300, 500]), np.array([30, 20, 50])
    want = stats.chi2_contingency(np.vstack([ref, cur]), correction=False)
    got = chi2_homogeneity(ref, cur)
    assert (got.statistic, got.p_value, got.dof) == pytest.approx((want.statistic, want.pvalue, 2))


@pytest.mark.parametrize("seed", range(5))
def test_chi2_equals_scipy_on_random_tables(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 12))
    ref, cur = rng.integers(5, 5000, k), rng.integers(5, 500, k)
    want = stats.chi2_contingency(np.vstack([ref, cur]), correction=False)
    got = chi2_homogeneity(ref, cur)
    assert got.statistic == pytest.approx(want.statistic, rel=1e-12)
    assert got.p_value == pytest.approx(want.pvalue, rel=1e-9, abs=1e-300)
    assert got.dof == want.dof


def test_chi2_pools_sparse_cells() -> None:
    # the last two cells expect < 5 window events each: pooled into one cell (still < 5,
    # dropped), leaving a 2x2 table
    ref, cur = np.array([500, 480, 10, 10]), np.array([50, 45, 1, 0])
    got = chi2_homogeneity(ref, cur)
    want = stats.chi2_contingency(np.array([[500, 480], [50, 45]]), correction=False)
    assert (got.statistic, got.p_value, got.dof) == pytest.approx((want.statistic, want.pvalue, 1))


def test_ks_binned_is_scipys_ks_on_bin_indices() -> None:
    ref, cur = np.array([10, 40, 30, 20]), np.array([20, 10, 10, 10])
    a = np.repeat(np.arange(4), ref)
    b = np.repeat(np.arange(4), cur)
    want = stats.ks_2samp(a, b, method="asymp")
    got = ks_binned(ref, cur)
    assert got.statistic == pytest.approx(want.statistic)
    # D = |0.1 - 0.4| = 0.3 at the first edge; asymptotic p with n m / (n + m) = 100*50/150
    assert got.statistic == pytest.approx(0.3)
    assert got.p_value == pytest.approx(stats.kstwobign.sf(math.sqrt(100 * 50 / 150) * 0.3))


@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
@pytest.mark.parametrize(
    ("k", "n"), [(0, 1), (1, 1), (0, 37), (37, 37), (30, 100), (3, 4), (1, 12345)]
)
def test_proportion_ci_is_scipys_wilson_interval(k: int, n: int, confidence: float) -> None:
    want = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    assert proportion_ci(k, n, confidence) == pytest.approx((want.low, want.high), abs=1e-12)


def test_proportion_ci_refuses_impossible_counts() -> None:
    assert proportion_ci(0, 0, 0.95) == (0.0, 1.0)
    with pytest.raises(ValueError, match="k must be"):
        proportion_ci(5, 4, 0.95)
    with pytest.raises(ValueError, match="k must be"):
        proportion_ci(-1, 4, 0.95)
    with pytest.raises(ValueError, match="share"):
        wilson_interval(1.5, 10.0, 0.95)


def test_project_to_simplex() -> None:
    np.testing.assert_allclose(project_to_simplex([0.6, 0.5, -0.1]), [0.55, 0.45, 0.0])
    np.testing.assert_allclose(project_to_simplex([0.2, 0.3, 0.5]), [0.2, 0.3, 0.5])
    np.testing.assert_allclose(project_to_simplex([2.0, 0.0, 0.0]), [1.0, 0.0, 0.0])


def test_logit_shift() -> None:
    # odds 0.25 times the reference's odds ratio (1/1) / (0.25) = 4 -> odds 1 -> 0.5
    assert logit_shift(0.2, 0.5, 0.2) == pytest.approx(0.5)


def test_classification_scores() -> None:
    conf = [[5, 1, 0], [0, 3, 1], [1, 0, 4]]  # [predicted, true]
    acc, f1 = classification_scores(conf)
    assert acc == pytest.approx(12 / 15)
    f1s = [2 * 5 / (10 + 1 + 1), 2 * 3 / (6 + 1 + 1), 2 * 4 / (8 + 1 + 1)]
    assert f1 == pytest.approx(sum(f1s) / 3)


def _ref() -> FeatureReference:
    # bins: (-inf, 10), [10, 20), [20, inf); predicted negative reviews are longer
    return FeatureReference(
        "review_words",
        "numeric",
        ((10, 30, 60), (30, 40, 30), (60, 30, 10)),
        edges=(10.0, 20.0),
    )


def test_mix_adjusted_reference() -> None:
    # a window that is all negative expects the negative row of the baseline
    np.testing.assert_allclose(mix_adjusted_reference(_ref(), [5, 0, 0]), [0.1, 0.3, 0.6])
    np.testing.assert_allclose(mix_adjusted_reference(_ref(), [1, 0, 1]), [0.35, 0.3, 0.35])


def test_feature_drift_allows_for_the_class_mix() -> None:
    # a window that merely holds more negative reviews, each looking like the baseline's
    window = np.array([[10, 30, 60], [3, 4, 3], [6, 3, 1]])
    r = feature_drift(_ref(), window, alpha=0.01, min_psi=0.1)
    assert not r.drifted
    assert r.p_value == pytest.approx(1.0)  # identical shapes in every stratum
    # the same mix with every review shorter: drift
    shifted = np.array([[60, 30, 10], [6, 3, 1], [6, 3, 1]])
    r2 = feature_drift(_ref(), shifted, alpha=0.01, min_psi=0.1)
    assert r2.drifted and r2.test == "ks"
    ks_neg = ks_binned([10, 30, 60], [60, 30, 10])
    assert r2.statistic == pytest.approx(ks_neg.statistic)


def test_feature_test_holds_its_false_alarm_rate_at_small_and_large_windows() -> None:
    """A fixed PSI cut-off fires on noise in small windows; the test's rate stays at alpha."""
    rng = np.random.default_rng(5)
    shares = np.array([0.1, 0.2, 0.3, 0.25, 0.15])
    rates = {}
    for n in (60, 5000):
        test_alarms = psi_alarms = 0
        for _ in range(1000):
            base = rng.multinomial(2000, shares)
            cur = rng.multinomial(n, shares)
            test_alarms += chi2_homogeneity(base, cur).p_value < 0.05
            psi_alarms += psi(base, cur) >= 0.1
        rates[n] = (test_alarms / 1000, psi_alarms / 1000)
    assert rates[60][0] <= 0.065 and rates[5000][0] <= 0.065
    assert rates[60][1] >= 0.15  # the fixed cut-off: many false alarms in small windows
    assert rates[5000][1] == 0.0
    assert rates == {60: (0.045, 0.196), 5000: (0.054, 0.0)}


def test_distribution_drift_matches_scipy() -> None:
    ref, cur = [200, 200, 600], [40, 20, 40]
    r = distribution_drift(ref, cur, alpha=0.001, min_change=0.05)
    want = stats.chi2_contingency(np.array([ref, cur]), correction=False)
    assert (r.statistic, r.p_value) == pytest.approx((want.statistic, want.pvalue))
    assert r.tvd == pytest.approx(0.5 * (0.2 + 0.0 + 0.2))
    assert r.drifted


def test_accuracy_drift_is_a_one_sided_fisher_test() -> None:
    ref = np.diag([300, 300, 300]) + 20  # 960 right of 1080
    win = np.diag([50, 50, 50]) + 15  # 195 right of 285
    r = accuracy_drift(ref, win, alpha=0.001, min_drop=0.05)
    want = stats.fisher_exact([[960, 120], [195, 90]], alternative="greater").pvalue
    assert r.p_value == pytest.approx(want)
    assert (r.baseline_accuracy, r.accuracy) == pytest.approx((960 / 1080, 195 / 285))
    assert r.dropped


def test_distributions_are_scipy_stats_to_the_bit() -> None:
    """The scipy.special functions the monitors call give what scipy.stats gives, exactly."""
    q = np.linspace(0.001, 0.999, 97)
    assert [norm_ppf(x) for x in q] == [float(stats.norm.ppf(x)) for x in q]
    x = np.linspace(-6, 6, 97)
    assert [norm_cdf(v) for v in x] == [float(stats.norm.cdf(v)) for v in x]
    chi = np.linspace(0, 60, 61)
    for dof in (1, 2, 5, 17):
        assert [chi2_sf(v, dof) for v in chi] == [float(stats.chi2.sf(v, dof)) for v in chi]
    rng = np.random.default_rng(5)
    a, b = rng.uniform(0.5, 5000, 500), rng.uniform(0.5, 5000, 500)
    for quantile in (0.5, 0.9, 0.999):
        assert np.array_equal(beta_ppf(quantile, a, b), stats.beta.ppf(quantile, a, b))
    assert float(beta_ppf(0.9, 10.5, 90.5)) == float(stats.beta.ppf(0.9, 10.5, 90.5))


def test_fisher_greater_is_scipys_one_sided_fisher_exact() -> None:
    rng = np.random.default_rng(7)
    tables = [
        [[int(v) for v in rng.integers(0, hi, 2)] for _ in range(2)]
        for hi in [3, 8, 40, 400, 3000] * 40
    ]
    tables += [
        [[0, 0], [0, 0]],
        [[0, 5], [0, 7]],
        [[5, 0], [7, 0]],
        [[3, 4], [0, 0]],
        [[1, 0], [0, 1]],
        [[0, 1], [1, 0]],
        [[960, 120], [195, 90]],
        [[90, 195], [120, 960]],
    ]
    for table in tables:
        want = stats.fisher_exact(table, alternative="greater").pvalue
        assert fisher_greater(table) == pytest.approx(want, rel=1e-9, abs=1e-300), table
    # far in the tail, where the terms underflow one by one, the sum keeps its digits
    assert fisher_greater([[9600, 1200], [1950, 900]]) == pytest.approx(
        stats.fisher_exact([[9600, 1200], [1950, 900]], alternative="greater").pvalue, rel=1e-9
    )
    with pytest.raises(ValueError, match=">= 0"):
        fisher_greater([[1, -1], [2, 3]])


def test_tokenize() -> None:
    assert tokenize("Love it!! Doesn't fit, 2 sizes") == ["love", "it", "doesn't", "fit", "sizes"]


def test_bounded_counter_keeps_the_heavy_terms() -> None:
    c = BoundedCounter(capacity=3)
    c.update(["zipper"] * 50 + ["broke"] * 20 + [f"rare{i}" for i in range(10)])
    assert len(c.counts) <= 6
    assert c.counts["zipper"] == 50 and c.counts["broke"] == 20
    assert c.total == 80


def test_distinctive_terms_log_odds_with_informative_prior() -> None:
    target = {"zipper": 30, "dress": 20, "fit": 10}
    reference = {"dress": 200, "fit": 100, "zipper": 5}
    background = Counter(target) + Counter(reference)
    got = distinctive_terms(target, reference, background=background, prior_strength=100.0)
    n, m, a0 = 60.0, 305.0, 100.0
    vocab, bg_total = 3, 365.0

    def z(y: float, r: float, bg: float) -> float:
        a = a0 * (bg + 0.5) / (bg_total + 0.5 * vocab)
        d = math.log((y + a) / (n + a0 - y - a)) - math.log((r + a) / (m + a0 - r - a))
        return d / math.sqrt(1 / (y + a) + 1 / (r + a))

    assert got[0][0] == "zipper"
    assert got[0][1] == pytest.approx(z(30, 5, 35), abs=1e-3)
    assert [w for w, _ in got] == ["zipper"]  # "dress" and "fit" are not over-represented
