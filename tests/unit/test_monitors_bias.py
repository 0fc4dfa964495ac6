"""Clarify pre-training bias metrics: hand-computed values, Clarify's quirks, report shape."""

from __future__ import annotations

import json
import math

import pytest

from monitors.bias import DESCRIPTIONS, METRICS, FacetCounts, clarify_analysis, facet_metrics


def test_metrics_hand_computed() -> None:
    # facet d: 10 reviews, 3 positive; the rest a: 30 reviews, 18 positive
    got = facet_metrics(FacetCounts(10, 3), FacetCounts(30, 18))
    pa, pd = (0.4, 0.6), (0.7, 0.3)
    m = (0.55, 0.45)
    assert got["CI"] == pytest.approx((30 - 10) / 40)
    assert got["DPL"] == pytest.approx(0.6 - 0.3)
    assert got["KL"] == pytest.approx(0.4 * math.log(0.4 / 0.7) + 0.6 * math.log(0.6 / 0.3))
    kl_am = sum(a * math.log(a / b) for a, b in zip(pa, m, strict=True))
    kl_dm = sum(a * math.log(a / b) for a, b in zip(pd, m, strict=True))
    assert got["JS"] == pytest.approx(0.5 * (kl_am + kl_dm))
    assert got["LP"] == pytest.approx(math.sqrt(0.3**2 + 0.3**2))
    assert got["TVD"] == pytest.approx(0.3)
    assert got["KS"] == pytest.approx(0.3)


def test_clarify_quirk_zero_share_values_are_dropped() -> None:
    # facet d has no positive label: Clarify keeps only the common non-zero value
    # ("not positive": Pa 0.4, Pd 1.0) without renormalising, so KL is negative
    got = facet_metrics(FacetCounts(10, 0), FacetCounts(30, 18))
    assert got["KL"] == pytest.approx(0.4 * math.log(0.4))
    assert got["KL"] < 0  # type: ignore[operator]
    assert got["TVD"] == pytest.approx(0.5 * 0.6)
    assert got["KS"] == pytest.approx(0.6)
    assert got["DPL"] == pytest.approx(0.6)  # DPL does not align supports


def test_clarify_quirk_no_common_value_is_an_error() -> None:
    got = facet_metrics(FacetCounts(10, 10), FacetCounts(30, 0))
    assert got["CI"] == pytest.approx(0.5)
    assert got["KL"] == "No instance of common facet found, dataset may be too small"


def test_empty_facet_is_an_error() -> None:
    got = facet_metrics(FacetCounts(0, 0), FacetCounts(30, 0))
    assert set(got.values()) == {"Facet set is empty."}


def test_analysis_json_shape() -> None:
    out = clarify_analysis({"Dresses": FacetCounts(10, 3), "Knits": FacetCounts(30, 18)})
    json.dumps(out)  # JSON-able
    section = out["pre_training_bias_metrics"]
    assert section["label"] == "sentiment"
    assert section["label_value_or_threshold"] == "1"
    dresses, knits = section["facets"]["product_category"]
    assert dresses["value_or_threshold"] == "Dresses"
    assert [m["name"] for m in dresses["metrics"]] == list(METRICS)
    assert dresses["metrics"][0] == {
        "name": "CI",
        "description": "Class Imbalance (CI)",
        "value": pytest.approx(0.5),
    }
    # one-vs-rest: Knits against Dresses is the mirror image
    assert knits["metrics"][1]["value"] == pytest.approx(-0.3)
    assert DESCRIPTIONS["KL"] == "Kullback-Liebler Divergence (KL)"


def test_analysis_reports_errors_like_clarify() -> None:
    out = clarify_analysis({"Dresses": FacetCounts(10, 10), "Knits": FacetCounts(30, 0)})
    kl = out["pre_training_bias_metrics"]["facets"]["product_category"][0]["metrics"][3]
    assert kl["name"] == "KL" and kl["value"] is None and "common facet" in kl["error"]


def test_bad_counts_raise() -> None:
    with pytest.raises(ValueError, match="positive"):
        FacetCounts(3, 4)
