"""Kafka path throughput on a real broker, measured side by side in one run.

Prints events/s for
  1. the ceiling: a raw aiokafka consumer that only fetches and JSON-decodes the records;
  2. the full worker (``sentiment-monitor worker``) with the model in-process;
  3. the full worker scoring through the local SageMaker-compatible endpoint over HTTP;
the ratio of each pipeline to the ceiling, and each worker's peak RSS.

    .venv/bin/python benchmarks/kafka_throughput.py [--events 20000]
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

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stream.producer import KafkaReviewProducer, publish
from stream.synthetic import generate
from tests.servers.kafka import KafkaBroker, create_topics, kafka_jars
from tests.servers.ports import free_port

PARTITIONS = 4


async def fill(bootstrap: str, topic: str, events: int) -> None:
    await create_topics(bootstrap, [topic], PARTITIONS)
    records = [(r.key, r.value) for r in generate("steady", events=events, seed=5)]
    async with KafkaReviewProducer(bootstrap, topic=topic) as producer:
        await publish(producer, records)


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


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_worker(
    bootstrap: str, topic: str, events: int, workdir: Path, extra_env: dict[str, str]
) -> tuple[float, float]:
    group = f"bench-{extra_env.get('SENTIMENT_ENDPOINT__MODE', 'inprocess')}"
    env = {
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
        "SENTIMENT_METRICS_PORT": str(free_port()),
        **extra_env,
    }
    (workdir / group).mkdir(parents=True, exist_ok=True)
    with (workdir / group / "worker.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream", "worker", "--loglevel", "error"],
            cwd=workdir / group,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    port = int(env["SENTIMENT_METRICS_PORT"])
    try:
        # Timed from the first record the worker takes to the last: start-up and the consumer
        # group's join are left out, the whole pipeline (and its commits) is in.
        started: float | None = None
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            done = received(port)
            if started is None and done > 0:
                started, first = time.perf_counter(), done
            if done >= events:
                assert started is not None
                elapsed = time.perf_counter() - started
                while asyncio.run(committed(bootstrap, group, topic)) < events:
                    time.sleep(0.05)
                return (done - first) / elapsed, peak_rss_mb(proc.pid)
            if proc.poll() is not None:
                raise RuntimeError((workdir / group / "worker.log").read_text()[-3000:])
            time.sleep(0.05)
        raise RuntimeError("worker did not finish")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def start_endpoint(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "endpoint.server", "--port", str(port), "--workers", "1"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("endpoint did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, KafkaBroker(kafka_jars()) as broker:
        topic = "bench.reviews"
        asyncio.run(fill(broker.bootstrap, topic, args.events))
        ceil = asyncio.run(ceiling(broker.bootstrap, topic, args.events))
        inproc, rss_in = run_worker(
            broker.bootstrap,
            topic,
            args.events,
            Path(tmp),
            {"SENTIMENT_ENDPOINT__MODE": "inprocess"},
        )
        port = free_port()
        endpoint = start_endpoint(port)
        try:
            http, rss_http = run_worker(
                broker.bootstrap,
                topic,
                args.events,
                Path(tmp),
                {
                    "SENTIMENT_ENDPOINT__MODE": "sagemaker",
                    "SENTIMENT_ENDPOINT__URL": f"http://127.0.0.1:{port}",
                    "AWS_ACCESS_KEY_ID": "local",
                    "AWS_SECRET_ACCESS_KEY": "local",
                },
            )
        finally:
            endpoint.terminate()
            endpoint.wait(10)
    print(f"events: {args.events:,} on {PARTITIONS} partitions, one worker, {os.cpu_count()} cores")
    print(f"{'path':44s} {'events/s':>10s} {'/ceiling':>9s} {'peak RSS':>10s}")
    print(f"{'raw aiokafka consume + JSON decode (ceiling)':44s} {ceil:10,.0f} {1:9.2f} {'':>10s}")
    print(f"{'worker, model in-process':44s} {inproc:10,.0f} {inproc / ceil:9.3f} {rss_in:8.0f}MB")
    print(
        f"{'worker, local endpoint over HTTP':44s} {http:10,.0f} {http / ceil:9.3f} {rss_http:8.0f}MB"
    )


if __name__ == "__main__":
    main()
