"""The main job as a user runs it: ``sentiment-monitor run --scenario X``.

For each scenario the test regenerates the same seeded stream, runs the CLI in a subprocess,
scrapes its /metrics while it lingers, stops it with SIGTERM, and checks from the lake files
that every valid event is there exactly once, every invalid one is a dead letter with the
right reason, and the alerts match what the scenario changes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream.synthetic import SCENARIOS, generate
from tests.servers.ports import free_port

pytestmark = pytest.mark.e2e

EVENTS = 20_000
SEED = 11


def scrape(port: int) -> dict[str, float]:
    """Samples of /metrics as {'name{label="v",...}': value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def run_cli(tmp_path: Path, scenario: str) -> tuple[dict[str, float], str]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "stream", "run",
        "--scenario", scenario, "--events", str(EVENTS), "--seed", str(SEED),
        "--lake", str(tmp_path / "lake"), "--alerts", str(tmp_path / "alerts.jsonl"),
        "--metrics-port", str(port), "--no-progress", "--linger", "120",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    key = 'sentiment_records_received_total{source="replay"}'
    samples: dict[str, float] = {}
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                samples = scrape(port)
            except OSError:
                samples = {}
            if samples.get(key) == EVENTS:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"run did not finish in time; last samples {samples.get(key)}")
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    return samples, output


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_run_scenario_end_to_end(tmp_path: Path, scenario: str) -> None:
    records = list(generate(scenario, events=EVENTS, seed=SEED))
    valid = [r.event.review_id for r in records if r.event is not None]
    invalid = Counter(str(r.expected_reason) for r in records if r.expected_reason is not None)

    samples, output = run_cli(tmp_path, scenario)

    # Every valid event in the lake exactly once, with the Hive partitions it belongs to.
    lake = ds.dataset(tmp_path / "lake" / "reviews", format="parquet", partitioning="hive")
    table = lake.to_table(columns=["review_id", "product_category", "dt", "sentiment"])
    ids = table.column("review_id").to_pylist()
    assert len(ids) == len(set(ids)) == len(valid)
    assert set(ids) == set(valid)

    # Every invalid record is a dead letter with the right reason.
    dlq_dir = tmp_path / "lake" / "dlq"
    if invalid:
        dlq = ds.dataset(dlq_dir, format="parquet", partitioning="hive").to_table()
        assert Counter(dlq.column("reason").to_pylist()) == invalid
    else:
        assert not dlq_dir.exists()

    # The metrics endpoint agrees with the lake.
    scored = sum(v for k, v in samples.items() if k.startswith("sentiment_reviews_scored_total{"))
    assert scored == len(valid)
    for reason, n in invalid.items():
        assert samples[f'sentiment_dead_letters_total{{reason="{reason}"}}'] == n

    # The alerts match the scenario: what it changes fires, nothing else does.
    alerts = (
        [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
        if (tmp_path / "alerts.jsonl").exists()
        else []
    )
    fired = {(a["name"], a["category"]) for a in alerts if a["status"] == "firing"}
    expected = set(SCENARIOS[scenario].expected_alerts)
    assert expected <= fired, output
    unexpected = {f for f in fired if f[0] in {"SentimentShift", "DataDrift", "PriorShift"}}
    assert unexpected - expected - set(SCENARIOS[scenario].tolerated_alerts) == set(), output
    for name, category in expected:
        assert f"{name} [{category}]" in output
    # The same alerts are in the lake's alerts table (every path writes both).
    if alerts:
        stored = ds.dataset(tmp_path / "lake" / "alerts", format="parquet", partitioning="hive")
        assert set(stored.to_table().column("alert_id").to_pylist()) == {
            a["alert_id"] for a in alerts
        }


def test_sigterm_mid_run_stops_cleanly_and_loses_no_accepted_event(tmp_path: Path) -> None:
    """SIGTERM while the replay streams: the run stops early, exits 0, and every record it
    accepted (a prefix of the stream) is in the lake, flushed, exactly once."""
    records = list(generate("bad-input", events=EVENTS, seed=SEED))
    port = free_port()
    cmd = [
        sys.executable, "-m", "stream", "run", "--scenario", "bad-input",
        "--events", str(EVENTS), "--seed", str(SEED), "--rate", "2000",
        "--lake", str(tmp_path / "lake"), "--alerts", str(tmp_path / "alerts.jsonl"),
        "--metrics-port", str(port), "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        key = 'sentiment_records_received_total{source="replay"}'
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if scrape(port).get(key, 0) >= 3_000:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    lake = ds.dataset(tmp_path / "lake" / "reviews", format="parquet", partitioning="hive")
    ids = lake.to_table(columns=["review_id"]).column("review_id").to_pylist()
    dead = ds.dataset(tmp_path / "lake" / "dlq", format="parquet", partitioning="hive")
    offsets = [int(o) for o in dead.to_table().column("source_offset").to_pylist()]
    accepted = len(ids) + len(offsets)
    assert 3_000 <= accepted < EVENTS  # stopped early, after the check point
    assert len(ids) == len(set(ids))
    prefix = records[:accepted]
    assert set(ids) == {r.event.review_id for r in prefix if r.event is not None}
    assert sorted(offsets) == [i for i, r in enumerate(prefix) if r.event is None]
