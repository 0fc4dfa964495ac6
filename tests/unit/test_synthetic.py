"""The synthetic generator: deterministic, valid where it should be, malformed exactly where it
should be, and each scenario changes what it says it changes (measured on the ground truth)."""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest

from stream.events import CHANNELS, DeadLetter, Reason, ReviewEvent, SourcePosition
from stream.synthetic import (
    CATEGORY_WEIGHTS,
    DEFAULT_START,
    MALFORMED_REASONS,
    SCENARIOS,
    GeneratedRecord,
    Scenario,
    generate,
)
from stream.validation import decode_event

N = 20_000
SEED = 7
POS = SourcePosition("replay", "test", "0", 0)
#: When the records are decoded: after the last event time (the validator refuses events
#: more than a day ahead of their arrival).
RECEIVED = DEFAULT_START + timedelta(days=3)


@cache
def records(scenario: str, events: int = N, seed: int = SEED) -> tuple[GeneratedRecord, ...]:
    return tuple(generate(scenario, events=events, seed=seed))


def valid(recs: Sequence[GeneratedRecord]) -> list[ReviewEvent]:
    return [r.event for r in recs if r.event is not None]


def negative_share(events: Sequence[ReviewEvent]) -> float:
    return sum(e.true_sentiment == -1 for e in events) / len(events)


def mix(events: Sequence[ReviewEvent]) -> tuple[float, float, float]:
    counts = Counter(e.true_sentiment for e in events)
    n = len(events)
    return (counts[-1] / n, counts[0] / n, counts[1] / n)


def near(actual: tuple[float, ...], expected: tuple[float, ...], tol: float) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True))


def words(event: ReviewEvent) -> int:
    return len(event.review_text.split())


# -- determinism and the contract ------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_same_arguments_give_the_same_bytes(scenario: str) -> None:
    first = list(generate(scenario, events=2_000, seed=3))
    again = list(generate(scenario, events=2_000, seed=3))
    assert [(r.key, r.value) for r in first] == [(r.key, r.value) for r in again]
    other = list(generate(scenario, events=2_000, seed=4))
    assert [r.value for r in first] != [r.value for r in other]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_valid_record_decodes_to_its_event(scenario: str) -> None:
    recs = records(scenario)
    assert len(recs) == N
    for r in recs:
        assert (r.event is None) == (r.expected_reason is not None)
        if r.event is None:
            continue
        assert r.key == r.event.product_id.encode()
        assert json.loads(r.value) == r.event.to_json_dict()
        assert decode_event(r.value, POS, RECEIVED) == r.event
    ids = [r.event.review_id for r in recs if r.event is not None]
    assert len(set(ids)) == len(ids)


def test_review_ids_differ_between_scenarios_and_seeds() -> None:
    a = {e.review_id for e in valid(records("steady", 2_000))}
    b = {e.review_id for e in valid(records("negative-surge", 2_000))}
    c = {e.review_id for e in valid(records("steady", 2_000, seed=8))}
    assert not a & b
    assert not a & c


def test_fields_cover_the_contract() -> None:
    events = valid(records("steady"))
    assert {e.product_category for e in events} == set(CATEGORY_WEIGHTS)
    assert {e.channel for e in events} == set(CHANNELS)
    assert {e.language for e in events} == {"en"}
    assert {e.rating for e in events} == {1, 2, 3, 4, 5}
    assert {e.customer_segment for e in events} == {"new", "returning", "loyal", "vip", None}
    channels = Counter(e.channel for e in events)
    assert channels.most_common(2)[0][0] == "web"
    assert channels["web"] + channels["app"] > 0.6 * len(events)
    per_category = Counter(e.product_category for e in events)
    assert per_category["Dresses"] > per_category["Layering"] > 0.01 * len(events)
    # Product ids belong to their category; popular products collect more reviews.
    prefixes: dict[str, set[str]] = {}
    for e in events:
        prefixes.setdefault(e.product_category, set()).add(e.product_id.split("-")[0])
    assert all(len(p) == 1 for p in prefixes.values())
    assert len(set.union(*prefixes.values())) == len(CATEGORY_WEIGHTS)
    products = Counter(e.product_id for e in events if e.product_category == "Dresses")
    assert 20 < len(products) <= 60
    assert products.most_common(1)[0][1] > 5 * min(products.values())


