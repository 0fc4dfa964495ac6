"""The endpoint scorer against the real local endpoint server over HTTP (subprocesses on free
ports): round trip equal to the in-process scorer, unsigned requests for a local endpoint,
rejections (400, 413) turned into ``scoring_rejected`` dead letters, retries while the model
loads, the server SIGKILLed mid-stream and restarted on the same port with no event lost, and
``sentiment-monitor run`` scoring through the endpoint."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream.app import run_pipeline
from stream.endpoint_client import CircuitBreaker, EndpointScorer
from stream.errors import ConfigurationError, ScoringRejected
from stream.events import ReviewEvent, SourcePosition
from stream.lake_factory import build_lake_sink
from stream.metrics import PipelineMetrics
from stream.pipeline import RawRecord
from stream.scoring import InProcessScorer
from stream.settings import BatchSettings, EndpointSettings, Settings
from stream.sources import ReplaySource
from stream.synthetic import GeneratedRecord, generate
from tests.servers.endpoint import EndpointServer, children_of, http_status
from tests.servers.ports import free_port

pytestmark = pytest.mark.integration

NAME = "review-sentiment"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials (the local server accepts any) and no instance-metadata lookups."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture(scope="module")
def server() -> Iterator[EndpointServer]:
    with EndpointServer(workers=2) as s:
        yield s


def endpoint(url: str, **kwargs: Any) -> EndpointSettings:
    return EndpointSettings(mode="sagemaker", name=NAME, url=url, **kwargs)


def valid_events(records: Sequence[GeneratedRecord]) -> list[ReviewEvent]:
    return [r.event for r in records if r.event is not None]


def sample(metrics: PipelineMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def wait_until(ok: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ok():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


def read_lake(lake: Path) -> tuple[list[str], dict[str, int], Counter[str]]:
    """(review ids, review id -> sentiment, dead-letter reasons) from a local lake."""
    ids: list[str] = []
    sentiments: dict[str, int] = {}
    if (lake / "reviews").exists():
        table = ds.dataset(lake / "reviews", format="parquet", partitioning="hive").to_table(
            columns=["review_id", "sentiment"]
        )
        ids = table.column("review_id").to_pylist()
        sentiments = dict(zip(ids, table.column("sentiment").to_pylist(), strict=True))
    reasons: Counter[str] = Counter()
    if (lake / "dlq").exists():
        dlq = ds.dataset(lake / "dlq", format="parquet", partitioning="hive").to_table()
        reasons.update(dlq.column("reason").to_pylist())
    return ids, sentiments, reasons


async def in_process_sentiments(events: Sequence[ReviewEvent]) -> dict[str, int]:
    result = await InProcessScorer().score(events)
    return {e.review_id: p.sentiment for e, p in zip(events, result.predictions, strict=True)}


# -- the scorer on its own -------------------------------------------------------------------


async def test_round_trip_equals_the_in_process_scorer(server: EndpointServer) -> None:
    events = valid_events(list(generate("steady", events=1_000, seed=3)))
    errors: list[str] = []
    # 7 per request: the last request of the batch is a short one.
    settings = endpoint(server.url, records_per_request=7, max_in_flight=3)
    async with EndpointScorer(settings, on_error=errors.append) as scorer:
        remote = await scorer.score(events)
        assert scorer.signed is True
        assert scorer.requests == math.ceil(len(events) / 7)
    local = await InProcessScorer().score(events)
    assert list(remote.predictions) == list(local.predictions)
    assert (remote.model_name, remote.model_version) == (local.model_name, local.model_version)
    assert errors == []
    assert scorer.breaker.state == "closed"


async def test_a_local_endpoint_needs_no_credentials(
    server: EndpointServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    events = valid_events(list(generate("steady", events=20, seed=4)))
    async with EndpointScorer(endpoint(server.url)) as scorer:
        result = await scorer.score(events)
        assert scorer.signed is False
    assert len(result.predictions) == len(events)


async def test_no_credentials_and_no_endpoint_url_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    scorer = EndpointScorer(EndpointSettings(mode="sagemaker", name=NAME))
    with pytest.raises(ConfigurationError, match="no AWS credentials"):
        await scorer.score(valid_events(list(generate("steady", events=5, seed=4))))
    await scorer.close()
    await scorer.close()  # twice is fine


async def test_scoring_after_close_is_refused(server: EndpointServer) -> None:
    scorer = EndpointScorer(endpoint(server.url))
    events = valid_events(list(generate("steady", events=5, seed=4)))
    await scorer.score(events)
    await scorer.close()
    with pytest.raises(RuntimeError, match="closed"):
        await scorer.score(events)


async def test_a_400_is_scoring_rejected_and_not_retried() -> None:
    # The server answers only another endpoint name: InvokeEndpoint gets 400 ValidationError.
    with EndpointServer("--endpoint-name", "another-endpoint", workers=1) as other:
        errors: list[str] = []
        events = valid_events(list(generate("steady", events=10, seed=4)))
        async with EndpointScorer(endpoint(other.url), on_error=errors.append) as scorer:
            with pytest.raises(ScoringRejected, match="not found"):
                await scorer.score(events)
            assert scorer.requests == 1
        assert errors == ["rejected"]
        assert scorer.breaker.state == "closed"


async def test_a_request_over_the_payload_limit_is_rejected(server: EndpointServer) -> None:
    # 1,300 reviews of 4,900 bytes in one request: over InvokeEndpoint's 6 MB, answered 413.
    base = valid_events(list(generate("steady", events=1, seed=4)))[0]
    text = ("great fit " * 490)[:4_900]
    events = [replace(base, review_id=f"big-{i}", review_text=text) for i in range(1_300)]
    errors: list[str] = []
    settings = endpoint(server.url, records_per_request=2_000)
    async with EndpointScorer(settings, on_error=errors.append) as scorer:
        with pytest.raises(ScoringRejected, match="larger than the limit"):
            await scorer.score(events)
    assert errors == ["rejected"]


async def test_503_while_the_model_loads_is_retried_until_it_answers() -> None:
    with EndpointServer("--load-delay", "3", workers=1, wait_ready=False) as slow:
        assert http_status(slow.url + "/ping") == 503
        errors: list[str] = []
        events = valid_events(list(generate("steady", events=30, seed=4)))
        async with EndpointScorer(endpoint(slow.url), on_error=errors.append) as scorer:
            result = await scorer.score(events)
        assert len(result.predictions) == len(events)
        assert http_status(slow.url + "/ping") == 200
        assert set(errors) <= {"server"}


async def test_a_frozen_endpoint_times_out_opens_the_breaker_and_recovers() -> None:
    # SIGSTOP: the kernel still accepts connections, nobody answers: read timeouts.
    with EndpointServer(workers=1) as frozen:
        errors: list[str] = []
        events = valid_events(list(generate("steady", events=200, seed=8)))
        settings = endpoint(frozen.url, records_per_request=20, max_in_flight=2, timeout_s=0.5)
        breaker = CircuitBreaker(threshold=2, reset_s=0.2, max_reset_s=1.0)
        async with EndpointScorer(settings, breaker=breaker, on_error=errors.append) as scorer:
            os.kill(frozen.pid, signal.SIGSTOP)
            try:
                task = asyncio.create_task(scorer.score(events))
                await wait_until(lambda: breaker.opened >= 1, "the breaker to open")
                assert not task.done()
            finally:
                os.kill(frozen.pid, signal.SIGCONT)
            result = await asyncio.wait_for(task, 120)
        assert len(result.predictions) == len(events)
        assert "timeout" in errors
        assert set(errors) <= {"timeout", "connection"}
        assert breaker.state == "closed"


# -- the pipeline ----------------------------------------------------------------------------


def pipeline_settings(tmp_path: Path, url: str, **endpoint_kwargs: Any) -> Settings:
    return Settings(
        lake_path=str(tmp_path / "lake"),
        alerts_path=tmp_path / "alerts.jsonl",
        metrics_port=0,
        endpoint=endpoint(url, **endpoint_kwargs),
        batch=BatchSettings(max_events=200, max_wait_ms=50, queue_batches=2),
    )


class CountingSource:
    """A replay source that counts the records the pipeline has pulled from it."""

    def __init__(self, inner: ReplaySource) -> None:
        self.inner = inner
        self.pulled = 0

    async def records(self) -> AsyncIterator[RawRecord]:
        async for record in self.inner.records():
            self.pulled += 1
            yield record

    async def commit(self, positions: Mapping[tuple[str, str, str], SourcePosition]) -> None:
        await self.inner.commit(positions)


async def test_the_pipeline_turns_a_rejected_batch_into_dead_letters(tmp_path: Path) -> None:
    records = list(generate("bad-input", events=400, seed=6))
    valid = valid_events(records)
    with EndpointServer("--endpoint-name", "another-endpoint", workers=1) as other:
        settings = pipeline_settings(tmp_path, other.url)
        metrics = PipelineMetrics(settings.categories)
        pipeline = await run_pipeline(
            settings,
            ReplaySource([(r.key, r.value) for r in records]),
            [build_lake_sink(settings)],
            source_name="replay",
            metrics=metrics,
            serve_metrics=False,
        )
    summary = pipeline.summary
    assert summary.scored == 0
    assert summary.records_in == len(records)
    assert summary.dead_letters["scoring_rejected"] == len(valid)
    ids, _sentiments, reasons = read_lake(tmp_path / "lake")
    assert ids == []
    expected = Counter(str(r.expected_reason) for r in records if r.expected_reason is not None)
    expected["scoring_rejected"] = len(valid)
    assert reasons == expected
    requests = math.ceil(len(valid) / settings.endpoint.records_per_request)
    assert sample(metrics, "sentiment_endpoint_errors_total", kind="rejected") >= requests
    assert sample(metrics, "sentiment_endpoint_circuit_opened_total") == 0


def kill_hard(server: EndpointServer) -> None:
    """SIGKILL the supervisor and every worker: a crash, no graceful shutdown."""
    workers = children_of(server.pid)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)
    for pid in workers:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.proc.wait()
    deadline = time.monotonic() + 10
    while http_status(server.url + "/ping", timeout=0.5) != 0:
        assert time.monotonic() < deadline, "the killed endpoint still answers"
        time.sleep(0.05)
    server.stop()


async def test_endpoint_killed_mid_stream_loses_nothing_and_the_backlog_drains(
    tmp_path: Path,
) -> None:
    records = list(generate("bad-input", events=6_000, seed=5))
    valid = valid_events(records)
    port = free_port()
    first = EndpointServer(workers=2, port=port)
    await asyncio.to_thread(first.__enter__)
    settings = pipeline_settings(tmp_path, first.url, records_per_request=50, timeout_s=5.0)
    metrics = PipelineMetrics(settings.categories)
    source = CountingSource(ReplaySource([(r.key, r.value) for r in records], rate=1_500))
    delivered = 0

    def on_batch(batch: Any) -> None:
        nonlocal delivered
        delivered += len(batch.scored) + len(batch.dead)

    run = asyncio.create_task(
        run_pipeline(
            settings,
            source,
            [build_lake_sink(settings)],
            source_name="replay",
            metrics=metrics,
            serve_metrics=False,
            on_batch=on_batch,
        )
    )
    second: EndpointServer | None = None
    try:
        await wait_until(lambda: delivered >= 1_000, "the first batches")
        await asyncio.to_thread(kill_hard, first)

        # The breaker opens; the bounded queues fill and the source is no longer pulled.
        await wait_until(
            lambda: sample(metrics, "sentiment_endpoint_circuit_open") == 1.0, "breaker open"
        )
        pulled = await stable(lambda: source.pulled)
        b = settings.batch
        # One batch being delivered, the in-flight queue, one batch waiting to enter it, the
        # raw queue (two batches' worth) and the record in the reader's hand.
        bound = (1 + b.queue_batches + 1 + 2) * b.max_events + 1
        assert pulled - delivered <= bound
        assert pulled < len(records)
        assert sample(metrics, "sentiment_endpoint_errors_total", kind="connection") > 0
        assert run.done() is False

        second = EndpointServer(workers=2, port=port)
        await asyncio.to_thread(second.__enter__)
        pipeline = await asyncio.wait_for(run, 300)
    finally:
        if not run.done():
            run.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await run
        await asyncio.to_thread(first.stop)
        if second is not None:
            await asyncio.to_thread(second.stop)

    # Every valid event in the lake exactly once, scored as the model scores it in-process.
    ids, sentiments, reasons = read_lake(tmp_path / "lake")
    assert len(ids) == len(set(ids)) == len(valid)
    assert sentiments == await in_process_sentiments(valid)
    expected = Counter(str(r.expected_reason) for r in records if r.expected_reason is not None)
    assert reasons == expected
    assert pipeline.summary.records_in == source.pulled == len(records)
    assert source.inner.committed is not None
    assert source.inner.committed.offset == len(records) - 1
    # The breaker opened during the outage and is closed again.
    assert sample(metrics, "sentiment_endpoint_circuit_opened_total") >= 1
    assert sample(metrics, "sentiment_endpoint_circuit_open") == 0.0


async def stable(read: Callable[[], int], checks: int = 4, every_s: float = 0.5) -> int:
    """Wait until ``read()`` gives the same value ``checks`` times in a row; return it."""
    value, same = read(), 0
    deadline = time.monotonic() + 60
    while same < checks:
        if time.monotonic() > deadline:
            pytest.fail("the source kept being pulled while the endpoint was down")
        await asyncio.sleep(every_s)
        now = read()
        same = same + 1 if now == value else 0
        value = now
    return value


# -- the CLI ---------------------------------------------------------------------------------


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def test_sentiment_monitor_run_scores_through_the_endpoint(
    server: EndpointServer, tmp_path: Path
) -> None:
    events, seed = 3_000, 9
    records = list(generate("bad-input", events=events, seed=seed))
    valid = valid_events(records)
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "SENTIMENT_")) or k == "AWS_EC2_METADATA_DISABLED"
    }
    env.update(
        COLUMNS="200",
        SENTIMENT_ENDPOINT__MODE="sagemaker",
        SENTIMENT_ENDPOINT__URL=server.url,
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
    )
    cmd = [
        sys.executable, "-m", "stream", "run", "--scenario", "bad-input",
        "--events", str(events), "--seed", str(seed),
        "--lake", str(tmp_path / "lake"), "--alerts", str(tmp_path / "alerts.jsonl"),
        "--metrics-port", str(port), "--no-progress", "--linger", "120",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    key = 'sentiment_records_received_total{source="replay"}'
    samples: dict[str, float] = {}
    deadline = time.monotonic() + 300
    try:
        while samples.get(key) != events:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, f"run did not finish: {samples.get(key)}"
            time.sleep(0.5)
            try:
                samples = scrape(port)
            except OSError:
                samples = {}
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    assert "Unclosed" not in output, output  # the endpoint client was closed

    ids, sentiments, reasons = read_lake(tmp_path / "lake")
    assert len(ids) == len(set(ids)) == len(valid)
    assert sentiments == asyncio.run(in_process_sentiments(valid))
    assert reasons == Counter(
        str(r.expected_reason) for r in records if r.expected_reason is not None
    )
    # Scored through the endpoint scorer: its breaker is on /metrics, closed, no errors.
    assert samples["sentiment_endpoint_circuit_open{}"] == 0.0
    assert samples["sentiment_endpoint_circuit_opened_total{}"] == 0.0
    assert not any(
        k.startswith("sentiment_endpoint_errors_total{") and v for k, v in samples.items()
    )
