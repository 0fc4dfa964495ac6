"""Alert episodes and their wording: what a detector transition or a window test says.

:class:`AlertBook` turns transitions into :class:`stream.events.Alert` objects with an
``alert_id`` that is stable for the whole episode, ``f"{name}:{category}:{start}"`` (plus
``:{subject}``, e.g. the feature, where one alert name covers several subjects).
:func:`shift_alert` words a SentimentShift transition, :func:`window_alerts` the transitions of
one evaluated window (DataDrift per feature, PredictionDrift, LabelDrift, AccuracyDrop,
EstimatedAccuracyDrop, PriorShift); both put their numbers in the alert's ``evidence``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, Unpack

from monitors._stats import proportion_ci
from monitors.evaluation import WindowReport
from monitors.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from monitors.shift import ShiftEvent
from monitors.windows import from_us
from stream.events import Alert, Severity

__all__ = ["ALL", "AlertBook", "Check", "shift_alert", "window_alerts", "window_checks"]

#: The category of stream-wide alerts.
ALL = "all"


class _Wording(TypedDict):
    """What an alert says besides its name, category and status."""

    window_start: datetime
    window_end: datetime
    now: datetime
    summary: str
    evidence: Mapping[str, Any]
    severity: Severity


def _alert(alert_id: str, name: str, category: str, status: str, w: _Wording) -> Alert:
    return Alert(
        alert_id=alert_id,
        name=name,
        status=status,
        severity=w["severity"],
        category=category,
        summary=w["summary"],
        window_start=w["window_start"],
        window_end=w["window_end"],
        raised_at=w["now"],
        evidence=dict(w["evidence"]),
    )


class AlertBook:
    """Which alert episodes are open, keyed by (name, category, subject)."""

    def __init__(self) -> None:
        self.active: dict[tuple[str, str, str], str] = {}

    def is_active(self, name: str, category: str, subject: str = "") -> bool:
        return (name, category, subject) in self.active

    def fire(
        self,
        name: str,
        category: str,
        *,
        subject: str = "",
        episode_start: datetime,
        **wording: Unpack[_Wording],
    ) -> Alert | None:
        """A firing alert, or None when this episode is already open."""
        key = (name, category, subject)
        if key in self.active:
            return None
        parts = [name, category, *([subject] if subject else []), episode_start.isoformat()]
        alert_id = ":".join(parts)
        self.active[key] = alert_id
        return _alert(alert_id, name, category, "firing", wording)

    def resolve(
        self, name: str, category: str, *, subject: str = "", **wording: Unpack[_Wording]
    ) -> Alert | None:
        """The resolving alert of an open episode, or None when none is open."""
        alert_id = self.active.pop((name, category, subject), None)
        if alert_id is None:
            return None
        return _alert(alert_id, name, category, "resolved", wording)

    def open_episodes(self) -> dict[tuple[str, str], int]:
        """Open episodes per (alert name, category)."""
        out: dict[tuple[str, str], int] = {}
        for name, category, _subject in self.active:
            out[(name, category)] = out.get((name, category), 0) + 1
        return out

    def state(self) -> list[list[str]]:
        return [[*key, alert_id] for key, alert_id in sorted(self.active.items())]

    def load_state(self, state: list[list[str]]) -> None:
        self.active = {(a, b, c): d for a, b, c, d in state}


def _mix(shares: Iterable[Any]) -> str:
    values = [float(v) for v in shares]
    return "/".join(f"{v:.0%}" for v in values) + " (neg/neu/pos)"


# -- SentimentShift --------------------------------------------------------------------------


def _shift_evidence(
    e: ShiftEvent, start: datetime, end: datetime, confidence: float, threshold: float
) -> dict[str, Any]:
    t = e.transition
    share = t.negatives / t.count if t.count else 0.0
    lo, hi = proportion_ci(t.negatives, t.count, confidence)
    evidence: dict[str, Any] = {
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "baseline_share": round(e.baseline_share, 6),
        "reference_share": round(e.reference_share, 6),
        "current_share": round(share, 6),
        "current_share_interval": [round(lo, 6), round(hi, 6)],
        "confidence_level": confidence,
        "count": t.count,
        "negatives": t.negatives,
        "log_likelihood_ratio": round(t.statistic, 4),
        "threshold": round(threshold, 4),
    }
    if t.status == "firing":
        evidence["example_review_ids"] = list(e.example_ids)
        evidence["terms"] = [{"term": w, "z": z} for w, z in e.terms]
        if e.contribution_terms:
            evidence["contribution_terms"] = [g.to_json() for g in e.contribution_terms]
        if e.example_texts:
            evidence["example_texts"] = list(e.example_texts)
    return evidence


def _shift_summary(e: ShiftEvent, confidence: float) -> str:
    t = e.transition
    share = t.negatives / t.count if t.count else 0.0
    where = "the whole stream" if e.group == ALL else e.group
    if t.status == "firing":
        lo, hi = proportion_ci(t.negatives, t.count, confidence)
        return (
            f"Negative share of {where} rose to {share:.1%} "
            f"({confidence:.0%} CI {lo:.1%}-{hi:.1%}) over {t.count} reviews, "
            f"against a baseline of {e.baseline_share:.1%}"
        )
    return (
        f"Negative share of {where} is back near its baseline of "
        f"{e.baseline_share:.1%} ({share:.1%} over {t.count} reviews since the alert)"
    )


def shift_alert(
    book: AlertBook, e: ShiftEvent, now: datetime, *, confidence: float, threshold: float
) -> Alert:
    """The SentimentShift alert (critical) of one detector transition."""
    t = e.transition
    end = from_us(int(e.window_end)) if e.window_end is not None else now
    start = from_us(int(t.start)) if t.start is not None else end
    common: dict[str, Any] = {
        "window_start": start,
        "window_end": end,
        "now": now,
        "summary": _shift_summary(e, confidence),
        "evidence": _shift_evidence(e, start, end, confidence, threshold),
        "severity": Severity.CRITICAL,
    }
    if t.status == "firing":
        alert = book.fire("SentimentShift", e.group, episode_start=start, **common)
    else:
        alert = book.resolve("SentimentShift", e.group, **common)
    if alert is None:  # the book and the detector disagree only after a partial restore
        raise RuntimeError(f"SentimentShift {e.group}: {t.status} without matching episode")
    return alert


# -- window tests ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    """One window test's verdict as an alert would word it."""

    name: str
    subject: str
    fired: bool
    clean: bool
    summary: str
    evidence: dict[str, Any]


