"""The Kafka path on a real Apache Kafka broker: faust workers in a consumer group.

Every test publishes a seeded synthetic stream (with malformed records), runs real worker
processes (``python -m stream worker``), and checks the lake and the output topics: every valid
review in the lake exactly once, every invalid record in ``reviews.dlq`` with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
from aiokafka import AIOKafkaConsumer

from sinks.lake import parse_file_name
from stream.producer import KafkaReviewProducer, publish
from stream.synthetic import GeneratedRecord, generate
from tests.servers.endpoint import EndpointServer
from tests.servers.kafka import KafkaBroker, create_topics
from tests.servers.ports import free_port
from tests.servers.workers import KafkaWorkers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4


@dataclass(kw_only=True)
class Workers(KafkaWorkers):
    """Worker processes sharing one consumer group, lake and topics."""

    broker: KafkaBroker


@pytest.fixture
async def workers(
    kafka_broker: KafkaBroker, tmp_path: Path, unique_group: str
) -> AsyncIterator[Workers]:
    with Workers(
        root=tmp_path,
        broker=kafka_broker,
        bootstrap=kafka_broker.bootstrap,
        group=unique_group,
        partitions=PARTITIONS,
    ) as w:
        # Created up front with 4 partitions: a producer's auto-created topic would have one.
        await create_topics(kafka_broker.bootstrap, [w.topic("reviews")], PARTITIONS)
        yield w


def records(n: int, seed: int) -> list[GeneratedRecord]:
    return list(generate("bad-input", events=n, seed=seed))


async def produce(w: Workers, recs: list[GeneratedRecord], rate: float | None = None) -> None:
    async with KafkaReviewProducer(w.broker.bootstrap, topic=w.topic("reviews")) as producer:
        await publish(producer, [(r.key, r.value) for r in recs], rate=rate)


async def build_baseline(root: Path, recs: list[GeneratedRecord], n: int) -> Path:
    """A monitors' baseline (``baseline build``) of the stream's ``n`` earliest valid events."""
    events = sorted(
        (r.event for r in recs if r.event is not None), key=lambda e: (e.event_time, e.review_id)
    )[:n]
    data, out = root / "baseline.csv", root / "baseline.json"
    with data.open("w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["review_text", "product_category", "rating", "channel"])
        for e in events:
            rows.writerow([e.review_text, e.product_category, e.rating or "", e.channel])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stream", "baseline", "build", "--data", str(data), "--out", str(out),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return out


def wait_for_lake(w: Workers, expected: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    ids: list[str] = []
    while time.monotonic() < deadline:
        ids = w.lake_ids()
        if len(set(ids)) >= expected:
            time.sleep(3)  # let a replay that would duplicate show itself
            return w.lake_ids()
        for name, proc in w.procs.items():
            assert proc.poll() is None or proc.returncode == -signal.SIGKILL, (
                f"{name} exited {proc.returncode}\n{w.logs()}"
            )
        time.sleep(1)
    pytest.fail(f"lake has {len(set(ids))} of {expected} reviews\n{w.logs()}")


async def dlq_reasons(w: Workers, expected: int) -> Counter[str]:
    consumer = AIOKafkaConsumer(
        w.topic("dlq"),
        bootstrap_servers=w.broker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    reasons: dict[tuple[int, int], str] = {}
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(reasons) < expected:
            batch = await consumer.getmany(timeout_ms=1000)
            for msgs in batch.values():
                for m in msgs:
                    headers = dict(m.headers)
                    key = (int(headers["source.partition"]), int(headers["source.offset"]))
                    reasons[key] = headers["reason"].decode()
    finally:
        await consumer.stop()
    return Counter(reasons.values())


def check(w: Workers, recs: list[GeneratedRecord], ids: list[str]) -> None:
    valid = {r.event.review_id for r in recs if r.event is not None}
    assert len(ids) == len(set(ids)), "a review is in the lake twice"
    assert set(ids) == valid


async def test_two_workers_share_four_partitions(workers: Workers) -> None:
    recs = records(10_000, seed=21)
    workers.start("w1")
    workers.start("w2")
    # Produced once the group has settled: before, the first worker to join could finish the
    # topic before a rebalance handed the second any partition (it did in CI, even with the
    # records paced over 10 s on a slow machine).
    await asyncio.to_thread(workers.wait_until_shared, ["w1", "w2"])
    await produce(workers, recs)
    ids = await asyncio.to_thread(wait_for_lake, workers, 9_500, 240)
    check(workers, recs, ids)
    invalid = Counter(str(r.expected_reason) for r in recs if r.expected_reason is not None)
    assert await dlq_reasons(workers, sum(invalid.values())) == invalid
    # The four partitions were shared: both workers took records from Kafka.
    parts = {parse_file_name(p.name) for p in (workers.lake / "reviews").rglob("*.parquet")}
    assert {key[2] for key, _offset in filter(None, parts)} == {"0", "1", "2", "3"}
    assert workers.records_received("w1") > 0
    assert workers.records_received("w2") > 0


async def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(workers: Workers) -> None:
    recs = records(10_000, seed=22)
    valid = sum(r.event is not None for r in recs)
    workers.env_extra["SENTIMENT_BATCH__MAX_EVENTS"] = "100"
    workers.start("w1")
    workers.start("w2")
    await produce(workers, recs)
    await asyncio.to_thread(wait_for_lake, workers, valid // 4, 240)
    workers.kill("w1")
    workers.start("w1-restarted")
    ids = await asyncio.to_thread(wait_for_lake, workers, valid, 300)
    check(workers, recs, ids)
    invalid = Counter(str(r.expected_reason) for r in recs if r.expected_reason is not None)
    assert await dlq_reasons(workers, sum(invalid.values())) == invalid


async def test_the_broker_restarted_mid_run_loses_nothing(workers: Workers) -> None:
    recs = records(4_000, seed=23)
    valid = sum(r.event is not None for r in recs)
    workers.start("w1")
    await produce(workers, recs[:2_000])
    await asyncio.to_thread(wait_for_lake, workers, 1_000, 240)
    await asyncio.to_thread(workers.broker.restart)
    await produce(workers, recs[2_000:])
    ids = await asyncio.to_thread(wait_for_lake, workers, valid, 300)
    check(workers, recs, ids)


# Every event the monitors saw: in a window, or too late for one (a backlog read from four
# partitions at different speeds is far out of event-time order).
SEEN = ("sentiment_monitor_events_total", "sentiment_monitor_late_events_total")


async def wait_for_metric(
    w: Workers, name: str, samples: tuple[str, ...], at_least: float
) -> float:
    """Polls one worker's /metrics until ``sample`` reaches ``at_least`` (the monitor agent
    follows the scoring agent through the monitor feed topic, a little behind)."""
    value = 0.0
    for _ in range(120):
        with contextlib.suppress(OSError):  # before its /metrics is up
            value = w.metric(name, *samples)
            if value >= at_least:
                return value
        await asyncio.sleep(1)
    pytest.fail(f"{samples} stayed at {value} < {at_least}\n{w.logs()}")


async def test_the_endpoint_down_mid_run_loses_nothing(workers: Workers) -> None:
    recs = records(4_000, seed=24)
    valid = sum(r.event is not None for r in recs)
    port = free_port()
    endpoint = EndpointServer(port=port, workers=1)
    endpoint.__enter__()
    try:
        workers.env_extra.update(
            {
                "SENTIMENT_ENDPOINT__MODE": "sagemaker",
                "SENTIMENT_ENDPOINT__URL": endpoint.url,
                "SENTIMENT_ENDPOINT__TIMEOUT_S": "2",
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "SENTIMENT_BATCH__MAX_EVENTS": "100",
            }
        )
        workers.start("w1")
        await produce(workers, recs[:2_000])
        await asyncio.to_thread(wait_for_lake, workers, 1_500, 240)
        # The rest arrives at 300 events/s; the endpoint dies while it streams in.
        rest = asyncio.create_task(produce(workers, recs[2_000:], rate=300))
        await asyncio.sleep(1.5)
        assert endpoint.proc is not None
        endpoint.proc.kill()
        endpoint.proc.wait(10)
        await asyncio.sleep(3)
        stalled = len(set(workers.lake_ids()))
        await asyncio.sleep(5)
        # While it is down the worker waits: it is alive and the lake does not grow.
        assert workers.procs["w1"].poll() is None
        assert len(set(workers.lake_ids())) == stalled < valid
        endpoint.stop()
        endpoint = EndpointServer(port=port, workers=1)
        endpoint.__enter__()
        await rest
        ids = await asyncio.to_thread(wait_for_lake, workers, valid, 300)
        check(workers, recs, ids)
    finally:
        endpoint.stop()


async def test_monitor_state_survives_a_worker_restart(workers: Workers) -> None:
    first, second = records(3_000, seed=25), records(600, seed=26)
    workers.env_extra["SENTIMENT_MONITOR__STATE_SAVE_S"] = "0.5"
    workers.env_extra["SENTIMENT_MONITOR__BASELINE_EVENTS"] = "1000"
    workers.start("w1")
    await produce(workers, first)
    await asyncio.to_thread(wait_for_lake, workers, 2_800, 240)
    seen = await wait_for_metric(workers, "w1", SEEN, 2_800)
    await asyncio.sleep(3)  # a few state saves after the last batch
    assert workers.metric("w1", "sentiment_baseline_ready") == 1
    workers.kill("w1")
    workers.start("w2")
    await produce(workers, second)
    total = sum(r.event is not None for r in first + second)
    await asyncio.to_thread(wait_for_lake, workers, total, 240)
    await wait_for_metric(workers, "w2", SEEN, seen + 500)
    # The new worker continued the old one's counts and baseline (it has seen more events
    # than were published since it started).
    assert workers.metric("w2", "sentiment_baseline_ready") == 1
    assert workers.metric("w2", *SEEN) >= seen + 500


FEED_OWNED = "sentiment_monitor_feed_owned"


async def wait_for_owner(w: Workers, names: list[str]) -> str:
    """Polls the workers' /metrics until exactly one of ``names`` holds the monitor feed;
    returns it."""
    held: dict[str, float] = {}
    for _ in range(240):
        with contextlib.suppress(OSError):  # before its /metrics is up
            held = {n: w.metric(n, FEED_OWNED) for n in names}
            owners = [n for n, v in held.items() if v == 1]
            if len(owners) == 1 and sum(held.values()) == 1:
                return owners[0]
        await asyncio.sleep(0.5)
    pytest.fail(f"the feed is not held by exactly one of them: {held}\n{w.logs()}")


async def test_a_standby_monitor_worker_takes_the_feed_from_a_stopped_owner(
    workers: Workers,
) -> None:
    """Two monitor workers beside a scoring worker: one holds the feed (the scoring worker
    never does), and when it stops the other takes the feed and goes on from its state."""
    a, b = records(1_000, seed=27), records(1_000, seed=28)
    valid = [sum(r.event is not None for r in part) for part in (a, b)]
    workers.env_extra["SENTIMENT_MONITOR__STATE_SAVE_S"] = "0.5"
    workers.start("scoring", SENTIMENT_KAFKA__ROLE="scoring")
    for name in ("m1", "m2"):
        workers.start(name, SENTIMENT_KAFKA__ROLE="monitor")
    await produce(workers, a)
    owner = await wait_for_owner(workers, ["scoring", "m1", "m2"])
    standby = "m2" if owner == "m1" else "m1"
    seen_a = await wait_for_metric(workers, owner, SEEN, valid[0])
    await asyncio.sleep(2)  # the owner's state saves after its last group
    assert workers.metric(standby, *SEEN) == 0  # no monitor readings without the feed
    assert workers.stop(owner) == 0
    assert await wait_for_owner(workers, ["scoring", standby]) == standby
    await produce(workers, b)
    await wait_for_metric(workers, standby, SEEN, seen_a + valid[1])


async def topic_values(w: Workers, name: str, expected: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        w.topic(name),
        bootstrap_servers=w.broker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(values) < expected:
            batch = await consumer.getmany(timeout_ms=1000)
            values += [m.value or b"" for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()
    return values


@pytest.mark.parametrize("roles", [("all",), ("scoring", "monitor")], ids=["one", "split"])
async def test_every_output_of_the_kafka_path_is_written(
    workers: Workers, roles: tuple[str, ...]
) -> None:
    """The Kafka path writes what every path writes -- lake reviews, dead letters and alerts,
    the alert log -- plus its topics (enriched, dlq, alerts): from one worker that runs
    everything, and from a scoring worker and a monitor worker in processes of their own."""
    recs = list(generate("negative-surge", events=8_000, seed=12))
    bad = [(b"k", b"{broken"), (b"k", b'{"review_id": 1}'), (b"k", b"\xff\xfe")]
    workers.env_extra["SENTIMENT_MONITOR__BASELINE_EVENTS"] = "1000"
    workers.env_extra["SENTIMENT_ALERTS_PATH"] = str(workers.root / "alerts.jsonl")
    for role in roles:
        workers.start(role, SENTIMENT_KAFKA__ROLE=role)
    async with KafkaReviewProducer(workers.broker.bootstrap, topic=workers.topic("reviews")) as p:
        await publish(p, [(r.key, r.value) for r in recs] + bad)
    ids = await asyncio.to_thread(wait_for_lake, workers, len(recs), 240)
    assert sorted(ids) == sorted(r.event.review_id for r in recs if r.event is not None)
    dead = list((workers.lake / "dlq").rglob("*.parquet"))
    assert dead, "no dead letters in the lake"
    assert len(await topic_values(workers, "enriched", len(recs))) == len(recs)
    assert len(await topic_values(workers, "dlq", len(bad))) == len(bad)
    alerts_log = workers.root / "alerts.jsonl"

    def shift_logged() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
            alerts_log.exists() and "SentimentShift" in alerts_log.read_text()
        ):
            time.sleep(1)

    await asyncio.to_thread(shift_logged)
    fired = [json.loads(line) for line in alerts_log.read_text().splitlines()]
    assert ("SentimentShift", "Dresses") in {(a["name"], a["category"]) for a in fired}
    on_topic = [json.loads(v) for v in await topic_values(workers, "alerts", len(fired))]
    assert {a["alert_id"] for a in on_topic} >= {a["alert_id"] for a in fired}
    in_lake = ds.dataset(workers.lake / "alerts", format="parquet", partitioning="hive")
    assert {a["alert_id"] for a in fired} <= set(in_lake.to_table().column("alert_id").to_pylist())
    if roles == ("scoring", "monitor"):
        # The scoring worker read every review and raised no alert; the monitor worker read
        # no review and raised them all.
        assert workers.records_received("scoring") == len(recs) + len(bad)
        assert workers.records_received("monitor") == 0
        assert workers.metric("scoring", "sentiment_alerts_total") == 0
        assert workers.metric("monitor", "sentiment_alerts_total") >= len(fired)


async def test_a_backlog_over_four_partitions_and_two_workers_is_not_counted_late(
    workers: Workers,
) -> None:
    """50,000 events published before any worker runs (a backlog), read by two workers from
    four partitions at their own speeds: the monitors' watermark is the minimum over the
    partitions, so under 1% are late, and the alerts are those of the same events replayed
    in order on the embedded path. Both paths use one baseline file: a baseline learnt from
    the first events depends on the order they arrive in, which four partitions read at
    their own speeds do not keep."""
    recs = list(generate("negative-surge", events=50_000, seed=13))
    baseline = await build_baseline(workers.root, recs, 2000)
    await produce(workers, recs)
    workers.env_extra["SENTIMENT_ALERTS_PATH"] = str(workers.root / "alerts.jsonl")
    workers.env_extra["SENTIMENT_MONITOR__BASELINE_PATH"] = str(baseline)
    workers.start("w1")
    workers.start("w2")
    await asyncio.to_thread(wait_for_lake, workers, len(recs), 400)
    seen = {name: await wait_for_metric(workers, name, SEEN, 0) for name in ("w1", "w2")}
    owner = max(seen, key=lambda n: seen[n])
    total = await wait_for_metric(workers, owner, SEEN, len(recs))
    late = workers.metric(owner, "sentiment_monitor_late_events_total")
    assert late < 0.01 * total, f"{late} of {total} events late"

    embedded = workers.root / "embedded"
    embedded.mkdir()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stream", "run", "--scenario", "negative-surge",
        "--events", str(len(recs)), "--seed", "13", "--no-progress",
        "--lake", str(embedded / "lake"), "--alerts", str(embedded / "alerts.jsonl"),
        "--metrics-port", "0", "--baseline", str(baseline),
        cwd=embedded, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await asyncio.wait_for(proc.wait(), 300) == 0

    def alerts(path: Path) -> list[dict[str, Any]]:
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]

    def firing(path: Path) -> set[tuple[str, str]]:
        return {(a["name"], a["category"]) for a in alerts(path) if a["status"] == "firing"}

    def windowed(path: Path) -> set[tuple[str, str, str, str]]:
        # the window tests' transitions (every alert but the sequential SentimentShift); a
        # set, as a monitor handover may send an alert again (at least once)
        return {
            (a["name"], a["category"], a["status"], a["window_start"])
            for a in alerts(path)
            if a["name"] != "SentimentShift"
        }

    kafka, replay = workers.root / "alerts.jsonl", embedded / "alerts.jsonl"

    def settled() -> None:
        # Alerts of the last windows come once the stream is idle; give them a moment.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if firing(kafka) >= firing(replay) and windowed(kafka) == windowed(replay):
                return
            time.sleep(1)

    await asyncio.to_thread(settled)
    assert ("SentimentShift", "Dresses") in firing(kafka)
    assert firing(kafka) == firing(replay)
    # the window tests see the same counts against the same baseline: the same transitions
    assert windowed(kafka) == windowed(replay)
