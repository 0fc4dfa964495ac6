"""Label cardinality is bounded: 5,000 distinct unknown product categories flooded through the
pipeline core (in-process model, monitors, metrics) all become ``other``, and the number of
exposed series stays within the budget of docs/metrics.md, whatever the input."""

from __future__ import annotations

import json
from collections import Counter

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from stream.app import build_monitor, run_pipeline
from stream.events import OTHER_CATEGORY as OTHER
from stream.metrics import PipelineMetrics, ReadingsCollector, ReadingSource
from stream.settings import Settings
from stream.sources import ReplaySource
from stream.synthetic import generate

EVENTS = 5_000
#: series budget of one process with the default categories (docs/metrics.md)
BUDGET = 900


def records(events: int, *, unknown_categories: bool) -> list[tuple[bytes, bytes]]:
    out = []
    for i, r in enumerate(generate("steady", events=events, seed=5)):
        doc = json.loads(r.value)
        if unknown_categories:
            doc["product_category"] = f"unlisted-category-{i:05d}"
        out.append((r.key, json.dumps(doc).encode()))
    return out


async def exposed(recs: list[tuple[bytes, bytes]]) -> list[Sample]:
    """Every ``sentiment_*`` sample the process would expose after replaying ``recs``."""
    settings = Settings()
    metrics = PipelineMetrics(settings.categories)
    monitor = build_monitor(settings)
    assert isinstance(monitor, ReadingSource)
    metrics.registry.register(ReadingsCollector(monitor))
    pipeline = await run_pipeline(
        settings,
        ReplaySource(recs, name="flood"),
        [],
        source_name="replay",
        monitor=monitor,
        metrics=metrics,
        serve_metrics=False,
    )
    # the run's summary keeps what it counts per category as bounded as the metrics
    assert set(pipeline.summary.mix) <= {*settings.categories, OTHER}
    assert sum(sum(c.values()) for c in pipeline.summary.mix.values()) == pipeline.summary.scored
    text = generate_latest(metrics.registry).decode()
    return [
        s
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("sentiment_") and not s.name.endswith("_created")
    ]


async def test_unknown_categories_are_exported_as_other() -> None:
    samples = await exposed(records(EVENTS, unknown_categories=True))
    allowed = {*Settings().categories, OTHER, "all"}

    categories = {s.labels["product_category"] for s in samples if "product_category" in s.labels}
    assert categories <= allowed
    assert OTHER in categories
    scored = Counter[str]()
    for s in samples:
        if s.name == "sentiment_reviews_scored_total":
            scored[s.labels["product_category"]] += int(s.value)
    assert scored == {OTHER: EVENTS}
    # No label anywhere takes more values than the allow-list (review ids, texts, categories
    # as given never leak into a label); histogram bucket bounds are fixed by the code.
    values: dict[str, set[str]] = {}
    for s in samples:
        for k, v in s.labels.items():
            if k != "le":
                values.setdefault(k, set()).add(v)
    assert all(len(v) <= len(allowed) for v in values.values()), {
        k: len(v) for k, v in values.items()
    }
    assert len(samples) <= BUDGET


async def test_series_count_does_not_grow_with_unknown_categories() -> None:
    """A stream of known categories fills every category's series; the flood of unknown ones
    exposes no more than that, and both stay within the budget."""
    known = await exposed(records(EVENTS, unknown_categories=False))
    flood = await exposed(records(EVENTS, unknown_categories=True))
    assert len(flood) <= len(known) <= BUDGET
