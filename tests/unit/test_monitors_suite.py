"""The MonitorSuite facade on seeded streams: exact alarm points, state, reset, readings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitors import Baseline, MonitorConfig, MonitorSuite
from monitors.readings import Reading
from monitors.simulate import DEFAULT_CATEGORIES, StreamSpec, batches, make_review, synthetic_stream
from stream.events import Alert, ScoredReview, SourcePosition

CONFIG = MonitorConfig(categories=DEFAULT_CATEGORIES)
T0 = datetime(2024, 3, 1, tzinfo=UTC)
SPECS = {
    "steady": StreamSpec(events=12_000, seed=21),
    "negative-surge": StreamSpec(
        events=12_000, seed=21, change_at=6000, category_priors_after={"Dresses": (0.6, 0.15, 0.25)}
    ),
    "prior-shift": StreamSpec(events=12_000, seed=21, change_at=6000, priors_after=(0.5, 0.2, 0.3)),
    "data-drift": StreamSpec(
        events=12_000,
        seed=21,
        change_at=6000,
        words_mean_after=80,
        channels_after=(0.1, 0.1, 0.1, 0.3, 0.3, 0.05, 0.05),
    ),
}


def after(review: ScoredReview, offset: int) -> ScoredReview:
    """``review`` moved ``offset`` places on in its partition."""
    return replace(
        review, position=SourcePosition(*review.position.key, review.position.offset + offset)
    )


@cache
def stream(name: str) -> tuple[ScoredReview, ...]:
    return tuple(synthetic_stream(SPECS[name]))


def run(
    suite: MonitorSuite, reviews: Sequence[ScoredReview], size: int = 250, first: int = 0
) -> list[tuple[int, Alert]]:
    out = []
    for i, b in enumerate(batches(reviews, size), start=first):
        out += [(i, a) for a in suite.observe(b, b[-1].event.event_time)]
    return out


def test_steady_stream_raises_nothing() -> None:
    suite = MonitorSuite(CONFIG)
    assert run(suite, stream("steady")) == []
    assert suite.baseline is not None and suite.baseline.n == 2000


def test_negative_surge_fires_for_that_category_only() -> None:
    alerts = run(MonitorSuite(CONFIG), stream("negative-surge"))
    assert [(i, a.alert_id, a.status) for i, a in alerts] == [
        (29, "SentimentShift:Dresses:2024-03-01T04:59:00+00:00", "firing")
    ]
    a = alerts[0][1]
    assert (a.name, a.category, str(a.severity)) == ("SentimentShift", "Dresses", "critical")
    ev = a.evidence
    assert (ev["count"], ev["negatives"]) == (78, 46)
    assert ev["current_share"] == pytest.approx(46 / 78, abs=1e-6)
    lo, hi = ev["current_share_interval"]
    assert lo < ev["current_share"] < hi
    assert ev["baseline_share"] < lo  # the baseline lies outside the interval
    assert len(ev["example_review_ids"]) == 5
    terms = [t["term"] for t in ev["terms"]]
    assert terms and set(terms) & {"returned", "disappointed", "cheap", "poor", "refund"}
    assert ev["window_start"] == "2024-03-01T04:59:00+00:00"
    json.dumps(a.to_json_dict())


def test_prior_shift_fires_prior_shift_and_no_category_alert() -> None:
    alerts = run(MonitorSuite(CONFIG), stream("prior-shift"))
    assert [(i, a.alert_id) for i, a in alerts] == [
        (24, "SentimentShift:all:2024-03-01T05:00:06+00:00"),
        (29, "PredictionDrift:all:2024-03-01T05:00:00+00:00"),
        (29, "LabelDrift:all:2024-03-01T05:00:00+00:00"),
        (29, "PriorShift:all:2024-03-01T05:00:00+00:00"),
    ]
    prior = alerts[-1][1]
    bbse = prior.evidence["estimates"]["bbse"]
    assert bbse["shifted"] and bbse["lower"][0] > bbse["reference"][0]
    assert prior.evidence["estimates"]["em"]["priors"][0] > 0.35


def test_data_drift_fires_for_length_and_channel_only() -> None:
    alerts = run(MonitorSuite(CONFIG), stream("data-drift"))
    assert [(i, a.name, a.category, a.evidence["feature"]) for i, a in alerts] == [
        (29, "DataDrift", "all", "review_words"),
        (29, "DataDrift", "all", "review_chars"),
        (29, "DataDrift", "all", "channel"),
    ]
    assert alerts[0][1].alert_id == "DataDrift:all:review_words:2024-03-01T05:00:00+00:00"
    assert "review_words" in alerts[0][1].summary


def test_a_large_category_surge_is_not_a_stream_wide_shift() -> None:
    # Dresses hold 30 % of the stream: its surge lifts the overall negative share by 12 points,
    # yet the alarm is the category's; "all" and PriorShift see the rest of the stream
    weights = (0.3, *([0.7 / 17] * 17))
    spec = replace(SPECS["negative-surge"], category_weights=weights)
    suite = MonitorSuite(CONFIG)
    alerts = run(suite, synthetic_stream(spec))
    fired = {(a.name, a.category) for _, a in alerts if a.status == "firing"}
    # the predicted and rated mixes did move: those alerts are about the mix, not its cause
    assert fired == {
        ("SentimentShift", "Dresses"),
        ("PredictionDrift", "all"),
        ("LabelDrift", "all"),
    }
    assert alerts[0] == (24, alerts[0][1])
    assert alerts[0][1].alert_id == "SentimentShift:Dresses:2024-03-01T05:00:00+00:00"
    report = suite.last_report
    assert report is not None
    assert {m: (p.shifted, p.concentrated_in) for m, p in report.priors.items()} == {
        "bbse": (False, "Dresses"),
        "em": (False, "Dresses"),
    }


def test_prior_shift_is_withheld_while_the_data_drift() -> None:
    # label-shift estimators assume p(x | y) is fixed; with longer texts they are not trusted
    spec = replace(SPECS["data-drift"], priors_after=(0.5, 0.2, 0.3))
    suite = MonitorSuite(CONFIG)
    fired = {(a.name, a.category) for _, a in run(suite, synthetic_stream(spec))}
    assert ("DataDrift", "all") in fired and ("PriorShift", "all") not in fired
    report = suite.last_report
    assert report is not None and report.prior_withheld is not None
    assert report.prior_withheld.startswith("data drift in channel, review_chars, review_words")
    assert all(p.shifted for p in report.priors.values())


def _unsure(r: ScoredReview) -> ScoredReview:
    """The review without its rating, scored with probabilities pulled towards uniform."""
    p = [0.4 * v + 0.2 for v in (r.p_negative, r.p_neutral, r.p_positive)]
    event = replace(r.event, rating=None)
    return replace(r, event=event, p_negative=p[0], p_neutral=p[1], p_positive=p[2])


def test_estimated_accuracy_drop_needs_no_ratings() -> None:
    # from event 6000 on the model is unsure (its top probability falls from ~0.85 to ~0.54)
    # and no rating comes in: AccuracyDrop cannot see it, the estimate does
    reviews = [r if i < 6000 else _unsure(r) for i, r in enumerate(stream("steady"))]
    suite = MonitorSuite(CONFIG)
    alerts = run(suite, reviews)
    fired = {a.name: a for _, a in alerts if a.status == "firing"}
    assert "EstimatedAccuracyDrop" in fired and "AccuracyDrop" not in fired
    evidence = fired["EstimatedAccuracyDrop"].evidence
    assert evidence["dropped"] is True and evidence["p_value"] < 1e-6
    assert set(evidence["estimates"]) == {"prior_weighted", "unweighted"}
    report = suite.last_report
    assert report is not None and report.labelled == 0 and report.estimated_drop is not None
    # flatter probabilities are data drift (the confidence feature), not label shift: the
    # verdict rests on the unweighted estimate, which reads the model's doubt directly
    assert "confidence" in evidence["data_drift"] and evidence["method"] == "unweighted"
    est = report.performance["unweighted"]
    assert report.estimated_drop.estimate is est
    assert est.accuracy_upper < report.estimated_drop.baseline_accuracy - 0.2
    assert 0.45 < est.accuracy < 0.65 and 0.0 < est.macro_f1 < est.accuracy
    assert report.performance["prior_weighted"].accuracy < est.accuracy
    got = {
        (r.name, r.labels["method"]): r.value
        for r in suite.readings()
        if r.name.startswith("sentiment_estimated_")
    }
    assert got[("sentiment_estimated_accuracy", "unweighted")] == est.accuracy
    assert got[("sentiment_estimated_macro_f1_upper", "prior_weighted")] == (
        report.performance["prior_weighted"].macro_f1_upper
    )
    assert len(got) == 12


def test_shift_resolves_once_the_share_is_back() -> None:
    surge = synthetic_stream(replace(SPECS["negative-surge"], events=9000))
    calm = synthetic_stream(StreamSpec(events=6000, seed=5, start=T0 + timedelta(seconds=27_000)))
    calm = [after(r, len(surge)) for r in calm]  # one stream: offsets go on from the surge's
    alerts = run(MonitorSuite(CONFIG), [*surge, *calm])
    assert [(i, a.alert_id, a.status, a.evidence["count"]) for i, a in alerts] == [
        (35, "SentimentShift:Dresses:2024-03-01T05:02:30+00:00", "firing", 163),
        (45, "SentimentShift:Dresses:2024-03-01T05:02:30+00:00", "resolved", 170),
    ]
    resolved = alerts[1][1]
    assert resolved.evidence["current_share"] == pytest.approx(0.276471)  # since the alert


@pytest.mark.parametrize("scenario", ["negative-surge", "prior-shift", "data-drift"])
def test_state_round_trip_mid_stream_continues_identically(scenario: str) -> None:
    reviews = stream(scenario)
    whole = run(MonitorSuite(CONFIG), reviews)
    first = MonitorSuite(CONFIG)
    head = run(first, reviews[:7000])  # mid-window, after the change
    state = json.loads(json.dumps(first.state()))
    assert state["windows_open"]
    second = MonitorSuite.from_state(CONFIG, state)
    assert second.state() == state
    tail = run(second, reviews[7000:], first=28)
    assert [(i, a.to_json_dict()) for i, a in head + tail] == [
        (i, a.to_json_dict()) for i, a in whole
    ]


def test_state_during_baseline_learning_round_trips() -> None:
    reviews = stream("steady")
    a = MonitorSuite(CONFIG)
    run(a, reviews[:1000])
    b = MonitorSuite.from_state(CONFIG, json.loads(json.dumps(a.state())))
    run(a, reviews[1000:3000])
    run(b, reviews[1000:3000])
    assert a.baseline == b.baseline
    assert a.state() == b.state()


def test_state_is_tied_to_the_categories() -> None:
    state = MonitorSuite(CONFIG).state()
    with pytest.raises(ValueError, match="other categories"):
        MonitorSuite.from_state(replace(CONFIG, categories=("Dresses",)), state)


def test_odd_window_lengths_get_a_fitting_pane() -> None:
    config = replace(CONFIG, window=timedelta(minutes=7))
    alerts = run(MonitorSuite(config), stream("negative-surge"))
    assert [a.category for _, a in alerts] == ["Dresses"]


@settings(max_examples=8, deadline=None, derandomize=True)
@given(batches_seen=st.integers(0, 40))
def test_reset_restores_the_start_state(batches_seen: int) -> None:
    reviews = stream("negative-surge")[: 250 * batches_seen]
    suite = MonitorSuite(CONFIG)
    start = suite.state()
    run(suite, reviews)
    suite.reset()
    assert suite.state() == start


def test_reset_keeps_a_given_baseline() -> None:
    baseline = Baseline.from_reviews(stream("steady")[:2000])
    suite = MonitorSuite(CONFIG, baseline)
    start = suite.state()
    run(suite, stream("steady")[:3000])
    suite.reset()
    assert suite.state() == start and suite.baseline == baseline


def test_given_baseline_detects_from_the_first_event() -> None:
    baseline = Baseline.from_reviews(stream("steady")[:2000])
    suite = MonitorSuite(CONFIG, baseline)
    alerts = run(suite, stream("negative-surge")[6000:])
    assert [(i, a.category) for i, a in alerts] == [(5, "Dresses")]


def _labels(readings: Sequence[Reading], name: str) -> list[dict[str, str]]:
    return [dict(r.labels) for r in readings if r.name == name]


def test_readings_are_named_bounded_and_in_range() -> None:
    suite = MonitorSuite(CONFIG)
    reviews = list(stream("negative-surge"))
    reviews[7000] = make_review(
        7000, time=reviews[7000].event.event_time, category="Shoes", review_id="secret-id"
    )
    run(suite, reviews)
    readings = suite.readings()
    allowed = {*DEFAULT_CATEGORIES, "other", "all"}
    for r in readings:
        assert r.name.startswith("sentiment_")
        assert r.kind in {"gauge", "counter"}
        assert r.kind != "counter" or r.name.endswith("_total")
        assert "secret-id" not in r.labels.values()
        assert r.labels.get("product_category", "all") in allowed
        if r.name.endswith(("_share", "_p_value", "_accuracy", "_macro_f1", "_prior")):
            assert 0.0 <= r.value <= 1.0, r
    label_sets: dict[str, set[tuple[str, ...]]] = {}
    for r in readings:
        label_sets.setdefault(r.name, set()).add(tuple(sorted(r.labels)))
    assert all(len(v) == 1 for v in label_sets.values()), label_sets  # one family, one label set
    names = {r.name for r in readings}
    documented = Path(__file__).parents[2].joinpath("monitors", "README.md").read_text()
    assert all(n.removesuffix("_lower").removesuffix("_upper") in documented for n in names)
    assert {
        "sentiment_window_share",
        "sentiment_shift_log_likelihood_ratio",
        "sentiment_feature_psi",
        "sentiment_prior_estimate",
        "sentiment_bias_metric",
        "sentiment_window_accuracy",
        "sentiment_alert_episodes_open",
    } <= names
    assert {"product_category": "Dresses", "window": "1h", "sentiment": "negative"} in _labels(
        readings, "sentiment_window_share"
    )
    assert {"alertname": "SentimentShift", "product_category": "Dresses"} in _labels(
        readings, "sentiment_alert_episodes_open"
    )
    other = [
        r
        for r in readings
        if r.name == "sentiment_window_reviews"
        and r.labels == {"product_category": "other", "window": "1d"}
    ]
    assert other[0].value == 1.0


def test_late_events_are_counted_and_ignored() -> None:
    suite = MonitorSuite(CONFIG)
    reviews = stream("steady")
    run(suite, reviews[:3000])
    late = [
        make_review(3000 + i, time=T0 + timedelta(minutes=1), category="Dresses", sentiment=-1)
        for i in range(100)
    ]
    assert suite.observe(late, T0 + timedelta(hours=3)) == []
    counters = {r.name: r.value for r in suite.readings() if r.kind == "counter"}
    assert counters["sentiment_monitor_late_events_total"] == 100
    assert counters["sentiment_monitor_events_total"] == 3000


def test_bias_analysis_of_the_last_window() -> None:
    suite = MonitorSuite(CONFIG)
    assert suite.bias_analysis() is None
    run(suite, stream("steady")[:4000])
    true = suite.bias_analysis("true")
    predicted = suite.bias_analysis("predicted")
    assert true is not None and predicted is not None
    facets = true["pre_training_bias_metrics"]["facets"]["product_category"]
    assert {f["value_or_threshold"] for f in facets} == set(DEFAULT_CATEGORIES)
    assert [m["name"] for m in facets[0]["metrics"]] == ["CI", "DPL", "JS", "KL", "KS", "LP", "TVD"]
    assert predicted["pre_training_bias_metrics"]["label"] == "predicted_sentiment"


def test_empty_batches_advance_the_clock_on_an_idle_stream() -> None:
    suite = MonitorSuite(CONFIG)
    reviews = stream("steady")[:3000]
    run(suite, reviews)
    before = suite.state()["counters"]
    last = reviews[-1].event.event_time
    assert suite.observe([], last + timedelta(hours=2)) == []
    assert suite.state()["counters"]["batches"] == before["batches"] + 1
    evaluations = {r.name: r.value for r in suite.readings()}
    assert evaluations["sentiment_window_evaluations_total"] == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"categories": ()}, "categories"),
        ({"false_alarm_rate": 0.0}, "false_alarm_rate"),
        ({"min_count": 0}, "min_count"),
        ({"shift_odds_ratio": 1.0}, "shift_odds_ratio"),
        ({"window": timedelta(0)}, "window"),
        ({"max_window_events": 10}, "max_window_events"),
    ],
)
def test_config_validation(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(CONFIG, **change)  # type: ignore[arg-type]