def _feature_checks(r: WindowReport) -> Iterator[Check]:
    meanings = {**NUMERIC_FEATURES, **CATEGORICAL_FEATURES}
    for feature, d in r.features.items():
        yield Check(
            "DataDrift",
            feature,
            d.drifted,
            r.features_clean[feature],
            f"Data drift in {feature} ({meanings.get(feature, feature)}): PSI {d.psi:.3f}, "
            f"JS distance {d.js_distance:.3f}, {d.test} p={d.p_value:.2g} over {d.count} reviews",
            d.to_json(),
        )


def _mix_checks(r: WindowReport) -> Iterator[Check]:
    mixes = (
        ("PredictionDrift", "Predicted", r.prediction, r.prediction_clean, "reviews"),
        ("LabelDrift", "Rated", r.label, r.label_clean, "rated reviews"),
    )
    for name, whose, d, clean, counted in mixes:
        if d is not None:
            yield Check(
                name,
                "",
                d.drifted,
                clean,
                f"{whose} sentiment mix {_mix(d.current)} against baseline {_mix(d.reference)} "
                f"(TVD {d.tvd:.3f}, chi-square p={d.p_value:.2g}, {d.count} {counted})",
                d.to_json(),
            )


def _accuracy_checks(r: WindowReport) -> Iterator[Check]:
    if r.accuracy is not None:
        a = r.accuracy
        yield Check(
            "AccuracyDrop",
            "",
            a.dropped,
            r.accuracy_clean,
            f"Accuracy {a.accuracy:.1%} against baseline {a.baseline_accuracy:.1%}, "
            f"macro-F1 {a.macro_f1:.3f} against {a.baseline_macro_f1:.3f} "
            f"(Fisher p={a.p_value:.2g}, {a.count} rated reviews)",
            a.to_json(),
        )