def test_event_times_span_the_stream_with_some_late_records() -> None:
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    events = valid(list(generate("steady", events=N, seed=1, start=start)))
    times = [e.event_time for e in events]
    assert all(t.tzinfo is not None for t in times)
    assert start - timedelta(minutes=2) <= min(times)
    assert max(times) <= start + timedelta(hours=48)
    assert max(times) - min(times) > timedelta(hours=47)
    latest = times[0]
    late = []
    for t in times[1:]:
        if t < latest:
            late.append(latest - t)
        latest = max(latest, t)
    assert 0.005 * N < len(late) < 0.015 * N
    assert max(late) <= timedelta(minutes=2)


def test_ratings_give_the_intended_class_and_texts_carry_it() -> None:
    events = valid(records("steady"))
    assert near(mix(events), (0.20, 0.20, 0.60), 0.015)
    by_class: dict[int | None, Counter[str]] = {}
    for e in events:
        by_class.setdefault(e.true_sentiment, Counter()).update(e.review_text.lower().split())
    assert by_class[1]["love"] > 5 * by_class[-1]["love"]
    assert by_class[-1]["disappointed"] + by_class[-1]["disappointed."] > 0
    assert by_class[0]["okay"] + by_class[0]["okay."] > 5 * (
        by_class[1]["okay"] + by_class[1]["okay."]
    )


