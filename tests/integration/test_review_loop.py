"""The human-in-the-loop review queue against a real Label Studio server (one per session).

A replayed stream runs through ``sentiment-monitor run`` with the review queue on; its picks
arrive in Label Studio as tasks with the model's pre-annotation; a rerun (a restarted worker
replaying the same records) adds no task; with the server stopped the picks wait in the outbox
and all arrive once it is back; tasks annotated through the API as a person would are synced
by ``sentiment-monitor review sync`` into the lake's ``labels/`` and into the accuracy
metrics (the audit sample's estimate apart from the low-confidence sample).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from monitors.human import wilson_interval
from stream.kafka_app import MonitorStateStore
from stream.labelstudio import LabelStudio, choice_label
from stream.metrics import ReadingsCollector
from stream.producer import KafkaReviewProducer, publish
from stream.review import ReviewLoop, ReviewStore, human_labels, read_labels
from stream.settings import Settings
from stream.synthetic import generate
from tests.integration.test_dashboards import (
    REVIEW_METRIC,
    REVIEW_ONLY,
    documented,
    has_data,
    queries,
)
from tests.servers.kafka import KafkaBroker, create_topics
from tests.servers.labelstudio import LabelStudioServer, LabelStudioUnavailableError
from tests.servers.ports import free_port
from tests.servers.prometheus import (
    PrometheusServer,
    prometheus_config,
    scrape_families,
    wait_until,
)
from tests.servers.workers import KafkaWorkers

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def label_studio() -> Iterator[LabelStudioServer]:
    try:
        server = LabelStudioServer()
    except LabelStudioUnavailableError as err:
        pytest.fail(f"cannot run the Label Studio server the review tests need: {err}")
    with server:
        yield server


def _env(server: LabelStudioServer, tmp: Path, project: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
    env.update(
        PYTHONPATH=str(REPO),
        SENTIMENT_LAKE_PATH=str(tmp / "lake"),
        SENTIMENT_ALERTS_PATH=str(tmp / "alerts.jsonl"),
        SENTIMENT_REVIEW__ENABLED="true",
        SENTIMENT_REVIEW__URL=server.url,
        SENTIMENT_REVIEW__TOKEN=server.token,
        SENTIMENT_REVIEW__PROJECT=project,
        SENTIMENT_REVIEW__STATE_PATH=str(tmp / "review.sqlite"),
        SENTIMENT_REVIEW__AUDIT_RATE="0.03",
        SENTIMENT_REVIEW__THRESHOLD="0.7",
        SENTIMENT_REVIEW__BUDGET_PER_HOUR="1000",
        SENTIMENT_REVIEW__SEND_INTERVAL_S="0.5",
        SENTIMENT_REVIEW__SYNC_INTERVAL_S="3600",
        **extra,
    )
    return env


def _invoke(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _cli(env: dict[str, str], *args: str) -> str:
    done = _invoke(env, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def _run(env: dict[str, str], seed: int, events: int = 600, scenario: str = "steady") -> str:
    return _cli(
        env,
        "run",
        "--scenario",
        scenario,
        "--events",
        str(events),
        "--seed",
        str(seed),
        "--no-progress",
        "--metrics-port",
        "0",
    )


def _settings(env: dict[str, str]) -> Settings:
    keys = {k: v for k, v in env.items() if k.startswith("SENTIMENT_")}
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        return Settings()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


async def _tasks(server: LabelStudioServer, project_id: int) -> dict[str, int]:
    async with LabelStudio(server.url, server.token) as client:
        return await client.task_review_ids(project_id)


def _store_rows(path: Path) -> dict[str, tuple[str, str, float, int]]:
    store = ReviewStore(path)
    try:
        rows = store.rows()
    finally:
        store.close()
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def test_review_loop_end_to_end(label_studio: LabelStudioServer, tmp_path: Path) -> None:
    project = f"reviews-{uuid.uuid4().hex[:8]}"
    env = _env(label_studio, tmp_path, project)
    state = tmp_path / "review.sqlite"

    # a wrong token: one clear line and exit status 1, not a traceback
    refused = _invoke({**env, "SENTIMENT_REVIEW__TOKEN": "not-the-token"}, "review", "setup")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr
    assert "ClientResponseError: 401" in refused.stdout
    assert "check SENTIMENT_REVIEW__TOKEN" in refused.stdout

    # setup is idempotent: the same project twice
    first = _cli(env, "review", "setup")
    assert _cli(env, "review", "setup").split("id ")[1] == first.split("id ")[1]
    project_id = int(first.split("id ")[1].split()[0])

    # a pipeline run: every pick becomes one task with the model's pre-annotation
    _run(env, seed=3)
    rows = _store_rows(state)
    reasons = {r[1] for r in rows.values()}
    assert {"audit", "low_confidence"} <= reasons
    assert all(r[0] == "sent" for r in rows.values())
    tasks = asyncio.run(_tasks(label_studio, project_id))
    assert set(tasks) == set(rows)

    # a restarted worker replaying the same records: no duplicate task
    _run(env, seed=3)
    assert _store_rows(state).keys() == rows.keys()
    assert asyncio.run(_tasks(label_studio, project_id)) == tasks

    # Label Studio down: the picks of a new stream wait in the outbox ...
    label_studio.stop()
    _run(env, seed=4, scenario="negative-surge")  # another stream: its own lake files
    waiting = {k: v for k, v in _store_rows(state).items() if k not in rows}
    assert waiting
    assert all(v[0] != "sent" for v in waiting.values())
    # ... and all arrive once it is back (same data, same port)
    label_studio.start()
    assert "0 left in the outbox" in _cli(env, "review", "send")
    after = asyncio.run(_tasks(label_studio, project_id))
    assert set(after) == set(rows) | set(waiting)
    assert len(after) == len(set(after.values()))

    # a worker killed after Label Studio created a task but before the outbox recorded it:
    # the row is in doubt; the next send finds the task and creates no second one
    doubtful = sorted(waiting)[0]
    store = ReviewStore(state)
    store.mark_pending([doubtful])
    assert [r for r, _ in store.take(1)] == [doubtful]
    store.close()
    assert "sent 0 tasks; 0 left in the outbox" in _cli(env, "review", "send")
    assert _store_rows(state)[doubtful][0] == "sent"
    assert asyncio.run(_tasks(label_studio, project_id)) == after

    # people label the tasks: they agree with the model except on every third audited one
    everything = _store_rows(state)
    expected = _annotate(label_studio, project_id, after, everything)

    out = _cli(env, "review", "sync")
    assert f"{len(after)} new labels" in out
    settings = _settings(env)
    lake = read_labels(settings)
    assert lake.num_rows == len(after)
    assert set(lake.column("source").to_pylist()) == {"human"}
    assert "1" not in set(lake.column("annotator").to_pylist())  # hashed, not the user id
    labels = {
        r: lab
        for r, lab in zip(
            lake.column("review_id").to_pylist(), lake.column("label").to_pylist(), strict=True
        )
    }
    assert labels == {r: e[0] for r, e in expected.items()}

    # a second sync finds nothing new
    assert "0 new labels" in _cli(env, "review", "sync")

    # the accuracy metrics: audit apart from the low-confidence sample
    audit = [e for e in expected.values() if e[1] == "audit"]
    audit_right = sum(1 for label, _, predicted in audit if label == predicted)
    value = audit_right / len(audit)
    low, high = wilson_interval(value, len(audit), 0.95)
    assert f"audited accuracy (unbiased, random audit sample of {len(audit)}): {value:.3f}" in out
    readings = _loop_readings(settings)
    assert readings[("sentiment_review_audited_accuracy_ratio", "estimate")] == pytest.approx(value)
    assert readings[("sentiment_review_audited_accuracy_ratio", "lower")] == pytest.approx(low)
    assert readings[("sentiment_review_audited_accuracy_ratio", "upper")] == pytest.approx(high)
    low_conf = [e for e in expected.values() if e[1] == "low_confidence"]
    assert readings[("sentiment_review_accuracy_ratio", "low_confidence")] == 1.0
    assert len(low_conf) > 0
    assert human_labels(lake).audited_accuracy() is not None
    for test in ("label_drift", "accuracy_drop"):  # the newest window against the baseline
        assert 0.0 <= readings[("sentiment_review_window_test_p_value", test)] <= 1.0
        assert readings[("sentiment_review_window_test_fired", test)] in (0.0, 1.0)

    # the labels improve the model: `model train --labels lake` adds every one of them
    data = tmp_path / "reviews.csv"
    with (REPO.parent / "shared" / "data" / "reviews.csv").open() as src:
        data.write_text("".join(line for _, line in zip(range(901), src, strict=False)))
    trained = _cli(
        env, "model", "train", "--data", str(data), "--labels", "lake", "--out", str(tmp_path / "m")
    )
    assert f"labels added: {len(after)};" in trained
    assert (tmp_path / "m" / "MODEL_CARD.md").is_file()  # the card is saved with the model
    assert "before" in trained and "after" in trained


def _annotate(
    server: LabelStudioServer,
    project_id: int,
    tasks: dict[str, int],
    rows: dict[str, tuple[str, str, float, int]],
) -> dict[str, tuple[int, str, int]]:
    """Annotate every task; returns review_id -> (label, reason, model's class)."""

    async def go() -> dict[str, tuple[int, str, int]]:
        out: dict[str, tuple[int, str, int]] = {}
        audited = 0
        for review_id in sorted(tasks):
            _status, reason, _p, predicted = rows[review_id]
            label = predicted
            if reason == "audit":
                audited += 1
                if audited % 3 == 0:
                    label = (predicted + 2) % 3 - 1  # another class
            out[review_id] = (label, reason, predicted)
        gate = asyncio.Semaphore(4)
        async with LabelStudio(server.url, server.token) as client:

            async def one(review_id: str) -> None:
                async with gate:
                    made = await client.annotate(tasks[review_id], out[review_id][0], lead_time=2.5)
                assert choice_label(made["result"]) == out[review_id][0]

            await asyncio.gather(*(one(r) for r in out))
        return out

    return asyncio.run(go())


def _loop_readings(settings: Settings) -> dict[tuple[str, str], float]:
    """Sync through a :class:`ReviewLoop`, serve its metrics on /metrics to a real Prometheus,
    and check the catalog rows and the dashboards' review panels against it; returns the
    loop's readings as (name, first label value) -> value."""

    from endpoint.inference import default_model_dir
    from endpoint.model import SentimentModel

    # The workers hand the loop the monitors' baseline; here the model's validation matrix
    # (``[true, predicted]``, a baseline holds ``[predicted, true]``) stands in for it.
    matrix = SentimentModel.load(default_model_dir()).confusion_matrix
    assert matrix is not None
    reference = SimpleNamespace(
        true_counts=tuple(int(x) for x in matrix.sum(axis=1)),
        confusion=tuple(tuple(int(x) for x in row) for row in matrix.T),
    )

    async def go() -> dict[tuple[str, str], Any]:
        loop = ReviewLoop(settings)
        loop.reference = lambda: reference
        try:
            await loop.sync()
            _check_exposition(loop)
            return {(r.name, next(iter(r.labels.values()), "")): r.value for r in loop.readings()}
        finally:
            await loop.close(send_last=False)

    return asyncio.run(go())


def _check_exposition(loop: ReviewLoop) -> None:
    registry = CollectorRegistry()
    registry.register(ReadingsCollector(loop))
    registry.register(ReadingsCollector(loop.outbox))
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        families = {
            f"{f.name}_total" if f.type == "counter" else f.name: f
            for f in scrape_families(port).values()
            if f.name.startswith(REVIEW_METRIC) and not f.name.endswith("_created")
        }
        doc = {n: w for n, w in documented().items() if w in REVIEW_ONLY}
        assert set(families) == set(doc)
        assert all(f.samples for f in families.values())
        with PrometheusServer(prometheus_config([f"127.0.0.1:{port}"])) as prometheus:
            review_panels = [(b, t, e) for b, t, e in queries() if REVIEW_METRIC in e]
            assert len(review_panels) >= 6

            def answered() -> bool:
                return all(has_data(prometheus.query(e)) for _, _, e in review_panels)

            wait_until(answered, 60, "data for every review panel", interval=1.0)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- the Kafka workers ---------------------------------------------------------------------


@dataclass(kw_only=True)
class _ReviewWorkers(KafkaWorkers):
    """Kafka workers with the review loop on, each with its own outbox (as on its own
    machine); ``w1-restarted`` is ``w1`` again, with ``w1``'s outbox."""

    server: LabelStudioServer
    project: str

    def state(self, name: str) -> Path:
        return self.root / f"review-{name.split('-')[0]}.sqlite"

    def env(self, name: str = "") -> dict[str, str]:
        # "fresh" is a worker of another group on the same topics: its monitor agent reads
        # the whole feed again, with an empty outbox
        other = {"SENTIMENT_KAFKA__GROUP_ID": f"{self.group}-fresh"} if name == "fresh" else {}
        return {
            **super().env(name),
            **other,
            "SENTIMENT_REVIEW__ENABLED": "true",
            "SENTIMENT_REVIEW__URL": self.server.url,
            "SENTIMENT_REVIEW__TOKEN": self.server.token,
            "SENTIMENT_REVIEW__PROJECT": self.project,
            "SENTIMENT_REVIEW__STATE_PATH": str(self.state(name)),
            "SENTIMENT_REVIEW__AUDIT_RATE": "0.03",
            "SENTIMENT_REVIEW__THRESHOLD": "0.55",
            "SENTIMENT_REVIEW__BUDGET_PER_HOUR": "100000",
            "SENTIMENT_REVIEW__SEND_INTERVAL_S": "0.5",
            "SENTIMENT_REVIEW__SYNC_INTERVAL_S": "3600",
            "SENTIMENT_MONITOR__STATE_SAVE_S": "0.5",
        }

    def selected(self) -> set[str]:
        """Every review any worker's outbox selected."""
        return {
            r
            for name in ("w1", "w2")
            if self.state(name).exists()
            for r in _store_rows(self.state(name))
        }

    def sent(self, name: str, metric: str = "sentiment_review_tasks_sent_total") -> float:
        """Tasks the worker created (0 while its /metrics is not up yet)."""
        try:
            return self.metric(name, metric)
        except OSError:
            return 0.0


async def _review_ids_of_tasks(server: LabelStudioServer, title: str) -> list[str]:
    """The review id of every task of the project (a review twice if it has two tasks)."""
    async with LabelStudio(server.url, server.token) as client:
        project = await client.find_project(title)
        if project is None:
            return []
        return [str(t["data"]["review_id"]) for t in await client.tasks(int(project["id"]))]


def _publish(w: KafkaWorkers, bootstrap: str, first: int, n: int) -> set[str]:
    recs = list(generate("steady", events=first + n, seed=41))[first:]

    async def go() -> None:
        async with KafkaReviewProducer(bootstrap, topic=w.topic("reviews")) as producer:
            await publish(producer, [(r.key, r.value) for r in recs])

    asyncio.run(go())
    return {r.event.review_id for r in recs if r.event is not None}


def _until(what: str, check: Callable[[], bool], w: KafkaWorkers, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{w.logs()}")
        time.sleep(1)


@pytest.mark.slow
def test_kafka_workers_make_one_task_per_review_across_rebalances_and_a_crash(
    label_studio: LabelStudioServer, kafka_broker: KafkaBroker, unique_group: str, tmp_path: Path
) -> None:
    project = f"kafka-{uuid.uuid4().hex[:8]}"
    with _ReviewWorkers(
        root=tmp_path,
        bootstrap=kafka_broker.bootstrap,
        group=unique_group,
        partitions=2,
        server=label_studio,
        project=project,
    ) as w:
        asyncio.run(create_topics(kafka_broker.bootstrap, [w.topic("reviews")], 2))
        w.env_extra["SENTIMENT_BATCH__MAX_EVENTS"] = "50"
        # w1 alone owns the feed and sends; w2 joins (a rebalance) while more arrives, then
        # the feed's first owner dies mid-stream and comes back.
        w.start("w1")
        valid = _publish(w, kafka_broker.bootstrap, 0, 1500)
        _until("w1's first tasks", lambda: w.sent("w1") > 0, w)
        w.start("w2")
        valid |= _publish(w, kafka_broker.bootstrap, 1500, 1500)
        _until("a share of the stream in the lake", lambda: len(set(w.lake_ids())) > 2000, w)
        w.kill("w1")
        valid |= _publish(w, kafka_broker.bootstrap, 3000, 1000)
        # the feed moved to w2, whose outbox knows nothing of w1's tasks
        _until("w2's first tasks", lambda: w.sent("w2") > 0, w)
        w.start("w1-restarted")
        _until("the whole stream in the lake", lambda: set(w.lake_ids()) >= valid, w, 240)

        def settled() -> bool:
            tasks = asyncio.run(_review_ids_of_tasks(label_studio, project))
            return len(tasks) > 0 and set(tasks) == w.selected()

        _until("every selected review in Label Studio", settled, w)
        time.sleep(3)  # a late duplicate would show itself
        tasks = asyncio.run(_review_ids_of_tasks(label_studio, project))
        assert [r for r, n in Counter(tasks).items() if n > 1] == [], "a review has two tasks"
        assert set(tasks) == w.selected()
        assert set(tasks) <= valid
        assert len(tasks) > 50
        assert w.selected() > _store_rows(w.state("w2")).keys()  # w1 sent some, w2 others
        # the selector's budget moved with the feed: the saved state counts every pick
        state = asyncio.run(MonitorStateStore(_settings(w.env("w2"))).load())
        assert state is not None
        picked = sum(state["review_selector"]["picked"].values())
        assert picked >= len(set(tasks))

        # A worker with an empty outbox that reads the whole feed again (the extreme of a
        # takeover) adopts the project's tasks first, and makes none twice.
        w.start("fresh")
        _until(
            "the feed read again",
            lambda: w.sent("fresh", "sentiment_review_selected_total") >= picked + len(tasks),
            w,
        )
        time.sleep(3)
        again = asyncio.run(_review_ids_of_tasks(label_studio, project))
        assert sorted(again) == sorted(tasks)
        assert w.sent("fresh") == 0


def test_review_commands_fail_in_one_line_on_bad_settings_and_a_server_that_is_not_label_studio(
    tmp_path: Path,
) -> None:
    """A page that is not Label Studio's API (a login page, a proxy's page, a wrong URL) and
    an invalid setting each give one line and exit status 1, not a traceback."""
    import http.server
    import threading

    class LoginPage(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>Please sign in</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), LoginPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
        env.update(
            PYTHONPATH=str(REPO),
            SENTIMENT_REVIEW__URL=f"http://127.0.0.1:{server.server_address[1]}",
            SENTIMENT_REVIEW__TOKEN="t",  # noqa: S106 - a test token
            SENTIMENT_REVIEW__STATE_PATH=str(tmp_path / "review.sqlite"),
        )
        done = _invoke(env, "review", "setup")
        out = done.stdout + done.stderr
        assert done.returncode == 1 and "Traceback" not in out, out
        assert "ConfigurationError: GET" in out and "not JSON" in out
        bad = _invoke({**env, "SENTIMENT_REVIEW__THRESHOLD": "abc"}, "review", "send")
        out = bad.stdout + bad.stderr
        assert bad.returncode == 1 and "Traceback" not in out, out
        assert "invalid settings: review.threshold:" in out and "abc" not in out
    finally:
        server.shutdown()
        server.server_close()


async def test_the_monitor_agent_retries_queueing_picks_the_review_store_refuses(
    label_studio: LabelStudioServer,
    kafka_broker: KafkaBroker,
    unique_group: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another program holds the review store's SQLite file while the Kafka monitor agent
    queues its picks: the agent retries (each try counted under ``sink="review_queue"``)
    instead of crashing, and once the file is free every pick is queued once and reaches
    Label Studio."""
    from aiokafka import AIOKafkaProducer

    from monitors import MonitorSuite
    from stream.app import Runtime, build_monitor, build_review_loop
    from stream.kafka_app import SELECTOR_KEY, STATE_KEY, _Monitoring
    from stream.kafka_topics import ensure_topics
    from stream.settings import KafkaSettings
    from tests.integration.test_monitor_handover import discarded, feed

    project = f"agent-{uuid.uuid4().hex[:8]}"
    base = _settings(_env(label_studio, tmp_path, project))
    settings = base.model_copy(
        update={
            "kafka": KafkaSettings(
                bootstrap_servers=kafka_broker.bootstrap,
                group_id=unique_group,
                reviews_topic=f"{unique_group}.reviews",
                enriched_topic=f"{unique_group}.enriched",
                dlq_topic=f"{unique_group}.dlq",
                alerts_topic=f"{unique_group}.alerts",
                monitor_feed_topic=f"{unique_group}.feed",
                monitor_state_topic=f"{unique_group}.state",
            ),
            "metrics_port": 0,
        }
    )
    await ensure_topics(settings.kafka)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    await producer.start()
    rt = Runtime(settings)
    agent = _Monitoring(
        settings,
        rt,
        lambda state: build_monitor(settings, state),
        build_review_loop(settings),
    )
    review = agent.review
    assert review is not None

    def errors() -> float:
        sample = rt.metrics.registry.get_sample_value(
            "sentiment_sink_errors_total", {"sink": "review_queue"}
        )
        return sample or 0.0

    other = sqlite3.connect(settings.review.state_path, isolation_level=None)
    try:
        events = await feed(settings, producer, 600)
        # a saved state whose selector part is malformed: the suite continues from it, the
        # selector starts afresh
        fresh = build_monitor(settings)
        assert isinstance(fresh, MonitorSuite)
        suite_state = json.dumps({**fresh.state(), SELECTOR_KEY: {"spent": 7}})
        await producer.send_and_wait(
            settings.kafka.monitor_state_topic, suite_state.encode(), key=STATE_KEY, partition=0
        )
        other.execute("BEGIN EXCLUSIVE")
        await agent.feed_assigned()
        handling = asyncio.create_task(agent.handle(events, producer))
        async with asyncio.timeout(120):
            while errors() < 2:
                assert not handling.done(), handling.exception()
                await asyncio.sleep(0.2)
        other.execute("COMMIT")
        async with asyncio.timeout(120):
            await handling
        assert discarded(rt) == 1
        assert "so the review selector starts afresh" in caplog.text
        picked = sum(review.queue.selector.picked.values())
        rows = review.store.rows()
        assert picked > 0 and len(rows) == len({r[0] for r in rows}) == picked
        async with asyncio.timeout(60):
            while sorted(await _review_ids_of_tasks(label_studio, project)) != sorted(
                r[0] for r in rows
            ):
                await review.send_now(10.0)
                await asyncio.sleep(0.5)
    finally:
        other.close()
        await agent.close()
        await review.close(send_last=False)
        await rt.close()
        await producer.stop()
