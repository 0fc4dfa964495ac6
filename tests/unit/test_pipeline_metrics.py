"""The table of pipeline metrics and the typed attributes of ``PipelineMetrics`` agree: every
row has its annotation of the same kind, and every row registers one metric family."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from stream.metrics import _METRICS, PipelineMetrics


def test_every_row_is_an_annotated_attribute_of_its_kind() -> None:
    annotated = {
        name: kind
        for name, kind in PipelineMetrics.__annotations__.items()
        if kind in ("Counter", "Gauge", "Histogram")
    }
    assert annotated == {row.attribute: row.kind.__name__ for row in _METRICS}
    metrics = PipelineMetrics(["books"])
    for row in _METRICS:
        assert type(getattr(metrics, row.attribute)) is row.kind


def test_rows_are_unique_and_only_histograms_have_buckets() -> None:
    assert len({row.attribute for row in _METRICS}) == len(_METRICS) == 19
    assert len({row.name for row in _METRICS}) == len(_METRICS)
    for row in _METRICS:
        assert row.kind in (Counter, Gauge, Histogram)
        assert (row.buckets is not None) == (row.kind is Histogram), row.name
    metrics = PipelineMetrics(["books"])
    families = {m.name for m in metrics.registry.collect()}
    assert families == {row.name.removesuffix("_total") for row in _METRICS}
