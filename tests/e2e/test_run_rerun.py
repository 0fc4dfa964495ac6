"""``sentiment-monitor run`` twice into the same lake, with age-based flushes and different
micro-batch sizes cutting the two runs' files differently: the second run replaces the first,
nothing is stored twice."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from stream.synthetic import generate

pytestmark = pytest.mark.e2e

EVENTS = 4_000
SEED = 5


def run(tmp_path: Path, rate: str, markers: str, batch: int) -> None:
    cmd = [
        sys.executable, "-m", "stream", "run",
        "--scenario", "steady", "--events", str(EVENTS), "--seed", str(SEED), "--rate", rate,
        "--lake", str(tmp_path / "lake"), "--alerts", str(tmp_path / "alerts.jsonl"),
        "--metrics-port", "0", "--no-progress",
    ]  # fmt: skip
    env = {
        **os.environ,
        "SENTIMENT_LAKE__BUFFER_MAX_AGE_S": "0.05",
        "SENTIMENT_LAKE__REWIND_MARKERS": markers,
        "SENTIMENT_BATCH__MAX_EVENTS": str(batch),
    }
    done = subprocess.run(
        cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # every file is committed at the end, and the commits deleted their pending markers
    assert not list((tmp_path / "lake").rglob("*.pending"))
    assert (tmp_path / "lake" / "_pending").is_dir() == (markers == "trust")


@pytest.mark.parametrize("markers", ["off", "trust"])
def test_a_rerun_replaces_the_earlier_run(tmp_path: Path, markers: str) -> None:
    """With ``trust`` too: the earlier run's files are committed, so no marker names them, and
    the replay's rewind lists the lake."""
    valid = [r.event.review_id for r in generate("steady", events=EVENTS, seed=SEED) if r.event]
    # Different batch sizes cut the files differently whatever the timing: with one size, both
    # runs may cut at every batch, and the replay hands both the same chunks (a batch's worth).
    run(tmp_path, "4000", markers, 2_000)
    first = {p.name for p in (tmp_path / "lake").rglob("*.parquet")}
    run(tmp_path, "2500", markers, 300)
    second = {p.name for p in (tmp_path / "lake").rglob("*.parquet")}
    assert first != second  # cut differently: the earlier files were replaced, not overwritten
    table = ds.dataset(tmp_path / "lake" / "reviews", format="parquet").to_table(
        columns=["review_id"]
    )
    counts = Counter(table.column("review_id").to_pylist())
    assert sorted(counts) == sorted(valid)
    assert set(counts.values()) == {1}