def test_text_lengths_look_like_reviews() -> None:
    lengths = sorted(words(e) for e in valid(records("steady")))
    n = len(lengths)
    assert lengths[n // 20] >= 8
    assert 25 <= lengths[n // 2] <= 55
    assert lengths[19 * n // 20] <= 90
    assert statistics.pstdev(lengths) > 8  # a realistic spread, not one template length


def test_twenty_thousand_records_are_quick() -> None:
    began = time.perf_counter()
    assert sum(1 for _ in generate("bad-input", events=N, seed=2)) == N
    assert time.perf_counter() - began < 10  # about 0.5 s on one core; lenient for shared CI


# -- scenarios ---------------------------------------------------------------------------------


def test_scenarios_declare_what_they_change() -> None:
    assert set(SCENARIOS) == {"steady", "negative-surge", "prior-shift", "data-drift", "bad-input"}
    assert SCENARIOS["steady"].expected_alerts == frozenset()
    assert SCENARIOS["bad-input"].expected_alerts == frozenset()
    assert SCENARIOS["negative-surge"].expected_alerts == {("SentimentShift", "Dresses")}
    assert SCENARIOS["prior-shift"].expected_alerts == {("PriorShift", "all")}
    assert SCENARIOS["data-drift"].expected_alerts == {("DataDrift", "all")}
    for name, sc in SCENARIOS.items():
        assert sc.name == name
        assert not sc.expected_alerts & sc.tolerated_alerts
        assert (sc.change_at is None) == (not sc.expected_alerts)


@pytest.mark.parametrize("scenario", ["negative-surge", "prior-shift", "data-drift"])
def test_records_before_the_change_point_are_steady_ones(scenario: str) -> None:
    change = SCENARIOS[scenario].change_index(N)
    assert change == N // 2
    ours, steady = valid(records(scenario)[:change]), valid(records("steady")[:change])
    assert [dataclasses.replace(e, review_id="") for e in ours] == [
        dataclasses.replace(e, review_id="") for e in steady
    ]
    after = [dataclasses.replace(e, review_id="") for e in valid(records(scenario)[change:])]
    assert after != [
        dataclasses.replace(e, review_id="") for e in valid(records("steady")[change:])
    ]


def test_negative_surge_hits_one_category_from_the_change_point() -> None:
    recs = records("negative-surge")
    change = N // 2
    before, after = valid(recs[:change]), valid(recs[change:])
    dresses_before = [e for e in before if e.product_category == "Dresses"]
    dresses_after = [e for e in after if e.product_category == "Dresses"]
    assert len(dresses_after) > 1000
    assert abs(negative_share(dresses_before) - 0.20) < 0.04
    assert abs(negative_share(dresses_after) - 0.60) < 0.04
    others_after = [e for e in after if e.product_category != "Dresses"]
    assert near(mix(others_after), (0.20, 0.20, 0.60), 0.02)
    for category in CATEGORY_WEIGHTS:
        if category != "Dresses":
            share = negative_share([e for e in after if e.product_category == category])
            assert share < 0.32, category


def test_prior_shift_moves_every_category() -> None:
    recs = records("prior-shift")
    before, after = valid(recs[: N // 2]), valid(recs[N // 2 :])
    assert near(mix(before), (0.20, 0.20, 0.60), 0.02)
    assert near(mix(after), (0.50, 0.20, 0.30), 0.02)
    for category in CATEGORY_WEIGHTS:
        share = negative_share([e for e in after if e.product_category == category])
        assert 0.38 < share < 0.62, category
    # The category mix itself does not move.
    cats_before = Counter(e.product_category for e in before)
    cats_after = Counter(e.product_category for e in after)
    assert abs(cats_before["Dresses"] - cats_after["Dresses"]) < 0.02 * N


def test_data_drift_changes_texts_and_channels_but_not_sentiment() -> None:
    recs = records("data-drift")
    before, after = valid(recs[: N // 2]), valid(recs[N // 2 :])
    assert near(mix(before), mix(after), 0.02)
    ratio = statistics.median(map(words, after)) / statistics.median(map(words, before))
    assert 2.0 <= ratio <= 3.5
    channels_before = Counter(e.channel for e in before)
    channels_after = Counter(e.channel for e in after)
    assert channels_before["call"] + channels_before["chat"] < 0.1 * len(before)
    assert channels_after["call"] + channels_after["chat"] > 0.7 * len(after)
    transcripts = [e for e in after if e.channel in ("call", "chat")]
    assert all(
        e.review_text.startswith(("Customer", "Call", "Chat", "Phone", "Live")) for e in transcripts
    )
    # Long texts do not repeat a remark.
    for e in after[:500]:
        sentences = [s for s in e.review_text.split(". ") if len(s) > 30]
        assert len(sentences) == len(set(sentences)), e.review_text


def test_steady_stays_steady() -> None:
    events = valid(records("steady"))
    first, second = events[: len(events) // 2], events[len(events) // 2 :]
    assert near(mix(first), mix(second), 0.02)
    for half in (first, second):
        dresses = [e for e in half if e.product_category == "Dresses"]
        assert abs(negative_share(dresses) - 0.20) < 0.04


def test_a_custom_scenario_moves_its_own_category_at_its_own_point() -> None:
    sc = Scenario(
        "knits-surge", "Knits turn negative at 25%", change_at=0.25,
        affected_category="Knits", mix_after=(0.8, 0.1, 0.1),
    )  # fmt: skip
    recs = list(generate(sc, events=8_000, seed=5))
    before, after = valid(recs[:2_000]), valid(recs[2_000:])
    knits_after = [e for e in after if e.product_category == "Knits"]
    assert negative_share(knits_after) > 0.7
    assert negative_share([e for e in before if e.product_category == "Knits"]) < 0.35
    assert negative_share([e for e in after if e.product_category == "Dresses"]) < 0.3


@pytest.mark.parametrize(
    "changes",
    [
        {"change_at": 1.5},
        {"mix_before": (0.5, 0.5, 0.5)},
        {"mix_after": (-0.1, 0.5, 0.6)},
        {"affected_category": "Hats"},
        {"length_factor_after": 0.5},
        {"channel_mix_after": (("fax", 1.0),)},
        {"malformed_fraction": 2.0},
    ],
)
def test_bad_scenario_parameters_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"."):
        dataclasses.replace(SCENARIOS["steady"], **changes)  # type: ignore[arg-type]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        generate("tsunami")
    with pytest.raises(ValueError, match="events"):
        generate(events=-1)
    with pytest.raises(ValueError, match="timezone"):
        generate(start=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="max_text_bytes"):
        generate(max_text_bytes=10)


# -- malformed records -------------------------------------------------------------------------


def test_bad_input_is_steady_plus_five_percent_malformed_records() -> None:
    recs, steady = records("bad-input"), records("steady")
    bad = [r for r in recs if r.expected_reason is not None]
    assert len(bad) == N // 20
    # Every producer-side reason, evenly: 1000 records over 12 reasons.
    counts = Counter(r.expected_reason for r in bad)
    assert set(counts) == set(MALFORMED_REASONS) == set(Reason) - {Reason.SCORING_REJECTED}
    assert sorted(counts.values()) == [83] * 8 + [84] * 4
    # Spread over the stream, not bunched.
    spots = [i for i, r in enumerate(recs) if r.expected_reason is not None]
    for quarter in range(4):
        inside = [i for i in spots if quarter * N // 4 <= i < (quarter + 1) * N // 4]
        assert 200 <= len(inside) <= 300
    # The valid records are steady's, at the same places.
    for r, s in zip(recs, steady, strict=True):
        if r.event is not None:
            assert s.event is not None
            assert dataclasses.replace(r.event, review_id="") == dataclasses.replace(
                s.event, review_id=""
            )


def test_every_malformed_record_is_the_dead_letter_it_claims() -> None:
    for r in records("bad-input"):
        if r.expected_reason is None:
            continue
        out = decode_event(r.value, POS, RECEIVED)
        assert isinstance(out, DeadLetter), r.value[:200]
        assert out.reason == r.expected_reason, (out.detail, r.value[:200])
        assert r.key  # still keyed by the product the producer meant


def _doc(value: bytes) -> dict[str, object]:
    doc = json.loads(value)
    assert isinstance(doc, dict)
    return doc


def test_malformed_records_are_malformed_in_the_way_they_claim() -> None:
    """Structural checks, independent of the validator."""
    good_fields = set(valid(records("steady"))[0].to_json_dict()) | {"rating", "language"}
    good_fields |= {"customer_segment"}
    seen: Counter[tuple[Reason, str]] = Counter()
    for r in records("bad-input"):
        reason = r.expected_reason
        if reason is None:
            continue
        if reason is Reason.BAD_UTF8:
            with pytest.raises(UnicodeDecodeError):
                r.value.decode("utf-8")
            seen[reason, "bytes"] += 1
            continue
        text = r.value.decode("utf-8")
        if reason is Reason.NOT_JSON:
            with pytest.raises(json.JSONDecodeError):
                json.loads(text)
            seen[reason, "truncated" if text.startswith('{"') else "other"] += 1
            continue
        obj = json.loads(text)
        if reason is Reason.NOT_OBJECT:
            assert not isinstance(obj, dict)
            seen[reason, type(obj).__name__] += 1
            continue
        doc = _doc(r.value)
        if reason is Reason.UNSUPPORTED_VERSION:
            assert doc["schema_version"] != 1
        elif reason is Reason.MISSING_FIELD:
            required = ("review_id", "product_id", "product_category", "review_text",
                        "channel", "event_time")  # fmt: skip
            missing = [f for f in required if doc.get(f) is None]
            assert len(missing) == 1
            seen[reason, missing[0]] += 1
        elif reason is Reason.WRONG_TYPE:
            wrong = [
                name for name, kind in (("review_id", str), ("product_id", str),
                ("product_category", str), ("review_text", str), ("channel", str),
                ("event_time", str), ("rating", int))
                if not isinstance(doc[name], kind)
            ]  # fmt: skip
            assert len(wrong) == 1
            seen[reason, wrong[0]] += 1
        elif reason is Reason.INVALID_VALUE:
            rating = doc["rating"]
            assert (
                doc["channel"] not in CHANNELS
                or (isinstance(rating, int) and not 1 <= rating <= 5)
                or not str(doc["review_text"]).strip()
                or not str(doc["review_id"]).strip()
                or not str(doc["product_category"]).strip()
            )
        elif reason is Reason.OVERSIZE_TEXT:
            text_value = doc["review_text"]
            assert isinstance(text_value, str)
            assert len(text_value.encode("utf-8")) > 5_000
            seen[reason, "chars within limit" if len(text_value) <= 5_000 else "long"] += 1
        elif reason is Reason.BAD_TIMESTAMP:
            stamp = doc["event_time"]
            assert isinstance(stamp, str)
            try:
                parsed = datetime.fromisoformat(stamp)
            except ValueError:
                seen[reason, "unparseable"] += 1
            else:
                assert parsed.tzinfo is None
                seen[reason, "naive"] += 1
        elif reason is Reason.OVERSIZE_RECORD:
            unknown = {k: v for k, v in doc.items() if k not in good_fields}
            size = len(json.dumps(unknown, separators=(",", ":")).encode())
            assert len(unknown) > 32 or size > 16 * 1024
            seen[reason, "many" if len(unknown) > 32 else "large"] += 1
        elif reason is Reason.EVENT_TIME_OUT_OF_RANGE:
            stamp = doc["event_time"]
            assert isinstance(stamp, str)
            parsed = datetime.fromisoformat(stamp)
            assert parsed.year < 2000 or parsed.year > DEFAULT_START.year + 5
            seen[reason, "past" if parsed.year < 2000 else "future"] += 1
        elif reason is Reason.DUPLICATE_FIELD:
            pairs = json.loads(text, object_pairs_hook=lambda p: p)
            names = [k for k, _ in pairs]
            assert len(names) == len(set(names)) + 1
            seen[reason, "repeated"] += 1
    # The variants that matter are all there.
    for variant in [
        (Reason.BAD_UTF8, "bytes"), (Reason.NOT_JSON, "truncated"), (Reason.NOT_JSON, "other"),
        (Reason.NOT_OBJECT, "list"), (Reason.NOT_OBJECT, "int"), (Reason.NOT_OBJECT, "str"),
        (Reason.MISSING_FIELD, "review_text"), (Reason.MISSING_FIELD, "event_time"),
        (Reason.WRONG_TYPE, "rating"), (Reason.WRONG_TYPE, "product_id"),
        (Reason.OVERSIZE_TEXT, "chars within limit"), (Reason.OVERSIZE_TEXT, "long"),
        (Reason.BAD_TIMESTAMP, "naive"), (Reason.BAD_TIMESTAMP, "unparseable"),
        (Reason.OVERSIZE_RECORD, "many"), (Reason.OVERSIZE_RECORD, "large"),
        (Reason.EVENT_TIME_OUT_OF_RANGE, "past"), (Reason.EVENT_TIME_OUT_OF_RANGE, "future"),
        (Reason.DUPLICATE_FIELD, "repeated"),
    ]:  # fmt: skip
        assert seen[variant] > 0, variant


def test_the_text_limit_is_a_parameter() -> None:
    recs = list(generate("bad-input", events=4_000, seed=9, max_text_bytes=800))
    for r in recs:
        if r.event is not None:
            assert len(r.event.review_text.encode()) <= 800
        elif r.expected_reason is Reason.OVERSIZE_TEXT:
            out = decode_event(r.value, POS, RECEIVED, max_text_bytes=800)
            assert isinstance(out, DeadLetter)
            assert out.reason is Reason.OVERSIZE_TEXT
            assert len(r.value) < 2_000  # just over the limit, not a 5,000-byte text
    drift = valid(list(generate("data-drift", events=4_000, seed=9, max_text_bytes=500)))
    assert max(len(e.review_text.encode()) for e in drift) <= 500


# -- the shipped model reads the synthetic texts -------------------------------------------------


def test_the_shipped_model_reads_the_intended_class() -> None:
    """The demos and end-to-end tests rely on the model seeing what the scenarios change."""
    from endpoint.inference import default_model_dir
    from endpoint.model import SentimentModel

    model = SentimentModel.load(default_model_dir())
    for scenario in ("steady", "data-drift"):
        events = valid(records(scenario, 6_000))[3_000:]
        predicted = model.predict([e.review_text for e in events]).tolist()
        truth = [e.true_sentiment for e in events]
        for cls, floor in ((-1, 0.9), (0, 0.8), (1, 0.9)):
            hits = [p == cls for p, t in zip(predicted, truth, strict=True) if t == cls]
            assert sum(hits) / len(hits) >= floor, (scenario, cls)
    recs = records("negative-surge")
    dresses = [r.event for r in recs[N // 2 :] if r.event and r.event.product_category == "Dresses"]
    share = float((model.predict([e.review_text for e in dresses]) == -1).mean())
    assert share > 0.5
