"""Contribution evidence: exact sums and growths, and a SentimentShift whose evidence names the
new defect of one category by its own words, not the category's usual complaints."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from monitors import Baseline, MonitorConfig, MonitorSuite
from monitors.baseline import baseline_from_dict, baseline_to_dict
from monitors.contributions import (
    BatchContributions,
    ContributionSums,
    TermGrowth,
    contribution_growth,
    top_examples,
)
from monitors.simulate import batches, make_review
from sinks.alert_format import alert_payload
from stream.events import Alert, ScoredReview

# -- sums and growth -------------------------------------------------------------------------


def test_sums_count_reviews_and_terms() -> None:
    s = ContributionSums()
    s.update([{"a": 0.5, "b": -0.25}, {}, {"a": 0.25}])
    assert (s.n, s.sums, s.docs) == (3, {"a": 0.75, "b": -0.25}, {"a": 2, "b": 1})
    assert s.mean("a") == 0.25 and s.mean("zzz") == 0.0
    other = ContributionSums()
    other.update([{"b": 1.0}])
    s.merge(other)
    assert (s.n, s.sums, s.docs) == (4, {"a": 0.75, "b": 0.75}, {"a": 2, "b": 2})
    again = ContributionSums.from_state(json.loads(json.dumps(s.state())))
    assert again == s and again is not s
    s.clear()
    assert (s.n, s.sums, s.docs) == (0, {}, {})
    assert ContributionSums().mean("a") == 0.0
    with pytest.raises(ValueError):
        ContributionSums(0)


def test_sums_keep_the_largest_terms_past_twice_the_capacity() -> None:
    s = ContributionSums(capacity=2)
    s.update([{"a": 1.0, "b": -3.0, "c": 0.5, "d": 2.0}])
    assert s.sums == {"a": 1.0, "b": -3.0, "c": 0.5, "d": 2.0}  # 4 = 2 * capacity: kept
    s.update([{"e": 0.25}])
    assert s.sums == {"b": -3.0, "d": 2.0} and s.docs == {"b": 1, "d": 1}
    assert s.n == 2


def test_growth_against_the_reference() -> None:
    window, reference = ContributionSums(), ContributionSums()
    window.update([{"small": 0.5, "zip": 0.25}, {"small": 0.5, "zip": 0.25}, {"small": 0.5}, {}])
    reference.update([{"small": 0.5}, {"small": 0.5}, {"small": 0.5}, {"small": 0.5}])
    # small: 1.5/4 - 2/4 < 0 (dropped); zip: 0.5/4 - 0 = 0.125 (two reviews)
    assert contribution_growth(window, reference, min_reviews=2) == [
        TermGrowth("zip", 0.125, 0.125, 0.0, 2)
    ]
    assert contribution_growth(window, reference, min_reviews=3) == []
    # without a reference every positive mean is growth; ties by term
    assert contribution_growth(window, None, min_reviews=1) == [
        TermGrowth("small", 0.375, 0.375, 0.0, 3),
        TermGrowth("zip", 0.125, 0.125, 0.0, 2),
    ]
    assert contribution_growth(window, None, min_reviews=1, top=1)[0].term == "small"
    assert contribution_growth(ContributionSums(), reference) == []
    assert TermGrowth("zip", 0.125, 0.125, 0.0, 2).to_json() == {
        "term": "zip",
        "growth": 0.125,
        "window_mean": 0.125,
        "baseline_mean": 0.0,
        "reviews": 2,
    }


def test_top_examples_rank_rows_by_the_named_terms() -> None:
    rows = [{"zip": 0.25}, {"small": 1.0}, {"zip": 0.5, "broke": 0.25}, {"zip": 0.25}]
    assert top_examples(rows, ["zip", "broke"], 3) == [2, 3, 0]
    assert top_examples(rows, [], 2) == [3, 2]
    assert top_examples([], ["zip"], 2) == []


def test_batch_contributions_explain_each_review_once() -> None:
    calls: list[list[str]] = []

    def lengths(texts: Sequence[str]) -> list[Mapping[str, float]]:
        calls.append(list(texts))
        return [{"len": float(len(t))} for t in texts]

    b = BatchContributions(3, ["a", "bb", "ccc"], None, lengths)
    b.prefetch([2, 0, 2])
    assert calls == [["ccc", "a"]]
    assert b.rows([0, 1, 2]) == [{"len": 1.0}, {"len": 2.0}, {"len": 3.0}]
    assert calls == [["ccc", "a"], ["bb"]]
    given = BatchContributions(2, None, [{"x": 1.0}, {}], lengths)
    assert given.rows([1, 0]) == [{}, {"x": 1.0}] and given.texts is None
    # texts of the wrong length are unknown; nothing to explain
    unknown = BatchContributions(2, ["only one"], None, lengths)
    unknown.prefetch([0])
    assert unknown.rows([0, 1]) == [{}, {}] and len(calls) == 2

    def short(texts: Sequence[str]) -> list[Mapping[str, float]]:
        return []

    with pytest.raises(ValueError, match="answered 0 of 1"):
        BatchContributions(1, ["a"], None, short).rows([0])


# -- a defect in one category ----------------------------------------------------------------

#: contributions to the negative score per word (dyadic, so sums are exact)
WEIGHTS = {
    "runs": 0.125,
    "small": 0.5,
    "too": 0.0625,
    "tight": 0.375,
    "the": 0.03125,
    "zipper": 0.25,
    "broke": 0.625,
    "itchy": 0.75,
    "wool": 0.125,
    "pills": 0.5,
    "love": -0.75,
    "perfect": -0.5,
}
T0 = datetime(2024, 3, 1, tzinfo=UTC)
CHANGE = 800
CONFIG = MonitorConfig(
    categories=("Dresses", "Knits"), baseline_events=400, min_count=20, examples=6, example_texts=2
)


def explainer(texts: Sequence[str]) -> list[Mapping[str, float]]:
    return [{w: WEIGHTS[w] for w in set(re.findall("[a-z]+", t)) if w in WEIGHTS} for t in texts]


def defect_stream(events: int = 1600) -> list[ScoredReview]:
    """Dresses and Knits alternate; 20 % of each are negative with their usual complaint
    until ``CHANGE``, then 60 % of Dresses, every other one of those about a broken zipper."""
    out, zipper = [], 0
    for i in range(events):
        dresses = i % 2 == 0
        cycle = (i // 2) % 5
        negative = cycle in ((0, 1, 2) if i >= CHANGE else (0,)) if dresses else cycle == 1
        if not negative:
            text = f"love it, perfect, order {i}"
        elif not dresses:
            text = f"itchy wool pills, order {i}"
        elif i >= CHANGE and zipper % 2 == 0:
            text, zipper = f"the zipper broke, runs small too tight, order {i}", zipper + 1
        else:
            text, zipper = f"runs small too tight, order {i}", zipper + (i >= CHANGE)
        out.append(
            make_review(
                i,
                time=T0 + timedelta(seconds=3 * i),
                category="Dresses" if dresses else "Knits",
                sentiment=-1 if negative else 1,
                text=text,
            )
        )
    return out


def run(suite: MonitorSuite, reviews: Sequence[ScoredReview]) -> list[Alert]:
    alerts = []
    for b in batches(reviews, 100):
        alerts += suite.observe(b, b[-1].event.event_time)
    return alerts


def shift_firing(alerts: list[Alert], category: str) -> Alert:
    return next(
        a
        for a in alerts
        if a.name == "SentimentShift" and a.category == category and a.status == "firing"
    )


def test_shift_evidence_names_the_new_defect_not_the_usual_complaints() -> None:
    reviews = defect_stream()
    suite = MonitorSuite(CONFIG, explainer=explainer)
    alert = shift_firing(run(suite, reviews), "Dresses")
    ev = alert.evidence

    # The window: the Dresses negatives of the CUSUM run, from the alert's own window.
    start, end = (
        datetime.fromisoformat(ev["window_start"]),
        datetime.fromisoformat(ev["window_end"]),
    )
    run_negatives = [
        r
        for r in reviews
        if r.event.product_category == "Dresses"
        and r.sentiment == -1
        and start <= r.event.event_time <= end
    ]
    assert len(run_negatives) == ev["negatives"]
    with_zipper = sum("zipper" in r.event.review_text for r in run_negatives)
    share = with_zipper / len(run_negatives)
    # Against the category's own baseline negatives (all "runs small too tight") the usual
    # words did not grow; the defect's words did, by weight times their share of the window.
    assert ev["contribution_terms"] == [
        {
            "term": w,
            "growth": round(WEIGHTS[w] * share, 6),
            "window_mean": round(WEIGHTS[w] * share, 6),
            "baseline_mean": 0.0,
            "reviews": with_zipper,
        }
        for w in ("broke", "zipper", "the")
    ]
    # (the log-odds terms, against the stream's baseline negatives, also name the category's
    # usual complaints: the contributions against its own baseline do not)
    assert {"small", "tight"} <= {t["term"] for t in ev["terms"]}
    # The example texts: of the last six negatives, the two latest about the zipper.
    texts = {r.event.review_id: r.event.review_text for r in reviews}
    examples = [texts[i] for i in ev["example_review_ids"]]
    assert len(examples) == CONFIG.examples
    expected = [t for t in reversed(examples) if "zipper" in t][:2]
    assert ev["example_texts"] == expected and len(expected) == 2

    # Receivers without text get neither the terms nor the texts; the ids stay.
    stripped = alert_payload(alert)["evidence"]
    assert "contribution_terms" not in stripped and "example_texts" not in stripped
    assert stripped["example_review_ids"] == ev["example_review_ids"]
    full = alert_payload(alert, include_text=True)["evidence"]
    assert full["example_texts"] == expected


def test_without_an_explainer_the_other_evidence_is_the_same() -> None:
    reviews = defect_stream()
    with_terms = shift_firing(run(MonitorSuite(CONFIG, explainer=explainer), reviews), "Dresses")
    without = shift_firing(run(MonitorSuite(CONFIG), reviews), "Dresses")
    assert "contribution_terms" not in without.evidence
    # example texts without contributions to rank them by: the latest
    texts = {r.event.review_id: r.event.review_text for r in reviews}
    latest = [texts[i] for i in reversed(without.evidence["example_review_ids"])][:2]
    assert without.evidence["example_texts"] == latest
    extra = {"contribution_terms", "example_texts"}
    assert {k: v for k, v in with_terms.evidence.items() if k not in extra} == {
        k: v for k, v in without.evidence.items() if k not in extra
    }
    assert with_terms.alert_id == without.alert_id


def test_baseline_keeps_each_categorys_negative_contributions() -> None:
    reviews = defect_stream(400)
    suite = MonitorSuite(CONFIG, explainer=explainer)
    run(suite, reviews)
    b = suite.baseline
    assert b is not None
    dresses, knits = b.negative_contributions["Dresses"], b.negative_contributions["Knits"]
    assert dresses.n == 40 and knits.n == 40  # 200 of each, 20 % negative
    assert dresses.sums == {w: 40 * WEIGHTS[w] for w in ("runs", "small", "too", "tight")}
    assert knits.sums == {w: 40 * WEIGHTS[w] for w in ("itchy", "wool", "pills")}
    assert baseline_from_dict(json.loads(json.dumps(baseline_to_dict(b)))) == b
    # the same from plain columns (a scored CSV)
    texts = [r.event.review_text for r in reviews]
    from_values = Baseline.from_values(
        texts=texts,
        categories=[r.event.product_category for r in reviews],
        predicted=[r.sentiment for r in reviews],
        probabilities=[(r.p_negative, r.p_neutral, r.p_positive) for r in reviews],
        contributions=explainer(texts),
    )
    assert from_values.negative_contributions == b.negative_contributions


def test_evidence_survives_a_restore() -> None:
    reviews = defect_stream()
    whole = shift_firing(run(MonitorSuite(CONFIG, explainer=explainer), reviews), "Dresses")
    first = MonitorSuite(CONFIG, explainer=explainer)
    alerts = run(first, reviews[:900])
    state = json.loads(json.dumps(first.state()))
    resumed = MonitorSuite.from_state(CONFIG, state, explainer=explainer)
    alerts += run(resumed, reviews[900:])
    assert shift_firing(alerts, "Dresses") == whole


def test_the_explainer_sees_each_kept_negative_once_per_batch() -> None:
    reviews = defect_stream()
    calls: list[list[str]] = []

    def counting(texts: Sequence[str]) -> list[Mapping[str, float]]:
        calls.append(list(texts))
        return explainer(texts)

    suite = MonitorSuite(CONFIG, explainer=counting)
    alerts = run(suite, reviews)
    negatives = {r.event.review_text for r in reviews if r.sentiment == -1}
    asked = [t for c in calls for t in c]
    assert set(asked) <= negatives and len(asked) == len(set(asked))
    assert len(calls) <= len(batches(reviews, 100))
    # the baseline's negatives all, later only those the runs keep
    assert len(asked) < len(negatives)
    assert shift_firing(alerts, "Dresses").evidence["contribution_terms"][0]["term"] == "broke"


def test_the_app_wires_the_models_own_explanations() -> None:
    from stream.app import build_monitor
    from stream.settings import MonitorSettings, Settings

    settings = Settings(
        categories=["Dresses", "Knits"], monitor=MonitorSettings(baseline_events=400, min_count=20)
    )
    monitor = build_monitor(settings)
    assert isinstance(monitor, MonitorSuite)
    reviews = defect_stream()
    ev = shift_firing(run(monitor, reviews), "Dresses").evidence
    growth = {t["term"]: t["growth"] for t in ev["contribution_terms"]}
    # The shipped model's terms of the zipper reviews, which the category's usual complaint
    # lacks, carry almost all of the growth; the usual words only move by the normalisation
    # of the longer texts (their negative-class weights are small).
    new_words = {"the", "zipper", "broke", "the zipper", "zipper broke"}
    assert next(iter(growth)) in {"zipper", "broke", "zipper broke"}
    assert sum(g for w, g in growth.items() if w in new_words) > 0.95 * sum(growth.values())
    assert set(growth) - new_words <= {"runs", "small", "too", "tight", "order"}
    # of the five latest negatives, first those about the zipper
    texts = {r.event.review_id: r.event.review_text for r in reviews}
    zippers = sum("zipper" in texts[i] for i in ev["example_review_ids"])
    shown = ev["example_texts"]
    assert len(shown) == 3 and zippers >= 2
    assert ["zipper" in t for t in shown] == [k < zippers for k in range(3)]
