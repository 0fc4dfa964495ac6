"""Streaming throughput on a real broker, measured side by side in one run.

Prints events/s for
  1. the in-process scorer alone (the slowest stage), on the same events in micro-batches of
     the default size;
  2. the ceiling: a raw aiokafka consumer that only fetches and JSON-decodes the records;
  3. the full worker (``sentiment-monitor worker``) with the model in-process;
  4. two such workers sharing the 4 partitions, and a scoring worker with the monitors in a
     worker of their own (``--role scoring`` / ``--role monitor``), timed once both read and a
     quarter of the events are delivered
     (120,000 events by default: with 20,000, and on a faster machine with 60,000, the first
     worker read them all before the second had joined the group);
  5. the full worker scoring through the local SageMaker-compatible endpoint over HTTP;
  6. the embedded ``sentiment-monitor run`` (replay, lake, monitors), with its time from
     process start to the first delivered batch;
  3 and 6 also with micro-batches of ``--small-batch`` events (500 by default, the default
  size before it became 2,000);
each against the scorer alone and the ceiling, and each worker's peak RSS; then
  7. the worker with a transformer flavour behind the endpoint (``--transformer-model DIR``;
     without one, minilm's pre-trained encoder with an untrained head, which costs the same),
     on ``--transformer-events`` events, against that endpoint alone with the same client
     settings (16 reviews a request, 2 in flight, a 60 s timeout: a request of the default
     100 reviews takes longer than the default 10 s on mpnet; one server process, since ONNX
     Runtime uses every core itself; micro-batches of 32 events).

    .venv/bin/python benchmarks/kafka_throughput.py [--events 60000]
        [--transformer-model DIR] [--transformer-events 512]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stream.events import ReviewEvent, SourcePosition
from stream.producer import KafkaReviewProducer, publish
from stream.scoring import InProcessScorer
from stream.settings import BatchSettings
from stream.synthetic import generate
from stream.validation import decode_event
from tests.servers.kafka import KafkaBroker, create_topics, kafka_jars
from tests.servers.ports import free_port

PARTITIONS = 4


async def fill(bootstrap: str, topic: str, events: int) -> None:
    await create_topics(bootstrap, [topic], PARTITIONS)
    records = [(r.key, r.value) for r in generate("steady", events=events, seed=5)]
    async with KafkaReviewProducer(bootstrap, topic=topic) as producer:
        await publish(producer, records)


def bench_events(events: int) -> list[ReviewEvent]:
    """The valid reviews among the benchmark's ``events`` synthetic events, decoded."""
    now = time.time
    decoded = [
        decode_event(r.value, SourcePosition("bench", "x", "0", i), _utc(now()))
        for i, r in enumerate(generate("steady", events=events, seed=5))
    ]
    return [e for e in decoded if isinstance(e, ReviewEvent)]


async def scorer_alone(events: int) -> float:
    """Reviews/s of the in-process scorer on the benchmark's events, in micro-batches of the
    default size (``SENTIMENT_BATCH__MAX_EVENTS``), as the workers get them."""
    valid = bench_events(events)
    size = BatchSettings().max_events
    scorer = InProcessScorer()
    await scorer.score(valid[:size])  # warm up
    started = time.perf_counter()
    for i in range(0, len(valid), size):
        await scorer.score(valid[i : i + size])
    return len(valid) / (time.perf_counter() - started)


def _utc(t: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC)


async def ceiling(bootstrap: str, topic: str, events: int) -> float:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id="ceiling", auto_offset_reset="earliest"
    )
    await consumer.start()
    seen = 0
    started = time.perf_counter()
    try:
        while seen < events:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for msgs in batch.values():
                for m in msgs:
                    json.loads(m.value or b"{}")
                    seen += 1
    finally:
        elapsed = time.perf_counter() - started
        await consumer.stop()
    return seen / elapsed


