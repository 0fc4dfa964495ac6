"""Readings declared as data: one Reading type for the whole project, one row per metric."""

from __future__ import annotations

from pathlib import Path

import stream.metrics
from monitors import MonitorConfig
from monitors.parts import SuiteParts
from monitors.readings import METRICS, Metric, Reading, collect
from stream.endpoint_client import EndpointScorer
from stream.settings import EndpointSettings

ROOT = Path(__file__).parents[2]


def test_one_reading_type() -> None:
    assert stream.metrics.Reading is Reading
    scorer = EndpointScorer(EndpointSettings())
    assert all(isinstance(r, Reading) for r in scorer.readings())
    assert [r.name for r in scorer.readings()] == [
        "sentiment_endpoint_circuit_open",
        "sentiment_endpoint_circuit_opened_total",
    ]


def test_every_metric_is_one_documented_row() -> None:
    names = [m.name for m in METRICS]
    assert len(names) == len(set(names))
    catalog = (ROOT / "docs" / "metrics.md").read_text()
    local = (ROOT / "monitors" / "README.md").read_text()
    for m in METRICS:
        assert f"`{m.name}`" in catalog, m.name
        assert m.name.removesuffix("_lower").removesuffix("_upper") in local, m.name
        assert (m.kind == "counter") == m.name.endswith("_total"), m.name


def test_a_fresh_suite_reports_its_counters_and_no_window_yet() -> None:
    parts = SuiteParts(MonitorConfig(categories=("Dresses",)))
    got = {(r.name, tuple(sorted(r.labels.items()))): r.value for r in collect(METRICS, parts)}
    assert got[("sentiment_monitor_events_total", ())] == 0.0
    assert got[("sentiment_baseline_ready", ())] == 0.0
    assert ("sentiment_monitor_watermark_timestamp_seconds", ()) not in got
    assert not any(name == "sentiment_feature_psi" for name, _ in got)
    # 3 sliding windows x (all, Dresses, other): counts but no shares while empty
    reviews = [k for k in got if k[0] == "sentiment_window_reviews"]
    assert len(reviews) == 9
    assert not any(k[0] == "sentiment_window_share" for k in got)


def test_a_new_metric_is_one_row() -> None:
    row = Metric(
        "sentiment_monitor_batches_total",
        "Batches the monitors saw.",
        "counter",
        ("kind",),
        lambda p: iter([(("all",), float(p.counters.batches))]),
    )
    parts = SuiteParts(MonitorConfig(categories=("Dresses",)))
    parts.counters.batches = 7
    assert collect((row,), parts) == [
        Reading("sentiment_monitor_batches_total", "Batches the monitors saw.", "counter",
                {"kind": "all"}, 7.0)
    ]  # fmt: skip
