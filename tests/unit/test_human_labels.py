"""Accuracy from human labels: per sample, the audit's estimate and interval, per window."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from monitors.human import NO_LABEL, HumanLabels, ground_truth_windows, wilson_interval


def _labels() -> HumanLabels:
    # audit: 4 labels, 3 right; low_confidence: 2 labels, 0 right; alert: 1 right
    return HumanLabels.from_columns(
        predicted=[1, 1, -1, 0, 1, -1, 0],
        label=[1, 1, -1, 1, -1, 0, 0],
        category=["Dresses", "Dresses", "Knits", "Knits", "Dresses", "Knits", "Knits"],
        reason=["audit"] * 4 + ["low_confidence"] * 2 + ["alert"],
        inclusion_probability=[0.1] * 4 + [1.0] * 3,
        event_time_s=[0, 10, 3600, 3700, 20, 3650, 7300],
        labeled_at_s=[9000, 9100, 9200, 9300, 9400, 9500, 9600],
    )


def test_wilson_interval_matches_scipy_for_integer_counts() -> None:
    ci = stats.binomtest(3, 4).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson_interval(0.75, 4, 0.95)
    assert low == pytest.approx(ci.low, abs=1e-12)
    assert high == pytest.approx(ci.high, abs=1e-12)
    assert wilson_interval(0.5, 0, 0.95) == (0.0, 1.0)


def test_samples_are_reported_apart() -> None:
    by = _labels().by_sample()
    assert set(by) == {"alert", "audit", "low_confidence"}
    assert (by["audit"].n, by["audit"].accuracy) == (4, 0.75)
    # audit confusion: positive 2/2, negative 1/1, neutral predicted for a positive.
    # F1: negative 1, neutral 0 (fp 1), positive 2*2/(4+0+1) = 0.8 -> mean 0.6
    assert by["audit"].macro_f1 == pytest.approx(0.6, abs=1e-12)
    assert (by["low_confidence"].n, by["low_confidence"].accuracy) == (2, 0.0)
    assert by["alert"].accuracy == 1.0


def test_audited_accuracy_uses_only_the_audit_sample() -> None:
    est = _labels().audited_accuracy(0.95)
    assert est is not None
    assert (est.value, est.n) == (0.75, 4)
    assert est.effective_n == pytest.approx(4.0, abs=1e-12)
    assert (est.lower, est.upper) == pytest.approx(wilson_interval(0.75, 4, 0.95), abs=1e-12)


def test_audited_class_shares() -> None:
    # audit labels: 1, 1, -1, 1 (equal weights) -> negative 1/4, neutral 0, positive 3/4
    assert _labels().audited_class_shares() == (0.25, 0.0, 0.75)
    weighted = HumanLabels.from_columns(
        [1, 1], [1, -1], ["A", "A"], ["audit", "audit"], [0.5, 0.1], [0, 0], [1, 1]
    )
    shares = weighted.audited_class_shares()
    assert shares == pytest.approx((10 / 12, 0.0, 2 / 12), abs=1e-12)
    none = HumanLabels.from_columns([1], [1], ["A"], ["alert"], [1.0], [0], [0])
    assert none.audited_class_shares() is None


def test_unequal_inclusion_probabilities_weight_the_estimate() -> None:
    labels = HumanLabels.from_columns(
        [1, 1], [1, 0], ["A", "A"], ["audit", "audit"], [0.5, 0.1], [0, 0], [1, 1]
    )
    est = labels.audited_accuracy()
    assert est is not None
    # weights 2 and 10: (2 * 1 + 10 * 0) / 12; Kish n = 12^2 / (4 + 100)
    assert est.value == pytest.approx(2 / 12, abs=1e-12)
    assert est.effective_n == pytest.approx(144 / 104, abs=1e-12)


def test_by_window_agreement_and_age() -> None:
    labels = _labels()
    windows = labels.by_window(3600)
    assert sorted(windows) == [0.0, 3600.0, 7200.0]
    assert windows[0.0].n == 3
    assert windows[0.0].accuracy == pytest.approx(2 / 3)
    assert windows[3600.0].n == 3
    assert windows[3600.0].accuracy == pytest.approx(1 / 3)
    assert (windows[7200.0].n, windows[7200.0].accuracy) == (1, 1.0)
    assert labels.agreement() == {"Dresses": (3, pytest.approx(2 / 3)), "Knits": (4, 0.5)}
    assert labels.newest_label_s() == 9600.0
    assert HumanLabels.from_columns([], [], [], [], [], [], []).audited_accuracy() is None
    assert math.isnan(
        HumanLabels.from_columns([], [], [], [], [], [], []).newest_label_s() or math.nan
    )


def test_bad_columns() -> None:
    with pytest.raises(ValueError, match="one value"):
        HumanLabels.from_columns([1], [], [], [], [], [], [])
    with pytest.raises(ValueError, match="inclusion"):
        HumanLabels.from_columns([1], [1], ["A"], ["audit"], [0.0], [0], [0])
    with pytest.raises(ValueError, match="window"):
        _labels().by_window(0)


_N = NO_LABEL


def test_ground_truth_windows_take_the_persons_label_over_the_rating() -> None:
    first, second = ground_truth_windows(
        100.0,
        [10, 20, 30, 40, 150, 160, 170, 250],
        [1, 1, 0, -1, 1, 1, -1, 0],
        [1, _N, 1, -1, 1, _N, _N, _N],
        [_N, 0, 0, _N, -1, 1, _N, _N],
        ["", "audit", "low_confidence", "", "audit", "audit", "", ""],
        [1.0, 0.5, 1.0, 1.0, 0.5, 0.25, 1.0, 1.0],
    )  # the window at 200 has no label: left out
    # window [0, 100): truths 1 (rating), 0 (person), 0 (person over a 5-star rating), -1
    assert first.start_s == 0.0
    assert first.confusion.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert (first.human, first.rated) == (2, 2)
    assert first.accuracy == 0.75
    assert first.macro_f1 == pytest.approx(7 / 9)  # F1 1, 2/3, 2/3
    assert first.class_shares == (0.25, 0.5, 0.25)
    assert first.label_drift is None and first.accuracy_drift is None
    # the audit sample apart: one audited review, wrong
    assert first.audited is not None
    z2 = stats.norm.ppf(0.975) ** 2
    assert (first.audited.value, first.audited.lower, first.audited.n) == (0.0, 0.0, 1)
    assert first.audited.upper == pytest.approx(z2 / (1 + z2))
    assert first.selected is not None
    assert (first.selected.n, first.selected.accuracy) == (1, 1.0)
    # window [100, 200): the person's -1 over a 5-star rating; the unlabelled review left out
    assert second.start_s == 100.0
    assert second.confusion.tolist() == [[0, 0, 0], [0, 0, 0], [1, 0, 1]]
    assert (second.human, second.rated, second.accuracy) == (2, 0, 0.5)
    assert second.class_shares == (0.5, 0.0, 0.5)
    assert second.selected is None
    assert second.audited is not None
    # weights 2 (wrong) and 4 (right): 4/6; Kish n = 6^2 / (4 + 16)
    assert second.audited.value == pytest.approx(2 / 3)
    assert second.audited.effective_n == pytest.approx(1.8)


def test_ground_truth_windows_test_against_the_baseline() -> None:
    first, _second = ground_truth_windows(
        100.0,
        [10, 20, 30, 40, 150, 160, 170, 250],
        [1, 1, 0, -1, 1, 1, -1, 0],
        [1, _N, 1, -1, 1, _N, _N, _N],
        [_N, 0, 0, _N, -1, 1, _N, _N],
        ["", "audit", "low_confidence", "", "audit", "audit", "", ""],
        [1.0, 0.5, 1.0, 1.0, 0.5, 0.25, 1.0, 1.0],
        reference_counts=[20, 20, 60],
        reference_confusion=[[8, 1, 1], [1, 8, 1], [1, 1, 8]],
        alpha=0.5,
    )
    assert first.label_drift is not None and first.accuracy_drift is not None
    assert first.label_drift.count == 4
    assert first.label_drift.current.tolist() == [0.25, 0.5, 0.25]
    assert first.label_drift.tvd == pytest.approx(0.35)
    assert first.accuracy_drift.baseline_accuracy == pytest.approx(0.8)
    assert (first.accuracy_drift.accuracy, first.accuracy_drift.count) == (0.75, 4)


def test_ground_truth_windows_refuse_bad_columns() -> None:
    with pytest.raises(ValueError, match="window_s"):
        ground_truth_windows(0.0, [], [], [], [], [], [])
    with pytest.raises(ValueError, match="one value per review"):
        ground_truth_windows(10.0, [1.0], [1], [1, 1], [_N], [""], [1.0])
    with pytest.raises(ValueError, match="inclusion"):
        ground_truth_windows(10.0, [1.0], [1], [_N], [1], ["audit"], [0.0])
    assert ground_truth_windows(10.0, [1.0], [1], [_N], [_N], [""], [1.0]) == []
