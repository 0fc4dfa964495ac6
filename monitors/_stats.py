"""Small statistical helpers shared by the monitors (numpy/scipy only, no state).

The distributions come from ``scipy.special``, the functions ``scipy.stats`` itself calls for
them (``norm.ppf`` is ``ndtri``, ``chi2.sf`` is ``chdtrc``, ``beta.ppf`` is ``betaincinv``;
the tests check equality with ``scipy.stats``): importing ``scipy.stats`` cost a worker about
47 MB of memory and 0.6 s of start-up (one-off, an import alone: it loads ``scipy.optimize``,
``integrate``, ``sparse``, ``spatial`` and more) for a handful of calls."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

__all__ = [
    "EPS",
    "FloatArray",
    "IntArray",
    "TestResult",
    "beta_ppf",
    "bonferroni",
    "chi2_homogeneity",
    "chi2_sf",
    "fisher_greater",
    "js_distance",
    "ks_binned",
    "logit_shift",
    "norm_cdf",
    "norm_ppf",
    "project_to_simplex",
    "proportion_ci",
    "psi",
    "wilson_interval",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Floor applied to shares inside logarithms (PSI): an empty bin counts as half an event.
EPS = 1e-6


@dataclass(frozen=True, slots=True)
class TestResult:
    """A test statistic, its p-value and the degrees of freedom or sample sizes behind it."""

    statistic: float
    p_value: float
    dof: float


def _shares(counts: npt.ArrayLike, smoothing: float) -> FloatArray:
    c: FloatArray = np.asarray(counts, dtype=np.float64) + smoothing
    total = float(c.sum())
    if total <= 0:
        raise ValueError("counts must not all be zero")
    out: FloatArray = c / total
    return out


def psi(reference: npt.ArrayLike, current: npt.ArrayLike, *, smoothing: float = 0.5) -> float:
    """Population stability index, sum((q - p) * ln(q / p)), on binned counts.

    ``smoothing`` pseudo-counts are added to every bin of both histograms (0.5 by default) so
    that an empty bin gives a finite value; pass 0 for the textbook formula on strictly
    positive shares.
    """
    p = _shares(reference, smoothing)
    q = _shares(current, smoothing)
    p = np.maximum(p, EPS)
    q = np.maximum(q, EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(reference: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """Jensen-Shannon distance (base 2, so in [0, 1]) between two histograms (scipy)."""
    p = _shares(reference, 0.0)
    q = _shares(current, 0.0)
    m = (p + q) / 2.0  # scipy.spatial.distance.jensenshannon's steps, in its order
    js = np.sum(special.rel_entr(p, m)) + np.sum(special.rel_entr(q, m))
    return float(np.sqrt(js / np.log(2.0) / 2.0))


def norm_ppf(q: float) -> float:
    """The standard normal quantile (``scipy.stats.norm.ppf``)."""
    return float(special.ndtri(q))


def norm_cdf(x: float) -> float:
    """The standard normal CDF (``scipy.stats.norm.cdf``)."""
    return float(special.ndtr(x))


def chi2_sf(x: float, dof: float) -> float:
    """The chi-square survival function (``scipy.stats.chi2.sf``)."""
    return float(special.chdtrc(dof, x))


def beta_ppf(q: float, a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Quantile ``q`` of Beta(a, b), elementwise (``scipy.stats.beta.ppf``)."""
    return np.asarray(special.betaincinv(a, b, q), dtype=np.float64)


def fisher_greater(table: Sequence[Sequence[int]]) -> float:
    """P-value of Fisher's exact test of a 2x2 table of counts, one-sided: the first row's
    odds are greater (``scipy.stats.fisher_exact(table, alternative="greater").pvalue``).
    The hypergeometric CDF that scipy takes is summed here over its log-probabilities (the
    Beta-function form of ``scipy.stats.hypergeom.logpmf``), which stays exact in the tails
    where the terms underflow one by one."""
    (a, b), (c, d) = table
    if min(a, b, c, d) < 0:
        raise ValueError(f"counts must be >= 0, got {table!r}")
    if 0 in (a + b, c + d, a + c, b + d):  # an empty row or column: scipy's 1.0
        return 1.0
    # P(X <= b), X ~ Hypergeom(total, good = the first row's total, draws = the second
    # column's total): the first row's count in the second column, as scipy states it
    total, good, draws = a + b + c + d, a + b, b + d
    bad = total - good
    k = np.arange(max(0, draws - bad), b + 1, dtype=np.float64)
    logpmf = (
        special.betaln(good + 1, 1)
        + special.betaln(bad + 1, 1)
        + special.betaln(total - draws + 1, draws + 1)
        - special.betaln(k + 1, good - k + 1)
        - special.betaln(draws - k + 1, bad - draws + k + 1)
        - special.betaln(total + 1, 1)
    )
    return float(min(1.0, np.exp(special.logsumexp(logpmf))))


