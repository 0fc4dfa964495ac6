"""What a streaming process loads: the runtime's modules and a monitor suite run over a
stream (baseline, windows, alerts), and the ``run`` command end to end, import none of the
heavy libraries the streaming path does not use. Each costs start-up time and memory in every
worker: ``scipy.stats`` alone about 47 MB and 0.6 s (it loads scipy's optimize, integrate,
sparse and spatial), pandas 40 MB and 0.8 s (pyarrow loads it on its first conversion unless
:func:`stream.app.keep_pandas_unloaded` ran), aiobotocore 9 MB (SNS only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.settings_checks import fresh_process_env

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

#: Not needed by the embedded path either (a local lake, no SNS receiver).
NOT_FOR_A_LOCAL_LAKE = ("pandas", "aiobotocore", "boto3")

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


_RUN = """
import atexit, json, runpy, sys

def report():
    import pyarrow as pa
    print(json.dumps({"loaded": sorted(sys.modules), "pool": pa.default_memory_pool().backend_name}))

atexit.register(report)
sys.argv = ["sentiment-monitor", "run", "--events", "3000", "--lake", sys.argv[1],
            "--alerts", sys.argv[2], "--metrics-port", "0", "--no-progress"]
runpy.run_module("stream", run_name="__main__")  # as `python -m stream run ...`
"""


def test_the_run_command_loads_neither_pandas_nor_boto_and_uses_the_system_allocator(
    tmp_path: Path,
) -> None:
    lake, alerts = tmp_path / "lake", tmp_path / "alerts.jsonl"
    out = subprocess.run(
        [sys.executable, "-c", _RUN, str(lake), str(alerts)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        cwd=tmp_path,
        env=fresh_process_env(),
    )
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(list(lake.glob("reviews/dt=*/product_category=*/*.parquet"))) > 0  # it ran
    loaded = set(probe["loaded"])
    assert "pyarrow.parquet" in loaded and "monitors.shift" in loaded
    assert [m for m in (*HEAVY, *NOT_FOR_A_LOCAL_LAKE) if m in loaded] == []
    assert probe["pool"] == "system"


_PANDAS = """
import json, sys
import pyarrow as pa
from stream.app import keep_pandas_unloaded
from stream.settings import Settings

keep_pandas_unloaded(Settings(lake_path=sys.argv[1]))
lists = pa.table({"n": [1, None, 3], "s": ["a", "b", None]})
import numpy as np
arrays = pa.array(np.arange(3))
before = "pandas" in sys.modules

import pandas as pd
frame = pd.DataFrame({"n": [1.5, None], "s": ["x", None],
                      "t": pd.to_datetime(["2026-01-01", "2026-01-02"], utc=True)})
series = pa.array(frame["t"])  # pandas objects convert as before
table = pa.table(frame)
back = pa.Table.from_pandas(frame, preserve_index=False).to_pandas()
print(json.dumps({
    "before": before,
    "lists": lists.to_pylist(),
    "series": str(series.type),
    "table": [str(t) for t in table.schema.types],
    "round_trip": back.equals(frame),
}))
"""


def _conversions(lake: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _PANDAS, lake],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=fresh_process_env(),
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_pyarrow_probes_no_pandas_yet_converts_pandas_objects_as_before() -> None:
    # a local lake: pyarrow converts lists and arrays without loading pandas; an S3 lake
    # (awswrangler loads pandas anyway) leaves pyarrow as it is: the reference
    primed, reference = _conversions("lake"), _conversions("s3://bucket/lake")
    assert primed.pop("before") is False and reference.pop("before") is True
    assert primed["lists"] == [{"n": 1, "s": "a"}, {"n": None, "s": "b"}, {"n": 3, "s": None}]
    assert primed["round_trip"] is True
    assert primed == reference
