"""What a streaming process loads: the runtime's modules and a monitor suite run over a
stream (baseline, windows, alerts) import none of the heavy libraries the streaming path
does not use. Each costs start-up time and memory in every worker: ``scipy.stats`` alone
about 47 MB and 0.6 s (it loads scipy's optimize, integrate, sparse and spatial)."""

from __future__ import annotations

import json
import subprocess
import sys

#: Never needed to stream: S3/Glue (awswrangler), deploy (sagemaker), training and reports.
HEAVY = (
    "awswrangler",
    "sagemaker",
    "scipy.stats",
    "scipy.optimize",
    "scipy.spatial",
    "sklearn",
    "matplotlib",
    "flaml",
    "shap",
    "jax",
    "onnxruntime",
)

_PROBE = """
import json, sys
from datetime import timedelta
import stream.app, stream.cli, stream.kafka_app, stream.kinesis_worker, sinks.lake
from endpoint.inference import default_model_dir
from endpoint.model import SentimentModel
from monitors import MonitorConfig, MonitorSuite
from monitors.simulate import DEFAULT_CATEGORIES, StreamSpec, batches, synthetic_stream
from stream.events import ScoredBatch, scored_table

model = SentimentModel.load(default_model_dir())
spec = StreamSpec(events=8000, seed=3, change_at=4000,
                  category_priors_after={"Dresses": (0.6, 0.15, 0.25)})
reviews = synthetic_stream(spec)
now = reviews[-1].event.event_time + timedelta(minutes=1)
suite = MonitorSuite(MonitorConfig(categories=DEFAULT_CATEGORIES), vocabulary=model.vocabulary)
raised = []
for b in batches(reviews, 500):
    raised += suite.observe(ScoredBatch.from_table(scored_table(b)), now)
print(json.dumps({"alerts": len(raised), "baseline": suite.baseline is not None,
                  "loaded": sorted(m for m in sys.modules)}))
"""


def test_the_streaming_path_loads_no_heavy_library() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=300
    )
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["baseline"] and probe["alerts"] > 0  # the suite ran its tests and alerted
    loaded = set(probe["loaded"])
    assert "monitors.shift" in loaded and "scipy.special" in loaded
    assert [m for m in HEAVY if m in loaded] == []
