"""Sequential detection of a rise in the negative share.

:class:`BernoulliCusum` is Page's CUSUM on the log-likelihood ratio of a Bernoulli rate ``p1``
against the reference ``p0``, where ``p1`` has ``odds_ratio`` times the odds of ``p0``::

    l(x) = x ln(p1 / p0) + (1 - x) ln((1 - p1) / (1 - p0))
    S_n  = max(0, S_{n-1} + l(x_n))          alarm when S_n > h (and the run has >= min_count)

False-alarm budget: for every start point ``k`` the likelihood ratio of the events ``k..n`` is
a martingale under ``p0``, so by Ville's inequality it exceeds ``e^h`` with probability at most
``e^-h``; ``S_n > h`` means one of them did, so over ``N`` events
``P(false alarm) <= N e^-h``. :func:`cusum_threshold` therefore sets ``h = ln(N / alpha)``,
which holds the probability of any false alarm within a horizon of ``N`` events at ``alpha``
(conservative: the union bound ignores the overlap of start points).

:class:`BernoulliMixtureSR` adapts to the size of the rise. For each alternative ``p1_j`` of a
grid (``odds_ratios`` times the odds of ``p0``, weights ``w_j`` summing to 1) it keeps the
Shiryaev-Roberts statistic, the *sum* over start points of the likelihood ratios::

    R^j_n = L_j(x_n) (1 + R^j_{n-1}),  R^j_0 = 0     alarm when log sum_j w_j R^j_n > h

Under ``p0`` (or any lower rate) every ratio has mean at most 1, so ``E[R_n | past] <= 1 +
R_{n-1}`` and, for ``n <= N``, ``Y_n = sum_j w_j R^j_n + N - n`` is a nonnegative
supermartingale starting at ``N``. Ville's inequality gives ``P(max_{n <= N} Y_n >= e^h) <=
N e^-h``, and the statistic is at most ``Y_n``: the same threshold ``h = ln(N / alpha)`` holds
the same budget (under ``p0`` the mean time to a false alarm is also at least ``e^h``, by
optional stopping on ``R_n - n``). The sum is at least the CUSUM's maximum and the mixture at
least ``w_j`` times each alternative's statistic, so the detector spends the budget the CUSUM's
union bound leaves unused, and a large rise is caught at the pace of a large alternative while
a small one still has an alternative near it. The recursion is vectorised in closed form,
``R_n = e^{D_n} (R_0 + sum_{i <= n} e^{-D_{i-1}})`` with ``D`` the cumulative log-ratio (one
``exp`` and one ``cumsum`` per alternative and event, in steps whose ratios span at most
``e^600``). Its reported run (change point, count, negatives) is the CUSUM run of the
alternative that carries most of the mixture: the most likely start of the rise under it.

Hysteresis: once firing, the detector runs the mirror CUSUM ``R_n = max(0, R_{n-1} - l(x_n))``
(evidence for ``p0`` over the ``odds_ratio`` alternative ``p1``) and resolves when ``R_n``
exceeds ``resolve_threshold``; it then restarts from zero. An alarm therefore fires once per
episode.

Updates are vectorised: a batch of ``m`` observations costs a few numpy passes
(``S_n = D_n - min(0, min_k D_k)`` with ``D`` the cumulative sum), not ``m`` Python steps.

:class:`SentimentShiftMonitor` runs one :class:`BernoulliMixtureSR` for the whole stream
(``"all"``, against the baseline share) and one per product category. Each reference is an
upper confidence bound (``reference_quantile``) of the baseline share -- for a category, of its
share shrunk towards the overall share (empirical Bayes, beta-binomial method of moments) -- so
that a baseline that happened to run low does not become a false alarm later. A category's
reference is further raised by the log-odds change the *other* categories have shown over the
last ``reference_events`` events: a category alarm means that category moved beyond what the
rest of the stream did, so a stream-wide shift raises ``"all"`` (and PriorShift) rather than
one alarm per category. Conversely ``"all"`` leaves out the reviews of categories that are in
an episode of their own, so one large category turning negative raises that category's alarm,
not a second stream-wide one.

Evidence of a firing alert: the ids of the run's last negative reviews, the terms that
distinguish the run's negatives (log-odds, :mod:`monitors.terms`) and, when the reviews come
with the model's per-term contributions to the negative score, the terms whose mean
contribution grew most against the group's own baseline negatives
(:func:`monitors.contributions.contribution_growth`) and the texts of the ``example_texts``
recent negatives those terms weigh most in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from monitors._stats import FloatArray, IntArray, beta_ppf, logit_shift
from monitors.contributions import (
    BatchContributions,
    ContributionSums,
    Explainer,
    TermGrowth,
    contribution_growth,
    top_examples,
)
from monitors.terms import BoundedCounter, distinctive_terms

__all__ = [
    "MIXTURE_ODDS_RATIOS",
    "BernoulliCusum",
    "BernoulliMixtureSR",
    "SentimentShiftMonitor",
    "ShiftEvent",
    "Transition",
    "cusum_threshold",
    "shrink_shares",
    "upper_shares",
]


def cusum_threshold(alpha: float, horizon: int) -> float:
    """``ln(horizon / alpha)``: keeps P(any false alarm within ``horizon`` events) <= alpha,
    for :class:`BernoulliCusum` and :class:`BernoulliMixtureSR` alike (see module doc)."""
    if not 0 < alpha < 1 or horizon < 1:
        raise ValueError("need 0 < alpha < 1 and horizon >= 1")
    return math.log(horizon / alpha)


@dataclass(frozen=True, slots=True)
class Transition:
    """A detector state change at position ``index`` of an ``update_many`` input.

    ``count``/``negatives``: events and positives in the evidence span (the CUSUM run for
    ``firing``, the events since firing for ``resolved``); ``start``: stamp of its first event.
    """

    index: int
    status: Literal["firing", "resolved"]
    statistic: float
    count: int
    negatives: int
    start: float | None


class BernoulliCusum:
    """One-sided CUSUM for a rise of a Bernoulli rate, with hysteresis (see module doc).

    River-style: ``update(x)`` returns ``self``; ``drift_detected`` is true right after the
    update that raised the alarm; ``firing`` stays true until the alarm resolves.
    """

    def __init__(
        self,
        p0: float = 0.2,
        *,
        odds_ratio: float = 2.0,
        threshold: float = 10.0,
        resolve_threshold: float | None = None,
        min_count: int = 1,
    ) -> None:
        if not 0 < p0 < 1:
            raise ValueError(f"p0 must be in (0, 1), got {p0}")
        if odds_ratio <= 1:
            raise ValueError(f"odds_ratio must be > 1, got {odds_ratio}")
        if threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        if resolve_threshold is not None and resolve_threshold <= 0:
            raise ValueError("resolve_threshold must be > 0")
        if min_count < 1:
            raise ValueError("min_count must be >= 1")
        self.odds_ratio = float(odds_ratio)
        self.threshold = float(threshold)
        self.resolve_threshold = float(
            threshold / 2 if resolve_threshold is None else resolve_threshold
        )
        self.min_count = int(min_count)
        self._p0_initial = float(p0)
        self.reset()

    # -- parameters ------------------------------------------------------------------------

    @property
    def p0(self) -> float:
        return self._p0

    @p0.setter
    def p0(self, value: float) -> None:
        p0 = min(max(float(value), 1e-6), 1 - 1e-6)
        odds = p0 / (1 - p0) * self.odds_ratio
        p1 = odds / (1 + odds)
        self._p0 = p0
        self.p1 = p1
        self._l1 = math.log(p1 / p0)
        self._l0 = math.log((1 - p1) / (1 - p0))
        self._set_alternatives()

    def _set_alternatives(self) -> None:
        """Hook for subclasses with alternatives of their own (run after ``p0`` changes)."""

    # -- lifecycle -------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the state after construction."""
        self.p0 = self._p0_initial
        self.statistic = 0.0
        self.resolve_statistic = 0.0
        self.firing = False
        self.drift_detected = False
        self.run_count = 0
        self.run_negatives = 0
        self.run_start: float | None = None
        self.since_count = 0
        self.since_negatives = 0
        self.fired_start: float | None = None

    # -- updates ---------------------------------------------------------------------------

    def update(self, x: bool | int, stamp: float | None = None) -> BernoulliCusum:
        stamps = None if stamp is None else np.array([stamp], dtype=np.float64)
        self.update_many(np.array([int(bool(x))]), stamps)
        return self

    def update_many(
        self, xs: npt.ArrayLike, stamps: npt.ArrayLike | None = None
    ) -> list[Transition]:
        """Feed observations (truthy = negative review) in order; ``stamps`` (any float, e.g.
        epoch seconds) date them. Returns the transitions, in order."""
        x = (np.asarray(xs) != 0).astype(np.int64).ravel()
        ts: FloatArray | None = None if stamps is None else np.asarray(stamps, dtype=np.float64)
        llr = np.where(x > 0, self._l1, self._l0)
        out: list[Transition] = []
        self.drift_detected = False
        pos, n = 0, x.shape[0]
        while pos < n:
            if self.firing:
                t = self._resolve_segment(llr[pos:], x[pos:], ts, pos)
            else:
                t = self._alarm_segment(llr[pos:], x[pos:], ts, pos)
            if t is None:
                break
            out.append(t)
            if t.status == "firing":
                self.drift_detected = True
            pos = t.index + 1
        return out

    def _stamp(self, ts: FloatArray | None, i: int) -> float | None:
        return None if ts is None else float(ts[i])

    def _alarm_segment(
        self, llr: FloatArray, x: IntArray, ts: FloatArray | None, offset: int
    ) -> Transition | None:
        m = llr.shape[0]
        idx = np.arange(m)
        d = self.statistic + np.cumsum(llr)
        s = d - np.minimum.accumulate(np.minimum(d, 0.0))
        last_zero = np.maximum.accumulate(np.where(s <= 0.0, idx, -1))
        cneg = np.cumsum(x)
        has = last_zero >= 0
        run_n = np.where(has, idx - last_zero, self.run_count + idx + 1)
        run_neg = np.where(has, cneg - cneg[np.maximum(last_zero, 0)], self.run_negatives + cneg)
        hits = np.flatnonzero((s > self.threshold) & (run_n >= self.min_count))
        end = int(hits[0]) if hits.size else m - 1
        lz = int(last_zero[end])
        if lz >= 0:
            self.run_start = self._stamp(ts, offset + lz + 1) if lz < end else None
        elif self.run_count == 0:
            self.run_start = self._stamp(ts, offset)
        self.statistic = float(s[end])
        self.run_count = int(run_n[end])
        self.run_negatives = int(run_neg[end])
        if not hits.size:
            return None
        return self._fire(offset + end)

    def _fire(self, index: int) -> Transition:
        """Start an alarm at event ``index`` of the batch (the run so far is its evidence)."""
        self.firing = True
        self.resolve_statistic = 0.0
        self.since_count = 0
        self.since_negatives = 0
        self.fired_start = self.run_start
        return Transition(
            index, "firing", self.statistic, self.run_count, self.run_negatives, self.run_start
        )

    def _resolve_segment(
        self, llr: FloatArray, x: IntArray, ts: FloatArray | None, offset: int
    ) -> Transition | None:
        m = llr.shape[0]
        idx = np.arange(m)
        d = self.resolve_statistic - np.cumsum(llr)
        r = d - np.minimum.accumulate(np.minimum(d, 0.0))
        since = self.since_count + idx + 1
        sneg = self.since_negatives + np.cumsum(x)
        hits = np.flatnonzero((r > self.resolve_threshold) & (since >= self.min_count))
        end = int(hits[0]) if hits.size else m - 1
        self.resolve_statistic = float(r[end])
        self.since_count = int(since[end])
        self.since_negatives = int(sneg[end])
        if not hits.size:
            return None
        t = Transition(
            offset + end,
            "resolved",
            self.resolve_statistic,
            self.since_count,
            self.since_negatives,
            self.fired_start,
        )
        self.firing = False
        self.statistic = 0.0
        self.resolve_statistic = 0.0
        self.run_count = 0
        self.run_negatives = 0
        self.run_start = None
        self.since_count = 0
        self.since_negatives = 0
        self.fired_start = None
        return t

    # -- state -----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "p0": self._p0,
            "statistic": self.statistic,
            "resolve_statistic": self.resolve_statistic,
            "firing": self.firing,
            "run_count": self.run_count,
            "run_negatives": self.run_negatives,
            "run_start": self.run_start,
            "since_count": self.since_count,
            "since_negatives": self.since_negatives,
            "fired_start": self.fired_start,
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.p0 = float(state["p0"])
        self.statistic = float(state["statistic"])
        self.resolve_statistic = float(state["resolve_statistic"])
        self.firing = bool(state["firing"])
        self.drift_detected = False
        self.run_count = int(state["run_count"])
        self.run_negatives = int(state["run_negatives"])
        self.run_start = state["run_start"]
        self.since_count = int(state["since_count"])
        self.since_negatives = int(state["since_negatives"])
        self.fired_start = state["fired_start"]