def _estimated_accuracy_checks(r: WindowReport, confidence: float) -> Iterator[Check]:
    d = r.estimated_drop
    if d is None:
        return
    est = d.estimate
    how = (
        "reweighted to the estimated priors"
        if est.method == "prior_weighted"
        else "not reweighted: the window shows data drift"
    )
    drifted = sorted(name for name, f in r.features.items() if f.drifted)
    yield Check(
        "EstimatedAccuracyDrop",
        "",
        d.dropped,
        r.estimated_clean,
        f"Estimated accuracy {est.accuracy:.1%} ({confidence:.0%} CI {est.accuracy_lower:.1%}-"
        f"{est.accuracy_upper:.1%}; no labels: calibrated probabilities {how}) against "
        f"baseline {d.baseline_accuracy:.1%}, estimated macro-F1 {est.macro_f1:.3f} "
        f"(p={d.p_value:.2g}, {est.n} reviews)",
        {
            **d.to_json(),
            "estimates": {m: e.to_json() for m, e in r.performance.items()},
            "data_drift": drifted,
        },
    )


def _prior_checks(r: WindowReport, confidence: float) -> Iterator[Check]:
    if not r.priors:
        return
    main = r.priors.get("bbse") or next(iter(r.priors.values()))
    est = main.estimate
    yield Check(
        "PriorShift",
        "",
        r.prior_shift,
        r.priors_clean,
        f"Estimated class priors {_mix(est.priors)} ({est.method}, {confidence:.0%} CI "
        f"{_mix(est.lower)}..{_mix(est.upper)}) against baseline {_mix(main.reference)} "
        f"over {est.n} reviews",
        {
            "baseline_priors": [round(float(v), 6) for v in main.reference],
            "estimates": {
                m: {
                    **ps.estimate.to_json(),
                    "reference": [round(float(v), 6) for v in ps.reference],
                    "shifted": ps.shifted,
                    "concentrated_in": ps.concentrated_in,
                }
                for m, ps in r.priors.items()
            },
            "count": est.n,
            "withheld": r.prior_withheld,
        },
    )


def window_checks(r: WindowReport, confidence: float) -> list[Check]:
    """Every alertable verdict of one window, in a fixed order."""
    return [
        *_feature_checks(r),
        *_mix_checks(r),
        *_accuracy_checks(r),
        *_estimated_accuracy_checks(r, confidence),
        *_prior_checks(r, confidence),
    ]


def window_alerts(
    book: AlertBook,
    report: WindowReport,
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    confidence: float,
) -> list[Alert]:
    """The transitions (warning, category ``all``) of one evaluated window spanning
    ``start``..``end``: a check that fired opens its episode, a clean one resolves it."""
    span = {"window_start": start.isoformat(), "window_end": end.isoformat()}
    out: list[Alert | None] = []
    for c in window_checks(report, confidence):
        common: dict[str, Any] = {
            "subject": c.subject,
            "window_start": start,
            "window_end": end,
            "now": now,
            "evidence": {**span, **c.evidence},
            "severity": Severity.WARNING,
        }
        if c.fired:
            out.append(book.fire(c.name, ALL, episode_start=start, summary=c.summary, **common))
        elif c.clean:
            summary = f"{c.name} back to normal: {c.summary}"
            out.append(book.resolve(c.name, ALL, summary=summary, **common))
    return [a for a in out if a is not None]
