"""The Kinesis path on a real Kinesis-API server (kinesalite on 127.0.0.1).

Every test publishes a seeded synthetic stream with malformed records (``produce --to
kinesis`` or :class:`KinesisReviewProducer`), runs real worker processes (``python -m stream
worker --source kinesis``) over a local lake with local checkpoints, and checks the lake: every
valid review exactly once, every invalid record exactly once as a dead letter with its reason.
The S3 checkpoint store is checked against SeaweedFS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from sinks.lake import MARKERS
from stream.checkpoints import ShardCheckpoint, open_checkpoint_store
from stream.errors import CheckpointConflict
from stream.producer import publish
from stream.producer_kinesis import KinesisReviewProducer
from stream.settings import KinesisSettings
from stream.synthetic import GeneratedRecord, generate
from tests.servers.kinesis import Kinesalite, KinesaliteUnavailableError, kinesalite_module
from tests.servers.lake_fixtures import s3_bucket, seaweedfs
from tests.servers.seaweedfs import SeaweedFS
from tests.servers.workers import WorkerProcesses

__all__ = ["s3_bucket", "seaweedfs"]

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def kinesalite() -> Iterator[Kinesalite]:
    """One kinesalite for the session; tests use their own streams."""
    try:
        kinesalite_module()
    except KinesaliteUnavailableError as exc:
        pytest.fail(f"cannot run the Kinesis server the tests need: {exc}", pytrace=False)
    server = Kinesalite()
    server.start()
    try:
        yield server
    finally:
        server.close()


@dataclass(kw_only=True)
class Workers(WorkerProcesses):
    """Kinesis worker processes over one stream, lake and checkpoint directory."""

    server: Kinesalite
    stream: str
    args: tuple[str, ...] = ("worker", "--source", "kinesis")

    @property
    def checkpoint_file(self) -> Path:
        return self.root / "checkpoints" / f"{self.stream}.json"

    def transport_env(self) -> dict[str, str]:
        return {
            **self.server.env(),
            "SENTIMENT_KINESIS__ENDPOINT_URL": self.server.endpoint_url,
            "SENTIMENT_KINESIS__STREAM_NAME": self.stream,
            "SENTIMENT_KINESIS__CREATE_STREAM": "false",
            "SENTIMENT_KINESIS__CHECKPOINT_LOCATION": str(self.root / "checkpoints"),
            "SENTIMENT_KINESIS__POLL_INTERVAL_S": "0.2",
            "SENTIMENT_KINESIS__SHARD_REFRESH_S": "2",
            "SENTIMENT_KINESIS__RECORDS_PER_CALL": "500",
            "SENTIMENT_LAKE__BUFFER_MAX_AGE_S": "1",
            "SENTIMENT_ALERTS_PATH": str(self.root / "alerts.jsonl"),
        }

    def review_rows(self) -> list[tuple[str, int]]:
        t = self.table("reviews", ["source_partition", "source_offset"])
        return [
            (str(p), int(o)) for p, o in zip(t["source_partition"], t["source_offset"], strict=True)
        ]

    def dead_letters(self) -> list[tuple[str, int, str, Any]]:
        """(shard, sequence number, reason, received_at) of every dead letter in the lake."""
        t = self.table("dlq", ["source_partition", "source_offset", "reason", "received_at"])
        return [
            (str(p), int(o), str(r), at)
            for p, o, r, at in zip(
                t["source_partition"],
                t["source_offset"],
                t["reason"],
                t["received_at"],
                strict=True,
            )
        ]

    def checkpoints(self) -> dict[str, Any]:
        if not self.checkpoint_file.exists():
            return {}
        doc: dict[str, Any] = json.loads(self.checkpoint_file.read_text())["shards"]
        return doc

    def assert_running(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None or proc.returncode in (0, -signal.SIGKILL), (
                f"{name} exited {proc.returncode}\n{self.logs()}"
            )


@pytest.fixture
def workers(
    kinesalite: Kinesalite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workers]:
    for key, value in kinesalite.env().items():
        monkeypatch.setenv(key, value)
    with Workers(root=tmp_path, server=kinesalite, stream=f"reviews-{uuid.uuid4().hex[:10]}") as w:
        yield w


def records(n: int, seed: int) -> list[GeneratedRecord]:
    return list(generate("bad-input", events=n, seed=seed))


def producer(w: Workers) -> KinesisReviewProducer:
    settings = KinesisSettings(
        stream_name=w.stream, endpoint_url=w.server.endpoint_url, create_stream=False
    )
    return KinesisReviewProducer(settings=settings)


async def produce(w: Workers, recs: list[GeneratedRecord]) -> None:
    async with producer(w) as p:
        await publish(p, [(r.key, r.value) for r in recs])


def wait_for_lake(w: Workers, expected: int, timeout: float) -> list[str]:
    """Wait until the lake holds ``expected`` distinct reviews, then a little longer so that a
    replay that would add duplicates shows itself."""
    deadline = time.monotonic() + timeout
    ids: list[str] = []
    while time.monotonic() < deadline:
        ids = w.lake_ids()
        if len(set(ids)) >= expected:
            time.sleep(3)
            return w.lake_ids()
        w.assert_running()
        time.sleep(0.5)
    pytest.fail(f"lake has {len(set(ids))} of {expected} reviews\n{w.logs()}")


def wait_for_reviews(w: Workers, expected: int, timeout: float = 180) -> None:
    """Wait until the lake holds ``expected`` distinct reviews (and no longer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(set(w.lake_ids())) >= expected:
            return
        w.assert_running()
        time.sleep(0.2)
    pytest.fail(f"lake has {len(set(w.lake_ids()))} of {expected} reviews\n{w.logs()}")


def wait_for_log(w: Workers, name: str, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in w.log(name):
            return
        w.assert_running()
        time.sleep(0.2)
    pytest.fail(f"{name} never logged {text!r}\n{w.logs()}")


def wait_for_checkpoints(w: Workers, shards: int, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cps = w.checkpoints()
        if sum(cp["sequence"] is not None for cp in cps.values()) >= shards:
            return cps
        w.assert_running()
        time.sleep(0.2)
    pytest.fail(f"no checkpoint of {shards} shards: {w.checkpoints()}\n{w.logs()}")


def check_exactly_once(w: Workers, recs: list[GeneratedRecord], ids: list[str]) -> None:
    valid = {r.event.review_id for r in recs if r.event is not None}
    assert len(ids) == len(set(ids)), "a review is in the lake twice"
    assert set(ids) == valid
    dead = w.dead_letters()
    positions = [(shard, seq) for shard, seq, _reason, _at in dead]
    assert len(positions) == len(set(positions)), "a dead letter is in the lake twice"
    expected = Counter(str(r.expected_reason) for r in recs if r.expected_reason is not None)
    assert Counter(reason for _s, _q, reason, _at in dead) == expected


def wait_for_dead_letters(w: Workers, expected: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(w.dead_letters()) < expected:
        time.sleep(0.5)


def test_produce_and_consume_over_four_shards(workers: Workers) -> None:
    workers.server.create_stream(workers.stream, 4)
    n, seed = 3_000, 31
    produced = subprocess.run(
        [
            *(sys.executable, "-m", "stream", "produce", "--to", "kinesis"),
            *("--scenario", "bad-input", "--events", str(n), "--seed", str(seed)),
            "--no-progress",
        ],
        cwd=workers.root,
        env=workers.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert produced.returncode == 0, produced.stderr
    recs = records(n, seed)
    workers.start("w1")
    ids = wait_for_lake(workers, sum(r.event is not None for r in recs), 180)
    wait_for_dead_letters(workers, sum(r.expected_reason is not None for r in recs))
    check_exactly_once(workers, recs, ids)
    # Every shard was read, and a clean stop checkpoints each at its last record.
    rows = workers.review_rows() + [(s, q) for s, q, _r, _a in workers.dead_letters()]
    last: dict[str, int] = {}
    for shard, seq in rows:
        last[shard] = max(seq, last.get(shard, seq))
    assert len(last) == 4
    assert workers.stop("w1") == 0, workers.logs()
    cps = workers.checkpoints()
    assert {s: int(cp["sequence"]) for s, cp in cps.items()} == last
    assert not any(cp["ended"] for cp in cps.values())


async def test_a_shard_split_mid_run_reads_parents_before_children(workers: Workers) -> None:
    server = workers.server
    await asyncio.to_thread(server.create_stream, workers.stream, 2)
    client = server.client()
    parent = client.list_shards(StreamName=workers.stream)["Shards"][0]
    hash_range = parent["HashKeyRange"]
    middle = (int(hash_range["StartingHashKey"]) + int(hash_range["EndingHashKey"])) // 2
    recs = records(4_000, seed=32)
    before, during = recs[:1_000], recs[1_000:]
    workers.start("w1")
    async with producer(workers) as p:
        await publish(p, [(r.key, r.value) for r in before], rate=1_000)
        # The worker is reading the parent live ...
        await asyncio.to_thread(wait_for_lake, workers, 200, 180)
        sent_some = asyncio.Event()

        def on_sent(n: int) -> None:
            if n >= 1_000:
                sent_some.set()

        async def split_mid_run() -> None:
            await sent_some.wait()
            await asyncio.to_thread(
                client.split_shard,
                StreamName=workers.stream,
                ShardToSplit=parent["ShardId"],
                NewStartingHashKey=str(middle),
            )

        # ... when the parent is split, while records keep flowing (paced).
        splitter = asyncio.create_task(split_mid_run())
        await publish(p, [(r.key, r.value) for r in during], rate=1_000, on_sent=on_sent)
    await asyncio.wait_for(splitter, 60)

    valid = sum(r.event is not None for r in recs)
    ids = await asyncio.to_thread(wait_for_lake, workers, valid, 240)
    await asyncio.to_thread(
        wait_for_dead_letters, workers, sum(r.expected_reason is not None for r in recs)
    )
    check_exactly_once(workers, recs, ids)

    shards = {s["ShardId"]: s for s in client.list_shards(StreamName=workers.stream)["Shards"]}
    children = sorted(
        sid for sid, s in shards.items() if s.get("ParentShardId") == parent["ShardId"]
    )
    assert len(children) == 2
    per_shard = Counter(shard for shard, _seq in workers.review_rows())
    assert per_shard[parent["ShardId"]] > 0
    assert all(per_shard[c] > 0 for c in children), per_shard
    # The parent was read to its end and checkpointed before its children were read ...
    cps = wait_for_checkpoints(workers, 3)
    assert cps[parent["ShardId"]]["ended"] is True
    log = workers.log("w1")
    finished_at = log.index(f"shard {parent['ShardId']} of {workers.stream} finished")
    for child in children:
        assert finished_at < log.index(f"reading shard {child} of {workers.stream}")
    # ... so every record of the parent entered the pipeline before any of its children.
    received = {
        shard: [at for s, _q, _r, at in workers.dead_letters() if s == shard] for shard in shards
    }
    assert max(received[parent["ShardId"]]) <= min(min(received[c]) for c in children)


@pytest.mark.parametrize("markers", ["off", "trust"])
async def test_a_worker_killed_restarts_from_its_checkpoint(workers: Workers, markers: str) -> None:
    """With ``trust`` the restarted worker rewinds each shard from its pending markers (lake
    files named by sequence numbers) and still stores every review once."""
    await asyncio.to_thread(workers.server.create_stream, workers.stream, 2)
    recs = records(6_000, seed=33)
    workers.env_extra["SENTIMENT_BATCH__MAX_EVENTS"] = "100"
    workers.env_extra["SENTIMENT_LAKE__REWIND_MARKERS"] = markers
    workers.start("w1")
    await asyncio.to_thread(wait_for_log, workers, "w1", "reading shard")

    async def produce_paced(part: list[GeneratedRecord]) -> None:
        async with producer(workers) as p:
            await publish(p, [(r.key, r.value) for r in part], rate=500)

    # Killed while records flow (paced: 6 s for the first half), with checkpoints written
    # and, usually, lake files ahead of them; the second half comes after the kill.
    producing = asyncio.create_task(produce_paced(recs[:3_000]))
    await asyncio.to_thread(wait_for_reviews, workers, 1_000)
    await asyncio.to_thread(wait_for_checkpoints, workers, 2)
    workers.kill("w1")
    await asyncio.wait_for(producing, 120)
    workers.start("w2")
    await produce_paced(recs[3_000:])
    valid = sum(r.event is not None for r in recs)
    ids = await asyncio.to_thread(wait_for_lake, workers, valid, 240)
    await asyncio.to_thread(
        wait_for_dead_letters, workers, sum(r.expected_reason is not None for r in recs)
    )
    check_exactly_once(workers, recs, ids)
    # The restarted worker resumed after the checkpoints: it did not read the stream again.
    assert "AFTER_SEQUENCE_NUMBER" in workers.log("w2")
    assert 0 < workers.records_received("w2") < len(recs)
    assert (workers.lake / MARKERS).is_dir() == (markers == "trust")


async def test_s3_checkpoints_refuse_a_second_writer(
    seaweedfs: SeaweedFS, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    location = f"s3://{s3_bucket}/checkpoints"

    def store() -> Any:
        return open_checkpoint_store(location, "reviews", s3_endpoint_url=seaweedfs.endpoint_url)

    async with store() as one:
        assert await one.load() == {}
        cps = {"shardId-000000000000": ShardCheckpoint("49680523724503931092476938889590982749")}
        await one.save(cps)
        cps["shardId-000000000001"] = ShardCheckpoint("42", ended=True)
        await one.save(cps)
        async with store() as again:
            assert await again.load() == cps
        async with store() as other:
            await other.load()
            await one.save({**cps, "shardId-000000000002": ShardCheckpoint("7")})
            with pytest.raises(CheckpointConflict):
                await other.save(cps)
    body = seaweedfs.client().get_object(Bucket=s3_bucket, Key="checkpoints/reviews.json")  # type: ignore[attr-defined]
    assert json.loads(body["Body"].read())["shards"]["shardId-000000000002"]["sequence"] == "7"


SEEN = ("sentiment_monitor_events_total", "sentiment_monitor_late_events_total")


def wait_for_seen(w: Workers, name: str, at_least: float, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    value = 0.0
    while time.monotonic() < deadline:
        value = w.metric(name, *SEEN)
        if value >= at_least:
            return value
        time.sleep(0.5)
    pytest.fail(f"{name} saw {value} < {at_least} events\n{w.logs()}")


async def test_monitor_state_survives_a_worker_kill(workers: Workers) -> None:
    await asyncio.to_thread(workers.server.create_stream, workers.stream, 2)
    first, second = records(3_000, seed=41), records(600, seed=42)
    workers.env_extra["SENTIMENT_MONITOR__STATE_SAVE_S"] = "0.5"
    workers.env_extra["SENTIMENT_MONITOR__BASELINE_EVENTS"] = "1000"
    workers.start("w1")
    await asyncio.to_thread(wait_for_log, workers, "w1", "reading shard")
    await produce(workers, first)
    await asyncio.to_thread(wait_for_reviews, workers, 2_800)
    seen = await asyncio.to_thread(wait_for_seen, workers, "w1", 2_800)
    await asyncio.sleep(3)  # commits after the last batch save the state
    assert workers.metric("w1", "sentiment_baseline_ready") == 1
    workers.kill("w1")
    workers.start("w2")
    await asyncio.to_thread(wait_for_log, workers, "w2", "reading shard")
    await produce(workers, second)
    total = sum(r.event is not None for r in first + second)
    await asyncio.to_thread(wait_for_lake, workers, total, 240)
    # The new worker continued the old one's counts and baseline: it has seen more events
    # than were published since it started.
    await asyncio.to_thread(wait_for_seen, workers, "w2", seen + 500)
    assert workers.metric("w2", "sentiment_baseline_ready") == 1


async def test_an_unusable_saved_state_does_not_stop_the_worker(workers: Workers) -> None:
    """A state file the worker cannot continue from (torn by another program): it says so,
    counts it, starts its monitors afresh, and its next save replaces the file. Every review
    reaches the lake."""
    await asyncio.to_thread(workers.server.create_stream, workers.stream, 1)
    state_file = workers.checkpoint_file.with_name(f"{workers.stream}.monitor-state.json")
    state_file.parent.mkdir(parents=True)
    state_file.write_bytes(b'{"version": 1, "groups": ["Dre')
    workers.env_extra["SENTIMENT_MONITOR__STATE_SAVE_S"] = "0.5"
    workers.start("w1")
    await asyncio.to_thread(wait_for_log, workers, "w1", "reading shard")
    recs = records(500, seed=43)
    await produce(workers, recs)
    valid = {r.event.review_id for r in recs if r.event is not None}
    ids = await asyncio.to_thread(wait_for_lake, workers, len(valid), 120)
    assert sorted(ids) == sorted(valid)
    assert workers.metric("w1", "sentiment_monitor_state_discarded_total") == 1
    log = workers.log("w1")
    assert "the saved monitor state cannot be continued from" in log
    assert f"{state_file}: not JSON" in log

    def replaced() -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(json.JSONDecodeError):
                saved: dict[str, Any] = json.loads(state_file.read_bytes())
                return saved
            time.sleep(0.5)
        pytest.fail(f"the state file was not replaced\n{workers.logs()}")

    saved = await asyncio.to_thread(replaced)
    assert saved["version"] == 1 and saved["counters"]["events"] > 0  # the new suite's


async def test_every_output_of_the_kinesis_path_is_written(workers: Workers) -> None:
    """The Kinesis path writes what every path writes: lake reviews, dead letters and alerts,
    and the alert log."""
    await asyncio.to_thread(workers.server.create_stream, workers.stream, 2)
    recs = list(generate("negative-surge", events=8_000, seed=12))
    bad = [(b"k", b"{broken"), (b"k", b'{"review_id": 1}'), (b"k", b"\xff\xfe")]
    workers.env_extra["SENTIMENT_MONITOR__BASELINE_EVENTS"] = "1000"
    workers.env_extra["SENTIMENT_ALERTS_PATH"] = str(workers.root / "alerts.jsonl")
    workers.start("w1")
    await asyncio.to_thread(wait_for_log, workers, "w1", "reading shard")
    async with producer(workers) as p:
        await publish(p, [(r.key, r.value) for r in recs] + bad)
    await asyncio.to_thread(wait_for_lake, workers, len(recs), 240)
    await asyncio.to_thread(wait_for_dead_letters, workers, len(bad))
    alerts_log = workers.root / "alerts.jsonl"

    def shift_logged() -> list[dict[str, Any]]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if alerts_log.exists() and "SentimentShift" in alerts_log.read_text():
                break
            time.sleep(1)
        return [json.loads(line) for line in alerts_log.read_text().splitlines()]

    fired = await asyncio.to_thread(shift_logged)
    assert ("SentimentShift", "Dresses") in {(a["name"], a["category"]) for a in fired}
    stored = ds.dataset(workers.lake / "alerts", format="parquet", partitioning="hive")
    assert {a["alert_id"] for a in fired} <= set(stored.to_table().column("alert_id").to_pylist())