async def committed(bootstrap: str, group: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(
        meta.offset
        for tp, meta in offsets.items()
        if isinstance(tp, TopicPartition) and tp.topic == topic and meta.offset > 0
    )


def received(port: int) -> float:
    """Records the worker has taken from Kafka, from its /metrics (0 while it starts)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "sentiment_records_received_total"
    )


def status_mib(pid: int | str, field: str) -> float:
    """A memory field of a live process's ``/proc/<pid>/status`` (given in KiB: ``VmRSS``,
    ``VmHWM``), in MiB; NaN where it has none. 250 MB is 238 MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib(pid: int) -> float:
    """The peak resident set of a live process, in MiB (its ``VmHWM``)."""
    return status_mib(pid, "VmHWM")


def worker_env(
    bootstrap: str, topic: str, group: str, workdir: Path, extra_env: dict[str, str]
) -> dict[str, str]:
    return {
        **os.environ,
        "SENTIMENT_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "SENTIMENT_KAFKA__GROUP_ID": group,
        "SENTIMENT_KAFKA__REVIEWS_TOPIC": topic,
        "SENTIMENT_KAFKA__PARTITIONS": str(PARTITIONS),
        "SENTIMENT_KAFKA__ENRICHED_TOPIC": f"{group}.enriched",
        "SENTIMENT_KAFKA__DLQ_TOPIC": f"{group}.dlq",
        "SENTIMENT_KAFKA__ALERTS_TOPIC": f"{group}.alerts",
        "SENTIMENT_KAFKA__MONITOR_FEED_TOPIC": f"{group}.feed",
        "SENTIMENT_KAFKA__MONITOR_STATE_TOPIC": f"{group}.state",
        "SENTIMENT_LAKE_PATH": str(workdir / group / "lake"),
        "SENTIMENT_ALERTS_PATH": str(workdir / group / "alerts.jsonl"),
        "SENTIMENT_METRICS_PORT": str(free_port()),
        **extra_env,
    }


