"""No review text reaches a log, at any level: the embedded pipeline run at DEBUG (every
logger, faust and aiokafka included) over valid reviews, dead letters of every kind and a
scoring failure (the real endpoint server rejecting every request) never logs the text."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream.app import run_pipeline
from stream.lake_factory import build_lake_sink
from stream.pipeline import Pipeline
from stream.settings import BatchSettings, EndpointSettings, MonitorSettings, Settings
from stream.sources import ReplaySource
from tests.servers.endpoint import EndpointServer

pytestmark = pytest.mark.integration

MARKER = "qzxv-private-review-text-7c41"
LOGGERS = ("", "stream", "sinks", "monitors", "endpoint", "faust", "aiokafka", "botocore")


def event(i: int, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": 1,
        "review_id": f"r-{i}",
        "product_id": f"p-{i % 7}",
        "product_category": "Dresses",
        "review_text": f"{MARKER} the fabric is lovely, number {i}",
        "channel": "web",
        "event_time": f"2026-03-01T10:{i % 60:02d}:00Z",
        "rating": 1 + i % 5,
    }
    doc.update(changes)
    return doc


def records() -> list[tuple[bytes, bytes]]:
    """Valid reviews and every kind of record that becomes a dead letter, each with the
    marker in its text."""
    out = [json.dumps(event(i)).encode() for i in range(300)]
    out += [
        json.dumps(event(1000, channel="fax")).encode(),
        json.dumps(event(1001, rating=9)).encode(),
        json.dumps(event(1002, event_time=f"not a time {MARKER}")).encode(),
        json.dumps(event(1003, review_text=MARKER * 1000)).encode(),
        json.dumps({k: v for k, v in event(1004).items() if k != "review_id"}).encode(),
        json.dumps(event(1005, review_text=[MARKER])).encode(),
        f'{{"review_text": "{MARKER}", "broken'.encode(),
        MARKER.encode() + b"\xff\xfe not UTF-8",
        json.dumps([MARKER]).encode(),
    ]
    return [(b"p", value) for value in out]


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog


def assert_no_marker(caplog: pytest.LogCaptureFixture) -> None:
    assert caplog.records, "nothing was logged: the capture is not working"
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        assert MARKER not in text, f"{record.name} {record.levelname}: {text[:300]}"
    assert MARKER not in caplog.text


def settings_for(tmp_path: Path, **changes: Any) -> Settings:
    return Settings(
        lake_path=str(tmp_path / "lake"),
        alerts_path=tmp_path / "alerts.jsonl",
        metrics_port=0,
        max_text_bytes=5_000,
        batch=BatchSettings(max_events=64, max_wait_ms=20, queue_batches=2),
        monitor=MonitorSettings(baseline_events=100, min_count=10),
        **changes,
    )


async def replay_into_lake(settings: Settings, recs: list[tuple[bytes, bytes]]) -> Pipeline:
    """Replay ``recs`` through the pipeline ``settings`` describe, into its lake."""
    return await run_pipeline(
        settings, ReplaySource(recs), [build_lake_sink(settings)], source_name="replay",
        serve_metrics=False,
    )  # fmt: skip


async def test_in_process_run_with_dead_letters_logs_no_review_text(
    tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    recs = records()
    settings = settings_for(tmp_path)
    logging.getLogger("stream").debug("capture check")
    pipeline = await replay_into_lake(settings, recs)
    summary = pipeline.summary
    assert summary.records_in == len(recs)
    assert summary.scored == 300
    assert sum(summary.dead_letters.values()) == len(recs) - 300
    assert_no_marker(debug_logs)


async def test_scoring_failures_log_no_review_text(
    tmp_path: Path, debug_logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    recs = records()
    with EndpointServer("--endpoint-name", "another-endpoint", workers=1) as other:
        endpoint = EndpointSettings(mode="sagemaker", name="review-sentiment", url=other.url)
        settings = settings_for(tmp_path, endpoint=endpoint)
        pipeline = await replay_into_lake(settings, recs)
        server_log = other.log()
    assert pipeline.summary.scored == 0
    assert pipeline.summary.dead_letters["scoring_rejected"] == 300
    assert_no_marker(debug_logs)
    assert MARKER not in server_log