#: the largest spread of log-likelihood ratios taken in one vectorised step (e^600 < 1.8e308)
_MAX_SPAN = 600.0
_TINY = 1e-300
#: the most events taken in one vectorised step of the mixture: a step builds a few arrays of
#: (alternatives x events) and may keep only its first ~1,000 events (``_MAX_SPAN``), so a
#: step over all of a large group (a worker's feed group holds up to 100,000 events) cost
#: time quadratic in the group and tens of MB
_MAX_STEP = 2048

#: Odds ratios of the mixture's alternatives: five steps of 6^(1/4) = 1.57 from 1.5 to 9 (a
#: rise from 20 % negative to 27 %, 37 %, 48 %, 59 % or 69 %); default weights are proportional
#: to 1 / ln(odds ratio), so the small rises, which take longest to tell from noise, get more
#: of the budget.
MIXTURE_ODDS_RATIOS: tuple[float, ...] = tuple(1.5 * 6 ** (k / 4) for k in range(5))


class BernoulliMixtureSR(BernoulliCusum):
    """Mixture Shiryaev-Roberts detector for a rise of a Bernoulli rate (see module doc).

    Alarms when ``log sum_j w_j R^j_n`` exceeds ``threshold`` (and the run behind it has
    ``min_count`` events), where ``R^j`` is the Shiryaev-Roberts statistic of the alternative
    with ``odds_ratios[j]`` times the odds of ``p0``; ``statistic`` is that logarithm (floored
    at 0). Resolution is the parent's mirror CUSUM at ``odds_ratio``. ``run_count``,
    ``run_negatives`` and ``run_start`` describe the CUSUM run of the alternative that carries
    most of the mixture: its most likely change point. Per alternative: ``comp_log_r``
    (``log R^j``), ``comp_cusum`` and the ``comp_run_*`` of its CUSUM.
    """

    comp_log_r: FloatArray
    comp_cusum: FloatArray
    comp_run_count: IntArray
    comp_run_negatives: IntArray
    comp_run_start: FloatArray

    def __init__(
        self,
        p0: float = 0.2,
        *,
        odds_ratios: Sequence[float] = MIXTURE_ODDS_RATIOS,
        weights: Sequence[float] | None = None,
        odds_ratio: float = 2.0,
        threshold: float = 10.0,
        resolve_threshold: float | None = None,
        min_count: int = 1,
    ) -> None:
        ors = np.asarray(odds_ratios, dtype=np.float64)
        if ors.ndim != 1 or ors.size == 0 or bool(np.any(ors <= 1)):
            raise ValueError("odds_ratios must be a non-empty sequence of values > 1")
        w = 1.0 / np.log(ors) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != ors.shape or bool(np.any(w <= 0)):
            raise ValueError("weights must be positive, one per odds ratio")
        self.odds_ratios: FloatArray = ors
        self.weights: FloatArray = w / w.sum()
        self._l1s: FloatArray = np.zeros(ors.size)
        self._l0s: FloatArray = np.zeros(ors.size)
        self._max_step = 0.0
        super().__init__(
            p0,
            odds_ratio=odds_ratio,
            threshold=threshold,
            resolve_threshold=resolve_threshold,
            min_count=min_count,
        )

    def _set_alternatives(self) -> None:
        odds = self._p0 / (1 - self._p0) * self.odds_ratios
        p1 = odds / (1 + odds)
        self._l1s = np.log(p1 / self._p0)
        self._l0s = np.log((1 - p1) / (1 - self._p0))
        self._max_step = float(max(np.abs(self._l1s).max(), np.abs(self._l0s).max()))

    # -- lifecycle -------------------------------------------------------------------------

    def reset(self) -> None:
        super().reset()
        self.reset_components()

    # -- updates ---------------------------------------------------------------------------

    def _alarm_segment(
        self, llr: FloatArray, x: IntArray, ts: FloatArray | None, offset: int
    ) -> Transition | None:
        del llr  # the parent's single alternative (used for resolution only)
        m, lo = x.shape[0], 0
        while lo < m:
            cneg = np.cumsum(x[lo : lo + _MAX_STEP])
            # d[j, i]: log-LR of alternative j over the events lo..lo+i
            d = np.multiply.outer(self._l0s, np.arange(1.0, cneg.shape[0] + 1.0))
            d += np.multiply.outer(self._l1s - self._l0s, cneg)
            lo_d = d.min(axis=1)
            # e^{+-d} must stay far inside the float range: take fewer events if it would not
            if cneg.shape[0] * self._max_step > _MAX_SPAN and (
                float((np.maximum(d.max(axis=1), 0.0) - np.minimum(lo_d, 0.0)).max()) > _MAX_SPAN
            ):
                run_span = np.maximum.accumulate(np.maximum(d, 0.0), axis=1)
                run_span -= np.minimum.accumulate(np.minimum(d, 0.0), axis=1)
                n = max(1, int(np.argmax(run_span.max(axis=0) > _MAX_SPAN)))
                d, cneg = d[:, :n], cneg[:n]
                lo_d = d.min(axis=1)
            t = self._alarm_step(cneg, d, lo_d, ts, offset + lo)
            if t is not None:
                return t
            lo += cneg.shape[0]
        return None

    def _alarm_step(
        self,
        cneg: IntArray,
        d: FloatArray,
        d_min: FloatArray,
        ts: FloatArray | None,
        offset: int,
    ) -> Transition | None:
        """Events with cumulative negatives ``cneg`` and log-LRs ``d`` (row minima
        ``d_min``) that span at most ``_MAX_SPAN``."""
        m = cneg.shape[0]
        # R_i = e^{D_i} (R_0 + sum_{i' <= i} e^{-D_{i'-1}}) with D_{-1} = 0, computed as
        # Q = R e^{-s}, s >= log R_0, so that nothing overflows
        s = max(0.0, float(self.comp_log_r.max()))
        f = np.exp(d)
        g = 1.0 / f
        excl = np.cumsum(g, axis=1)
        excl -= g
        excl += 1.0
        excl *= math.exp(-s)
        excl += np.exp(self.comp_log_r - s)[:, None]
        q = excl * f
        mix = self.weights @ q
        end, fired = m - 1, False
        if self.threshold - s < 700:
            for i in np.flatnonzero(mix > math.exp(self.threshold - s)).tolist():
                j = int(np.argmax(q[:, i] * self.weights))
                cus = self.comp_cusum[j] + d[j, : i + 1]
                if self._run_length(cus, int(self.comp_run_count[j])) >= self.min_count:
                    end, fired = i, True
                    break
        if fired:
            d = d[:, : end + 1]
            d_min = d.min(axis=1)
        cus_min = self.comp_cusum + d_min
        # the last reflection at zero (-1: none in these events), as in the parent's run
        lz = np.where(cus_min <= 0.0, end - np.argmin(d[:, ::-1], axis=1), -1)
        has = lz >= 0
        self.comp_run_negatives = np.where(
            has, cneg[end] - cneg[np.maximum(lz, 0)], self.comp_run_negatives + cneg[end]
        )
        if ts is None:
            self.comp_run_start = np.full(lz.shape[0], np.nan)
        else:
            after = ts[offset + np.minimum(lz + 1, end)]
            self.comp_run_start = np.where(
                has,
                np.where(lz < end, after, np.nan),
                np.where(self.comp_run_count == 0, ts[offset], self.comp_run_start),
            )
        self.comp_run_count = np.where(has, end - lz, self.comp_run_count + end + 1)
        self.comp_cusum = self.comp_cusum + d[:, end] - np.minimum(0.0, cus_min)
        # R_i >= L(x_i), so q >= e^-s L(x_i): the floor only matters when s > 690
        self.comp_log_r = s + np.log(np.maximum(q[:, end], _TINY))
        self.statistic = max(0.0, s + math.log(max(float(mix[end]), _TINY)))
        top = int(np.argmax(q[:, end] * self.weights))
        self.run_count = int(self.comp_run_count[top])
        self.run_negatives = int(self.comp_run_negatives[top])
        start = float(self.comp_run_start[top])
        self.run_start = None if math.isnan(start) else start
        if not fired:
            return None
        return self._fire(offset + end)

    @staticmethod
    def _run_length(cus: FloatArray, before: int) -> int:
        """Length of the CUSUM run at the end of ``cus`` (statistic + cumulative log-LR),
        ``before``: the run length before these events."""
        e = int(cus.shape[0]) - 1
        if cus.min() <= 0.0:
            return int(np.argmin(cus[::-1]))  # events after the last reflection at zero
        return before + e + 1

    def _resolve_segment(
        self, llr: FloatArray, x: IntArray, ts: FloatArray | None, offset: int
    ) -> Transition | None:
        t = super()._resolve_segment(llr, x, ts, offset)
        if t is not None:
            self.reset_components()
        return t

    def reset_components(self) -> None:
        """Forget the alarm side's evidence (after a resolution: a new episode starts)."""
        k = self.odds_ratios.size
        self.comp_log_r = np.full(k, -np.inf)
        self.comp_cusum = np.zeros(k)
        self.comp_run_count = np.zeros(k, dtype=np.int64)
        self.comp_run_negatives = np.zeros(k, dtype=np.int64)
        self.comp_run_start = np.full(k, np.nan)

    # -- state -----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """JSON-able: ``log R^j`` of a fresh detector (minus infinity) is stored as None."""
        return {
            **super().state(),
            "kind": "mixture-sr",
            "odds_ratios": self.odds_ratios.tolist(),
            "comp_log_r": [None if math.isinf(v) else v for v in self.comp_log_r.tolist()],
            "comp_cusum": self.comp_cusum.tolist(),
            "comp_run_count": self.comp_run_count.tolist(),
            "comp_run_negatives": self.comp_run_negatives.tolist(),
            "comp_run_start": [None if math.isnan(v) else v for v in self.comp_run_start.tolist()],
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Load a state of this detector, or migrate a :class:`BernoulliCusum` state (or one
        saved with another grid): each alternative starts from the evidence of the saved run,
        ``n_neg ln(p1/p0) + (n - n_neg) ln((1-p1)/(1-p0))`` (the run's counts are sufficient),
        as its CUSUM and as ``log R^j`` (a Shiryaev-Roberts restart at the run's start)."""
        super().load_state(state)
        same = state.get("kind") == "mixture-sr" and np.array_equal(
            np.asarray(state.get("odds_ratios"), dtype=np.float64), self.odds_ratios
        )
        if same:
            self.comp_log_r = np.array(
                [-np.inf if v is None else float(v) for v in state["comp_log_r"]]
            )
            self.comp_cusum = np.asarray(state["comp_cusum"], dtype=np.float64)
            self.comp_run_count = np.asarray(state["comp_run_count"], dtype=np.int64)
            self.comp_run_negatives = np.asarray(state["comp_run_negatives"], dtype=np.int64)
            self.comp_run_start = np.array(
                [np.nan if v is None else float(v) for v in state["comp_run_start"]]
            )
            return
        n, neg = self.run_count, self.run_negatives
        evidence = neg * self._l1s + (n - neg) * self._l0s
        live = (evidence > 0) & (n > 0)
        self.reset_components()
        self.comp_cusum = np.where(live, evidence, 0.0)
        self.comp_log_r = np.where(n > 0, evidence, -np.inf)
        self.comp_run_count = np.where(live, n, 0)
        self.comp_run_negatives = np.where(live, neg, 0)
        start = np.nan if self.run_start is None else float(self.run_start)
        self.comp_run_start = np.where(live, start, np.nan)


def _prior_strength(k: FloatArray, n: FloatArray) -> tuple[float, float]:
    """Pooled share and the beta-prior strength of the groups (inf: no between-group
    variance beyond sampling), by the beta-binomial method of moments."""
    total = float(n.sum())
    pooled = float(k.sum()) / total
    if pooled <= 0 or pooled >= 1:
        return pooled, math.inf
    seen = n > 0
    raw = k[seen] / n[seen]
    w = n[seen] / total
    observed_var = float(np.sum(w * (raw - pooled) ** 2))
    sampling_var = float(np.sum(w * pooled * (1 - pooled) / n[seen]))
    between = observed_var - sampling_var
    if between <= 0:
        return pooled, math.inf
    return pooled, max(pooled * (1 - pooled) / between - 1.0, 0.0)


def shrink_shares(positives: npt.ArrayLike, totals: npt.ArrayLike) -> FloatArray:
    """Empirical-Bayes shares: each group's ``positives / totals`` shrunk towards the pooled
    share by a beta prior whose strength comes from the between-group variance (method of
    moments; no detectable variance -> every group gets the pooled share)."""
    k = np.asarray(positives, dtype=np.float64)
    n = np.asarray(totals, dtype=np.float64)
    if n.sum() <= 0:
        return np.full(k.shape, 0.5)
    pooled, strength = _prior_strength(k, n)
    if math.isinf(strength):
        return np.full(k.shape, pooled)
    out: FloatArray = (k + strength * pooled) / (n + strength)
    return out


def upper_shares(
    positives: npt.ArrayLike, totals: npt.ArrayLike, quantile: float
) -> tuple[float, FloatArray]:
    """Upper ``quantile`` bounds of the pooled share and of each group's share (the beta
    posteriors behind :func:`shrink_shares`, Jeffreys prior for the pooled share): detectors
    compare against these so that a baseline that happened to run low does not turn into a
    false alarm later."""
    k = np.asarray(positives, dtype=np.float64)
    n = np.asarray(totals, dtype=np.float64)
    if not 0 < quantile < 1:
        raise ValueError("quantile must be in (0, 1)")
    if n.sum() <= 0:
        raise ValueError("no events")
    overall = float(beta_ppf(quantile, k.sum() + 0.5, n.sum() - k.sum() + 0.5))
    pooled, strength = _prior_strength(k, n)
    if math.isinf(strength):
        return overall, np.full(k.shape, overall)
    a = k + strength * pooled + 0.5
    b = n - k + strength * (1 - pooled) + 0.5
    groups = beta_ppf(quantile, a, b)
    return overall, groups


def _kept(sel: IntArray, x: IntArray, span: tuple[int, int, int]) -> list[int]:
    """The batch positions of the negatives a run keeps from ``sel[start..end]``: those in its
    last ``run_count`` events (``span`` is ``(start, end, run_count)``)."""
    start, end, run_count = span
    start = max(start, end + 1 - run_count)
    out: list[int] = sel[start : end + 1][x[start : end + 1] > 0].tolist()
    return out


@dataclass(frozen=True, slots=True)
class _Advance:
    """One detector's part of a batch: its events, transitions and the evidence span after
    the last transition (None: none to keep)."""

    name: str
    sel: IntArray
    x: IntArray
    transitions: list[Transition]
    tail: tuple[int, int, int] | None

    def spans(self) -> list[tuple[int, int, int]]:
        """Every ``(start, end, run_count)`` whose negatives the evidence keeps."""
        out, seg_start = [], 0
        for t in self.transitions:
            if t.status == "firing":
                out.append((seg_start, t.index, t.count))
            seg_start = t.index + 1
        return out if self.tail is None else [*out, self.tail]


@dataclass(frozen=True, slots=True)
class ShiftEvent:
    """A SentimentShift transition with its evidence."""

    group: str
    transition: Transition
    baseline_share: float
    reference_share: float
    window_end: float | None
    example_ids: tuple[str, ...]
    terms: tuple[tuple[str, float], ...]
    #: terms whose contribution to the negative score grew most against the group's baseline
    contribution_terms: tuple[TermGrowth, ...] = ()
    example_texts: tuple[str, ...] = ()


@dataclass(slots=True)
class _Evidence:
    terms: BoundedCounter
    ids: list[str] = field(default_factory=list)
    contributions: ContributionSums = field(default_factory=ContributionSums)
    #: text and contributions of each review in ``ids`` ("" and {} where unknown)
    texts: list[str] = field(default_factory=list)
    rows: list[Mapping[str, float]] = field(default_factory=list)

    def clear(self) -> None:
        self.terms.clear()
        self.ids.clear()
        self.contributions.clear()
        self.texts.clear()
        self.rows.clear()

    def trim(self, keep: int) -> None:
        drop = max(0, len(self.ids) - keep)
        for xs in (self.ids, self.texts, self.rows):
            del xs[:drop]

    def state(self) -> dict[str, Any]:
        return {
            "terms": self.terms.state(),
            "ids": list(self.ids),
            "contributions": self.contributions.state(),
            "texts": list(self.texts),
            "rows": [dict(r) for r in self.rows],
        }

    @classmethod
    def from_state(cls, e: Mapping[str, Any]) -> _Evidence:
        ids = [str(i) for i in e["ids"]]
        texts = [str(t) for t in e.get("texts", [])]
        rows: list[Mapping[str, float]] = [
            {str(k): float(v) for k, v in r.items()} for r in e.get("rows", [])
        ]
        if len(texts) != len(ids) or len(rows) != len(ids):
            texts, rows = [""] * len(ids), [{} for _ in ids]
        sums = e.get("contributions")
        return cls(
            BoundedCounter.from_state(e["terms"]),
            ids,
            ContributionSums() if sums is None else ContributionSums.from_state(sums),
            texts,
            rows,
        )


class SentimentShiftMonitor:
    """One :class:`BernoulliMixtureSR` for ``"all"`` and one per group (see module doc).

    ``odds_ratio`` is the alternative the resolution tests "back to normal" against;
    ``odds_ratios`` and ``weights`` the mixture's grid (None: :data:`MIXTURE_ODDS_RATIOS`,
    equal weights)."""

    ALL = "all"

    def __init__(
        self,
        groups: Sequence[str],
        *,
        baseline_negatives: Sequence[int],
        baseline_totals: Sequence[int],
        odds_ratio: float,
        threshold: float,
        resolve_threshold: float,
        min_count: int,
        reference_events: int = 1000,
        reference_prior: float = 50.0,
        reference_quantile: float = 0.9,
        odds_ratios: Sequence[float] = MIXTURE_ODDS_RATIOS,
        weights: Sequence[float] | None = None,
        examples: int = 5,
        term_capacity: int = 300,
        baseline_terms: Mapping[str, int] | None = None,
        baseline_negative_terms: Mapping[str, int] | None = None,
        baseline_contributions: Mapping[str, ContributionSums] | None = None,
        example_texts: int = 3,
        top_terms: int = 10,
    ) -> None:
        if len(baseline_negatives) != len(groups) or len(baseline_totals) != len(groups):
            raise ValueError("one baseline count per group")
        if reference_events < 1:
            raise ValueError("reference_events must be >= 1")
        self.groups = tuple(groups)
        neg = np.asarray(baseline_negatives, dtype=np.float64)
        tot = np.asarray(baseline_totals, dtype=np.float64)
        if tot.sum() <= 0:
            raise ValueError("the baseline holds no events")
        self.overall_share = float(np.clip(neg.sum() / tot.sum(), 1e-4, 1 - 1e-4))
        self.group_shares = np.clip(shrink_shares(neg, tot), 1e-4, 1 - 1e-4)
        upper, group_upper = upper_shares(neg, tot, reference_quantile)
        self.overall_reference = float(np.clip(upper, 1e-4, 1 - 1e-4))
        self.group_references = np.clip(group_upper, 1e-4, 1 - 1e-4)
        rest_n = tot.sum() - tot
        rest_neg = neg.sum() - neg
        self.rest_shares = np.clip(
            np.divide(
                rest_neg, rest_n, out=np.full(tot.shape, self.overall_share), where=rest_n > 0
            ),
            1e-4,
            1 - 1e-4,
        )
        self._examples = examples
        self._reference_events = reference_events
        self._reference_prior = reference_prior
        self._baseline_terms = dict(baseline_terms or {})
        self._baseline_negative_terms = dict(baseline_negative_terms or {})
        self._baseline_contributions = dict(baseline_contributions or {})
        self._example_texts = example_texts
        self._top_terms = top_terms
        kwargs: dict[str, Any] = {
            "odds_ratios": odds_ratios,
            "weights": weights,
            "odds_ratio": odds_ratio,
            "threshold": threshold,
            "resolve_threshold": resolve_threshold,
            "min_count": min_count,
        }
        self.detectors: dict[str, BernoulliMixtureSR] = {
            self.ALL: BernoulliMixtureSR(self.overall_reference, **kwargs)
        }
        for g, share in zip(self.groups, self.group_references.tolist(), strict=True):
            self.detectors[g] = BernoulliMixtureSR(share, **kwargs)
        self._term_capacity = term_capacity
        self.reset()

    def reset(self) -> None:
        for d in self.detectors.values():
            d.reset()
        self._ring_group = np.full(self._reference_events, -1, dtype=np.int64)
        self._ring_neg = np.zeros(self._reference_events, dtype=np.int64)
        self._ring_pos = 0
        self._evidence = {k: _Evidence(BoundedCounter(self._term_capacity)) for k in self.detectors}

    # -- reference -------------------------------------------------------------------------

    def reference_shares(self) -> FloatArray:
        """Current per-group reference p0: the upper bound of the group's baseline share,
        raised by the log-odds rise of the rest of the stream."""
        g = self._ring_group
        valid = g >= 0
        n_g = np.bincount(g[valid], minlength=len(self.groups)).astype(np.float64)
        neg_g = np.bincount(g[valid], weights=self._ring_neg[valid], minlength=len(self.groups))
        rest_n = n_g.sum() - n_g
        rest_neg = neg_g.sum() - neg_g
        a = self._reference_prior
        rest_now = (rest_neg + a * self.rest_shares) / (rest_n + a)
        out = np.array(
            [
                max(b, logit_shift(b, now, then))
                for b, now, then in zip(
                    self.group_references.tolist(),
                    rest_now.tolist(),
                    self.rest_shares.tolist(),
                    strict=True,
                )
            ]
        )
        return out

    def _push_ring(self, group: IntArray, neg: IntArray) -> None:
        k = self._reference_events
        if group.shape[0] >= k:
            self._ring_group[:] = group[-k:]
            self._ring_neg[:] = neg[-k:]
            self._ring_pos = 0
            return
        idx = (self._ring_pos + np.arange(group.shape[0])) % k
        self._ring_group[idx] = group
        self._ring_neg[idx] = neg
        self._ring_pos = int((self._ring_pos + group.shape[0]) % k)

    # -- updates ---------------------------------------------------------------------------

    def update(
        self,
        group: IntArray,
        negative: npt.NDArray[np.bool_],
        stamps: FloatArray,
        review_ids: Sequence[str],
        tokens: Sequence[Sequence[str]],
        texts: Sequence[str] | None = None,
        contributions: Sequence[Mapping[str, float]] | None = None,
        explainer: Explainer | None = None,
    ) -> list[ShiftEvent]:
        """Feed one batch (arrays in stream order); returns the transitions it caused.
        ``texts`` and each review's contributions to the negative score (given, or computed
        by ``explainer`` from ``texts``; see :mod:`monitors.contributions`) are optional
        evidence, used only for the negatives a detector's run keeps."""
        events: list[ShiftEvent] = []
        extra = BatchContributions(len(review_ids), texts, contributions, explainer)
        refs = self.reference_shares()
        neg = negative.astype(np.int64)
        # "all" watches the categories that are not already in an episode of their own
        calm = ~np.array([self.detectors[g].firing for g in self.groups])[group]
        runs = [self._advance(self.ALL, np.flatnonzero(calm), neg, stamps)]
        for gi in np.unique(group).tolist():
            det = self.detectors[self.groups[gi]]
            if not det.firing:
                det.p0 = float(refs[gi])
            runs.append(self._advance(self.groups[gi], np.flatnonzero(group == gi), neg, stamps))
        # every review some run keeps as evidence, explained in one call
        extra.prefetch([i for r in runs for span in r.spans() for i in _kept(r.sel, r.x, span)])
        for r in runs:
            events += self._finish(r, stamps, review_ids, tokens, extra)
        self._push_ring(group, neg)
        return events

    def _advance(self, name: str, sel: IntArray, neg: IntArray, stamps: FloatArray) -> _Advance:
        """Feed one detector its events of the batch; the evidence is kept by :meth:`_finish`."""
        det = self.detectors[name]
        x = neg[sel]
        transitions = det.update_many(x, stamps[sel])
        last = transitions[-1].index + 1 if transitions else 0
        tail = None
        if not det.firing and last < x.shape[0]:
            tail = (last, x.shape[0] - 1, det.run_count)
        return _Advance(name, sel, x, transitions, tail)

    def _finish(
        self,
        r: _Advance,
        stamps: FloatArray,
        review_ids: Sequence[str],
        tokens: Sequence[Sequence[str]],
        extra: BatchContributions,
    ) -> list[ShiftEvent]:
        """The events of one advanced detector, keeping its evidence as they happen."""
        evidence = self._evidence[r.name]
        out: list[ShiftEvent] = []
        seg_start = 0
        for t in r.transitions:
            if t.status == "firing":
                span = (seg_start, t.index, t.count)
                self._collect(evidence, r.sel, r.x, span, review_ids, tokens, extra)
            out.append(self._event(r.name, t, float(stamps[r.sel[t.index]])))
            if t.status == "resolved":
                evidence.clear()
            seg_start = t.index + 1
        if r.tail is not None:
            self._collect(evidence, r.sel, r.x, r.tail, review_ids, tokens, extra)
        return out

    def _collect(
        self,
        evidence: _Evidence,
        sel: IntArray,
        x: IntArray,
        span: tuple[int, int, int],
        review_ids: Sequence[str],
        tokens: Sequence[Sequence[str]],
        extra: BatchContributions,
    ) -> None:
        """Keep the evidence of the current run: the negatives of ``sel[start..end]`` that fall
        in the last ``run_count`` events (clearing what came before the run); ``span`` is
        ``(start, end, run_count)``."""
        start, end, run_count = span
        if end + 1 - run_count >= start:
            evidence.clear()
        kept = _kept(sel, x, span)
        texts = extra.texts
        for i, row in zip(kept, extra.rows(kept), strict=True):
            evidence.terms.update(tokens[i])
            evidence.ids.append(review_ids[i])
            evidence.texts.append(texts[i] if texts is not None else "")
            evidence.rows.append(row)
            if row:
                evidence.contributions.update([row])
        evidence.trim(self._examples)

    def _event(self, name: str, t: Transition, end: float) -> ShiftEvent:
        det = self.detectors[name]
        if name == self.ALL:
            base = self.overall_share
        else:
            base = float(self.group_shares[self.groups.index(name)])
        evidence = self._evidence[name]
        terms: tuple[tuple[str, float], ...] = ()
        if t.status == "firing" and evidence.terms.total:
            terms = tuple(
                distinctive_terms(
                    evidence.terms.counts,
                    self._baseline_negative_terms or self._baseline_terms,
                    background=self._baseline_terms or None,
                    target_total=evidence.terms.total,
                )
            )
        growth: tuple[TermGrowth, ...] = ()
        texts: tuple[str, ...] = ()
        if t.status == "firing":
            growth, texts = self._contribution_evidence(name, evidence)
        return ShiftEvent(
            group=name,
            transition=t,
            baseline_share=base,
            reference_share=det.p0,
            window_end=end,
            example_ids=tuple(evidence.ids) if t.status == "firing" else (),
            terms=terms,
            contribution_terms=growth,
            example_texts=texts,
        )

    def _contribution_evidence(
        self, name: str, evidence: _Evidence
    ) -> tuple[tuple[TermGrowth, ...], tuple[str, ...]]:
        """The terms whose contribution grew most against the group's baseline negatives,
        and the texts of the recent negatives they weigh most in."""
        growth = tuple(
            contribution_growth(
                evidence.contributions,
                self._baseline_contributions.get(name),
                top=self._top_terms,
            )
        )
        known = [i for i, text in enumerate(evidence.texts) if text]
        picked = top_examples(
            [evidence.rows[i] for i in known], (g.term for g in growth), self._example_texts
        )
        return growth, tuple(evidence.texts[known[j]] for j in picked)

    # -- state -----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "detectors": {k: d.state() for k, d in self.detectors.items()},
            "ring_group": self._ring_group.tolist(),
            "ring_neg": self._ring_neg.tolist(),
            "ring_pos": self._ring_pos,
            "evidence": {k: e.state() for k, e in self._evidence.items()},
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.reset()
        for k, s in state["detectors"].items():
            if k in self.detectors:
                self.detectors[k].load_state(s)
        ring_g = np.asarray(state["ring_group"], dtype=np.int64)
        if ring_g.shape == self._ring_group.shape:
            self._ring_group = ring_g
            self._ring_neg = np.asarray(state["ring_neg"], dtype=np.int64)
            self._ring_pos = int(state["ring_pos"])
        for k, e in state["evidence"].items():
            if k in self._evidence:
                self._evidence[k] = _Evidence.from_state(e)