def run_workers(
    bootstrap: str,
    topic: str,
    events: int,
    workdir: Path,
    extra_env: dict[str, str],
    *,
    group: str,
    workers: int = 1,
    roles: tuple[str, ...] | None = None,
) -> tuple[float, list[float]]:
    """Events/s of ``workers`` worker processes of one group over the whole topic (or one
    process per role of ``roles``), and the peak RSS of each."""
    (workdir / group).mkdir(parents=True, exist_ok=True)
    procs: list[tuple[subprocess.Popen[bytes], int]] = []
    for n, role in enumerate(roles or ("all",) * workers):
        env = {
            **worker_env(bootstrap, topic, group, workdir, extra_env),
            "SENTIMENT_KAFKA__ROLE": role,
        }
        with (workdir / group / f"worker{n}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "stream", "worker", "--loglevel", "error"],
                cwd=workdir / group,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        procs.append((proc, int(env["SENTIMENT_METRICS_PORT"])))
    # the processes that read the reviews topic (a monitor worker reads only the feed)
    readers = [
        port
        for (_proc, port), role in zip(procs, roles or ("all",) * workers, strict=True)
        if role != "monitor"
    ]
    try:
        # Timed from the moment every reading worker takes records and a quarter of the
        # events are delivered, to the last commit: start-up and the group's join are left
        # out, and so is the rebalance when a second worker joins (timed from the first
        # record, two workers measured one worker's join and a rebalance, not two workers),
        # the whole pipeline (and its commits) is in. Not from the first delivered batch: the
        # batches behind it (up to ``queue_batches`` of them) are then nearly done, work the
        # clock would not see, a share of the run that grows with the batch size.
        started: float | None = None
        first = 0.0
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            # /metrics only until the clock starts: a scrape costs a worker about 9 ms of
            # its core, and polled every 50 ms that took about a tenth of it
            if started is None:
                got = [received(port) for port in readers]
                if sum(got) >= events:
                    raise RuntimeError(
                        "the workers read every event before the clock could start (one "
                        "before another joined, or all in one go): use more events"
                    )
                if all(g > 0 for g in got) and sum(got) >= events / 4:
                    started, first = time.perf_counter(), sum(got)
            elif asyncio.run(committed(bootstrap, group, topic)) >= events:
                elapsed = time.perf_counter() - started
                return (events - first) / elapsed, [peak_rss_mib(p.pid) for p, _ in procs]
            for proc, _port in procs:
                if proc.poll() is not None:
                    logs = (workdir / group / "worker0.log").read_text()[-3000:]
                    raise RuntimeError(logs)
            time.sleep(0.05)
        raise RuntimeError("workers did not finish")
    finally:
        for proc, _port in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, _port in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def embedded_run(
    events: int, workdir: Path, extra_env: dict[str, str] | None = None
) -> tuple[float, float]:
    """The embedded ``run`` as a user starts it: events/s from a quarter of the events
    delivered to the last (as for the workers, the first batch would start the clock with the
    batches behind it nearly done), and seconds from the process start to its first delivered
    batch (imports and model load included)."""
    port = free_port()
    launched = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "stream", "run", "--events", str(events), "--no-progress",
            "--lake", str(workdir / "embedded" / "lake"),
            "--alerts", str(workdir / "embedded" / "alerts.jsonl"),
            "--metrics-port", str(port), "--linger", "30",
        ],
        cwd=ROOT,
        env={**os.environ, **(extra_env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        first_at: float | None = None
        started: float | None = None
        first = 0.0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = received(port)
            now = time.perf_counter()
            if first_at is None and done > 0:
                first_at = now
            if started is None and done >= events / 4:
                if done >= events:
                    raise RuntimeError("the run delivered every event in one go: use more")
                started, first = now, done
            if started is not None and first_at is not None and done >= events:
                return (events - first) / (now - started), first_at - launched
            if proc.poll() is not None:
                raise RuntimeError(f"run exited {proc.returncode}")
            # every 20 ms until the first batch; then every 250 ms, since each /metrics
            # scrape costs the run about 9 ms of its core (polled every 20 ms, almost half
            # of it); the end is then known to 250 ms
            time.sleep(0.02 if first_at is None else 0.25)
        raise RuntimeError("run did not finish")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def start_endpoint(port: int, *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "endpoint.server", "--port", str(port), "--workers", "1", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("endpoint did not start")


#: The transformer rows' micro-batches: 32 events, so that a run of a few hundred has many.
BATCH_EVENTS = 32


def transformer_rows(
    bootstrap: str, work: Path, events: int, model_dir: Path | None
) -> tuple[float, float, list[float]]:
    """(endpoint alone, worker through it, the worker's peak RSS) with a transformer model."""
    from benchmarks.scoring import TRANSFORMER_CLIENT, speed_only, through_endpoint

    per_request, in_flight, timeout_s = TRANSFORMER_CLIENT

    topic = "bench.transformer"
    asyncio.run(fill(bootstrap, topic, events))
    model = model_dir or speed_only("minilm", work / "transformer")
    port = free_port()
    endpoint = start_endpoint(port, "--model-dir", str(model))
    url = f"http://127.0.0.1:{port}"
    try:
        n, seconds = asyncio.run(
            through_endpoint(
                url,
                bench_events(events),
                records_per_request=per_request,
                max_in_flight=in_flight,
                repeats=1,
                timeout_s=timeout_s,
            )
        )
        env = {
            "SENTIMENT_ENDPOINT__MODE": "sagemaker",
            "SENTIMENT_ENDPOINT__URL": url,
            "SENTIMENT_ENDPOINT__RECORDS_PER_REQUEST": str(per_request),
            "SENTIMENT_ENDPOINT__MAX_IN_FLIGHT": str(in_flight),
            "SENTIMENT_ENDPOINT__TIMEOUT_S": str(timeout_s),
            "SENTIMENT_BATCH__MAX_EVENTS": str(BATCH_EVENTS),
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
        }
        worker, rss = run_workers(bootstrap, topic, events, work, env, group="transformer")
    finally:
        endpoint.terminate()
        endpoint.wait(10)
    return n / seconds, worker, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=120_000)
    parser.add_argument("--transformer-model", type=Path, default=None)
    parser.add_argument("--transformer-events", type=int, default=512)
    parser.add_argument(
        "--small-batch",
        type=int,
        default=500,
        help="also run one worker and the embedded run with micro-batches of this many events "
        "(the default before it was 2,000), against the default size",
    )
    args = parser.parse_args()
    n = args.events
    small = {"SENTIMENT_BATCH__MAX_EVENTS": str(args.small_batch)}
    alone = asyncio.run(scorer_alone(n))
    with tempfile.TemporaryDirectory() as tmp, KafkaBroker(kafka_jars()) as broker:
        topic = "bench.reviews"
        work = Path(tmp)
        asyncio.run(fill(broker.bootstrap, topic, n))
        ceil = asyncio.run(ceiling(broker.bootstrap, topic, n))
        inproc = {"SENTIMENT_ENDPOINT__MODE": "inprocess"}
        one, rss_one = run_workers(broker.bootstrap, topic, n, work, inproc, group="one")
        one_small, rss_small = run_workers(
            broker.bootstrap, topic, n, work, {**inproc, **small}, group="one-small"
        )
        two, rss_two = run_workers(broker.bootstrap, topic, n, work, inproc, group="two", workers=2)
        split, rss_split = run_workers(
            broker.bootstrap, topic, n, work, inproc, group="split", roles=("scoring", "monitor")
        )
        port = free_port()
        endpoint = start_endpoint(port)
        try:
            http, rss_http = run_workers(
                broker.bootstrap,
                topic,
                n,
                work,
                {
                    "SENTIMENT_ENDPOINT__MODE": "sagemaker",
                    "SENTIMENT_ENDPOINT__URL": f"http://127.0.0.1:{port}",
                    "AWS_ACCESS_KEY_ID": "local",
                    "AWS_SECRET_ACCESS_KEY": "local",
                },
                group="http",
            )
        finally:
            endpoint.terminate()
            endpoint.wait(10)
        t_alone, t_worker, t_rss = transformer_rows(
            broker.bootstrap, work, args.transformer_events, args.transformer_model
        )
    embedded, first_batch_s = embedded_run(n, Path(tmp))
    embedded_small, first_small_s = embedded_run(n, Path(tmp), small)
    print(f"events: {n:,} on {PARTITIONS} partitions, {os.cpu_count()} cores")
    head = f"{'path':46s} {'events/s':>10s} {'/scorer':>8s} {'/ceiling':>9s} {'peak RSS MiB':>12s}"
    print(head)

    def row(name: str, rate: float, rss: list[float] | None = None) -> None:
        mem = "/".join(f"{r:.0f}" for r in rss) if rss is not None else ""
        print(f"{name:46s} {rate:10,.0f} {rate / alone:8.2f} {rate / ceil:9.3f} {mem:>12s}")

    row("in-process scorer alone (slowest stage)", alone)
    row("raw aiokafka consume + JSON decode (ceiling)", ceil)
    row("1 worker, model in-process", one, rss_one)
    row(f"  the same, micro-batches of {args.small_batch}", one_small, rss_small)
    row("2 workers, model in-process", two, rss_two)
    row("scoring worker + monitor worker (--role)", split, rss_split)
    row("1 worker, local endpoint over HTTP", http, rss_http)
    row("embedded run (replay -> lake + monitors)", embedded)
    row(f"  the same, micro-batches of {args.small_batch}", embedded_small)
    print(f"2 workers / 1 worker: {two / one:.2f} (on {os.cpu_count()} cores, broker included)")
    print(
        f"scoring + monitor workers / 1 worker: {split / one:.2f}; "
        "peak RSS per process, the split row's as scoring/monitor"
    )
    print(
        f"embedded run: first batch {first_batch_s:.2f} s after the process started "
        f"({first_small_s:.2f} s with micro-batches of {args.small_batch})"
    )
    print(
        f"default micro-batches ({BatchSettings().max_events:,}) / {args.small_batch}: "
        f"1 worker {one / one_small:.2f}, embedded run {embedded / embedded_small:.2f}"
    )
    flavour = args.transformer_model or "minilm, pre-trained encoder (speed only)"
    print(
        f"\ntransformer behind the endpoint ({flavour}; {args.transformer_events} events):\n"
        f"  endpoint alone (EndpointScorer, same client settings) {t_alone:8.1f} reviews/s\n"
        f"  1 worker through it                                   {t_worker:8.1f} events/s"
        f"  ({t_worker / t_alone:.2f} of the endpoint alone; peak RSS {t_rss[0]:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