def chi2_homogeneity(
    reference: npt.ArrayLike, current: npt.ArrayLike, *, min_expected: float = 5.0
) -> TestResult:
    """Pearson chi-square test that two samples of a categorical variable share one
    distribution (a 2 x k contingency table: what scipy's ``chi2_contingency`` computes without
    the continuity correction, written out because its argument handling cost milliseconds per
    call on the monitors' hot path).

    Categories whose smaller expected count is below ``min_expected`` are pooled into one cell
    (and that cell dropped if it is still too small), so the chi-square approximation holds at
    small window sizes instead of inflating the false-alarm rate.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.shape != cur.shape or ref.ndim != 1:
        raise ValueError("reference and current must be 1-d counts of the same length")
    n_ref, n_cur = ref.sum(), cur.sum()
    if n_ref <= 0 or n_cur <= 0:
        return TestResult(0.0, 1.0, 0.0)
    total = ref + cur
    expected_small = total * min(n_ref, n_cur) / (n_ref + n_cur)
    keep = expected_small >= min_expected
    table = [ref[keep], cur[keep]]
    pooled_ref, pooled_cur = ref[~keep].sum(), cur[~keep].sum()
    pooled_expected = (pooled_ref + pooled_cur) * min(n_ref, n_cur) / (n_ref + n_cur)
    if pooled_expected >= min_expected:
        table = [np.append(table[0], pooled_ref), np.append(table[1], pooled_cur)]
    arr = np.vstack(table)
    if arr.shape[1] < 2:
        return TestResult(0.0, 1.0, 0.0)
    expected = np.outer(arr.sum(axis=1), arr.sum(axis=0)) / arr.sum()
    statistic = float(np.sum((arr - expected) ** 2 / expected))
    dof = arr.shape[1] - 1
    return TestResult(statistic, float(special.chdtrc(dof, statistic)), float(dof))


def ks_binned(reference: npt.ArrayLike, current: npt.ArrayLike) -> TestResult:
    """Two-sample Kolmogorov-Smirnov test on binned (ordinal) counts.

    The statistic is the largest gap between the two empirical CDFs at the bin edges, which is
    exactly what ``scipy.stats.ks_2samp`` returns on the bin indices; the p-value is scipy's
    asymptotic two-sample one (``kstwobign``), conservative for tied or binned data. ``dof``
    holds the effective sample size n*m/(n+m).
    """
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    n, m = ref.sum(), cur.sum()
    if n <= 0 or m <= 0:
        return TestResult(0.0, 1.0, 0.0)
    d = float(np.max(np.abs(np.cumsum(ref) / n - np.cumsum(cur) / m)))
    en = n * m / (n + m)
    p = float(special.kolmogorov(math.sqrt(en) * d))  # kstwobign's survival function
    return TestResult(d, min(1.0, p), en)


def wilson_interval(share: float, n: float, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a proportion ``share`` observed on ``n`` trials, ``n`` possibly
    an effective, non-integer count (Kish); (0, 1) for ``n`` <= 0. For integer ``n`` it is
    scipy's ``binomtest(k, n).proportion_ci(method="wilson")``."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share!r}")
    if n <= 0:
        return (0.0, 1.0)
    z = norm_ppf(0.5 + confidence / 2)
    z2 = z * z
    centre = (share + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(share * (1 - share) / n + z2 / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def proportion_ci(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of ``k`` successes in ``n`` trials."""
    if n > 0 and not 0 <= k <= n:
        raise ValueError(f"k must be in [0, n], got k={k}, n={n}")
    return wilson_interval(k / n if n > 0 else 0.0, n, confidence)


def project_to_simplex(v: npt.ArrayLike) -> FloatArray:
    """Euclidean projection onto the probability simplex (Duchi et al. 2008)."""
    x = np.asarray(v, dtype=np.float64)
    u = np.sort(x)[::-1]
    css = np.cumsum(u) - 1.0
    idx = np.arange(1, x.size + 1)
    rho = int(np.nonzero(u - css / idx > 0)[0][-1])
    theta = css[rho] / (rho + 1)
    out: FloatArray = np.maximum(x - theta, 0.0)
    return out


def logit_shift(p: float, reference_now: float, reference_then: float) -> float:
    """``p`` moved by the log-odds change of a reference share (then -> now)."""

    def lg(z: float) -> float:
        z = min(max(z, 1e-6), 1 - 1e-6)
        return math.log(z / (1 - z))

    x = lg(p) + lg(reference_now) - lg(reference_then)
    return 1.0 / (1.0 + math.exp(-x))


def bonferroni(alpha: float, tests: int | Sequence[object]) -> float:
    """Per-test level that keeps the family-wise error rate at ``alpha``."""
    m = tests if isinstance(tests, int) else len(tests)
    return alpha / max(1, m)
