"""The review queue sink and its durable store (a real SQLite file), and label rows from
Label Studio's export: exact values, restarts, the outbox bound, alert examples."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from monitors.review import SelectionConfig
from stream.events import Alert, Batch, ReviewEvent, ScoredBatch, Severity, SourcePosition
from stream.labelstudio import CHOICES, choice_label, prediction_result
from stream.review import (
    ReviewQueue,
    ReviewStore,
    hash_annotator,
    human_labels,
    label_rows,
    labels_table,
    selector_from,
)

T = datetime(2026, 3, 4, 12, tzinfo=UTC)
NOW = T.timestamp()
CATS = ("Dresses", "Knits")


def _batch(seq: int, first: int, tops: list[float], ratings: list[int | None]) -> Batch:
    n = len(tops)
    events = [
        ReviewEvent(
            review_id=f"r-{first + i}",
            product_id="p",
            product_category=CATS[i % 2],
            review_text=f"text {first + i}",
            channel="web",
            event_time=T,
            rating=ratings[i],
        )
        for i in range(n)
    ]
    positions = [SourcePosition("kafka", "t", "0", first + i) for i in range(n)]
    probs = np.array([((1 - t) / 2, (1 - t) / 2, t) for t in tops], np.float32)
    scored = ScoredBatch.from_predictions(
        events, positions, np.ones(n, np.int8), probs, model=("m", "1"), scored_at=T, latency_ms=1.0
    )
    return Batch(scored=scored, dead=[], positions={}, seq=seq)


def _queue(
    path: Path, *, max_outbox: int = 100, recent_rows: int = 100, budget: int = 100
) -> ReviewQueue:
    store = ReviewStore(path, max_outbox=max_outbox, busy_timeout_s=0.05)
    config = SelectionConfig(CATS, threshold=0.6, audit_rate=0.0, budget_per_hour=budget)
    return ReviewQueue(
        store, selector_from(config, store), clock=lambda: NOW, recent_rows=recent_rows
    )


async def test_picks_become_pending_tasks_with_the_prediction(tmp_path: Path) -> None:
    q = _queue(tmp_path / "s.sqlite")
    await q.write(_batch(0, 0, [0.5, 0.9, 0.9], [None, 5, 2]))
    assert q.durable_seq() == 0
    assert sorted(q.store.rows()) == [
        ("r-0", "pending", "low_confidence", 1.0, 1),
        ("r-2", "pending", "disagreement", 1.0, 1),
    ]
    [(rid, payload), *_] = q.store.take(1)
    assert rid == "r-0"
    assert payload["data"]["review_text"] == "text 0"
    assert payload["data"]["reason"] == "low_confidence"
    assert payload["data"]["event_time"] == "2026-03-04T12:00:00+00:00"
    [prediction] = payload["predictions"]
    assert prediction["score"] == 0.5
    assert prediction["model_version"] == "m:1"
    assert choice_label(prediction["result"]) == 1
    assert q.store.in_doubt() == ["r-0"]
    q.store.close()


async def test_a_restart_queues_nothing_twice_and_keeps_the_budget(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    q = _queue(path)
    await q.write(_batch(0, 0, [0.5, 0.5], [None, None]))
    q.store.mark_sent({"r-0": 11, "r-1": 12}, NOW)
    q.store.close()
    again = _queue(path)
    assert again.selector.spent == {
        ("Dresses", int(NOW // 3600)): 1,
        ("Knits", int(NOW // 3600)): 1,
    }
    await again.write(_batch(0, 0, [0.5, 0.5], [None, None]))  # the same batch, replayed
    assert again.queued == 0
    assert [r[1] for r in sorted(again.store.rows())] == ["sent", "sent"]
    assert again.store.outbox_size() == 0
    again.store.close()


async def test_a_write_the_store_refuses_changes_nothing_and_its_retry_picks_the_same(
    tmp_path: Path,
) -> None:
    """Another program holds the review store's file while a batch is written: the write
    raises, the selector's spent budget is as before (a budget spent on picks never queued
    would turn the retry's picks away), and the retry queues what an undisturbed queue does."""
    first, second = _batch(0, 0, [0.5, 0.5], [None] * 2), _batch(1, 10, [0.5] * 4, [None] * 4)
    q, ref = _queue(tmp_path / "q.sqlite", budget=2), _queue(tmp_path / "ref.sqlite", budget=2)
    for queue in (q, ref):
        await queue.write(first)
    spent = q.selector.state()
    other = sqlite3.connect(q.store.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await q.write(second)
    assert q.selector.state() == spent
    assert [r[0] for r in sorted(q.store.rows())] == ["r-0", "r-1"]
    other.execute("COMMIT")
    other.close()
    await q.write(second)
    await ref.write(second)
    # the budget of 2 an hour per category: r-10 and r-11 picked, r-12 and r-13 turned away
    assert sorted(q.store.rows()) == sorted(ref.store.rows())
    assert [r[0] for r in sorted(q.store.rows())] == ["r-0", "r-1", "r-10", "r-11"]
    assert q.selector.state() == ref.selector.state()
    assert json.loads(q.store.get("selector") or "null") == ref.selector.state()
    for queue in (q, ref):
        queue.store.close()


async def _ticks_until_done(call: Any) -> tuple[int, asyncio.Task[Any]]:
    """Run ``call`` as a task; how often the event loop turned (every 10 ms) until it ended."""
    ticks = 0
    task = asyncio.create_task(call)
    while not task.done():
        await asyncio.sleep(0.01)
        ticks += 1
    return ticks, task


async def test_a_store_held_by_another_program_does_not_stall_the_event_loop(
    tmp_path: Path,
) -> None:
    """The write waits out the store's busy timeout (1 s here) in a thread: other tasks of the
    worker (its Kafka clients' heartbeats) run meanwhile."""
    q = _queue(tmp_path / "q.sqlite")
    q.store.close()
    q.store = ReviewStore(q.store.path, busy_timeout_s=1.0)
    other = sqlite3.connect(q.store.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    ticks, writing = await _ticks_until_done(q.write(_batch(0, 0, [0.5], [None])))
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await writing
    assert ticks > 20  # about 100; none if the write blocked the loop
    other.execute("COMMIT")
    other.close()
    q.store.close()


async def test_the_outbox_is_bounded_and_counts_what_it_turned_away(tmp_path: Path) -> None:
    q = _queue(tmp_path / "s.sqlite", max_outbox=2)
    await q.write(_batch(0, 0, [0.5, 0.5, 0.5], [None] * 3))
    assert (q.queued, q.not_queued, q.store.outbox_size()) == (2, 1, 2)
    q.store.mark_sent({"r-0": 1}, NOW)
    await q.write(_batch(1, 10, [0.5], [None]))
    assert (q.queued, q.not_queued, q.store.outbox_size()) == (3, 1, 2)
    q.store.close()


async def test_examples_of_a_firing_alert_from_an_earlier_batch(tmp_path: Path) -> None:
    q = _queue(tmp_path / "s.sqlite")
    await q.write(_batch(0, 0, [0.95, 0.95], [None, None]))  # confident: nothing picked
    assert q.store.rows() == []
    alert = Alert(
        "a1",
        "SentimentShift",
        "firing",
        Severity.CRITICAL,
        "Dresses",
        "more negative",
        T,
        T,
        T,
        {"example_review_ids": ["r-0", "r-5"]},
    )
    later = _batch(1, 5, [0.95], [None])
    later.alerts = [alert]
    await q.write(later)
    assert sorted((r[0], r[2]) for r in q.store.rows()) == [("r-0", "alert"), ("r-5", "alert")]
    q.store.close()


def _task(review_id: str, annotations: list[dict[str, object]]) -> dict[str, object]:
    return {
        "id": 1,
        "data": {
            "review_id": review_id,
            "product_category": "Knits",
            "predicted": 1,
            "reason": "audit",
            "inclusion_probability": 0.05,
            "event_time": "2026-03-04T12:00:00+00:00",
        },
        "annotations": annotations,
    }


def test_label_rows_take_the_latest_usable_annotation() -> None:
    tasks = [
        _task(
            "r-1",
            [
                {
                    "id": 7,
                    "completed_by": 3,
                    "result": prediction_result(-1),
                    "updated_at": "2026-03-05T10:00:00Z",
                },
                {
                    "id": 8,
                    "completed_by": 4,
                    "result": prediction_result(0),
                    "updated_at": "2026-03-05T11:00:00Z",
                },
                {
                    "id": 9,
                    "completed_by": 5,
                    "result": prediction_result(1),
                    "updated_at": "2026-03-05T12:00:00Z",
                    "was_cancelled": True,
                },
            ],
        ),
        _task(
            "r-2",
            [{"id": 10, "completed_by": 3, "result": [], "updated_at": "2026-03-05T10:00:00Z"}],
        ),
        {"id": 3, "data": {}, "annotations": []},
    ]
    [row] = label_rows(tasks, salt="s")
    assert row["review_id"] == "r-1"
    assert row["label"] == 0
    assert row["annotation_id"] == 8
    assert row["annotator"] == hash_annotator(4, "s")
    assert len(row["annotator"]) == 16 and row["annotator"] != "4"
    # exact: the first 16 hex digits of SHA-256("s:4")
    assert row["annotator"] == "fbb7de01b0480e3b"
    assert row["labeled_at"] == datetime(2026, 3, 5, 11, tzinfo=UTC)
    assert (row["source"], row["dt"], row["inclusion_probability"]) == ("human", "2026-03-05", 0.05)
    table = labels_table([row])
    assert table.column("label").to_pylist() == [0]
    labels = human_labels(table)
    assert (labels.predicted.tolist(), labels.label.tolist()) == ([1], [0])
    assert json.dumps(CHOICES) == '["Negative", "Neutral", "Positive"]'


async def test_readings_of_a_loop(tmp_path: Path) -> None:
    from monitors.human import HumanLabels
    from stream.review import ReviewLoop
    from tests.fakes import offline_review_settings

    settings = offline_review_settings(tmp_path, CATS)
    loop = ReviewLoop(settings, clock=lambda: 1000.0)
    try:
        taken = [*loop.readings(), *loop.outbox.readings()]
        before = {(r.name, tuple(r.labels.values())): r.value for r in taken}
        assert before[("sentiment_review_outbox_tasks", ())] == 0
        assert before[("sentiment_review_selected_total", ("audit",))] == 0
        assert not any(name == "sentiment_review_labels_age_seconds" for name, _ in before)
        loop.labels = HumanLabels.from_columns(
            [1, 1, -1],
            [1, 0, -1],
            ["Knits", "Pants", "Knits"],
            ["audit", "audit", "alert"],
            [0.5, 0.5, 1.0],
            [0, 0, 0],
            [400, 900, 100],
        )
        got = {(r.name, tuple(r.labels.values())): r.value for r in loop.readings()}
    finally:
        await loop.close(send_last=False)
    assert got[("sentiment_review_labels_age_seconds", ())] == 100.0
    assert got[("sentiment_review_agreement_ratio", ("Knits",))] == 1.0
    assert got[("sentiment_review_agreement_ratio", ("other",))] == 0.0  # Pants: not allowed
    assert got[("sentiment_review_accuracy_ratio", ("audit",))] == 0.5
    assert got[("sentiment_review_accuracy_ratio", ("alert",))] == 1.0
    assert got[("sentiment_review_audited_accuracy_ratio", ("estimate",))] == 0.5
    assert got[("sentiment_review_audited_class_share", ("neutral",))] == 0.5
    assert got[("sentiment_review_audited_class_share", ("negative",))] == 0.0


async def test_adopting_the_projects_tasks_settles_the_outbox(tmp_path: Path) -> None:
    q = _queue(tmp_path / "s.sqlite")
    await q.write(_batch(0, 0, [0.5, 0.5, 0.5, 0.5], [None] * 4))
    q.store.mark_sent({"r-0": 10}, NOW)
    assert [r for r, _ in q.store.take(2)] == ["r-1", "r-2"]  # in doubt
    # the project holds r-1 (sent by this worker before a crash) and r-3 and r-9 (sent by
    # the worker that ran the loop before)
    q.store.adopt({"r-1": 21, "r-3": 23, "r-9": 29}, NOW + 5)
    rows = {r[0]: r[1] for r in q.store.rows()}
    assert rows == {"r-0": "sent", "r-1": "sent", "r-2": "pending", "r-3": "sent"}
    assert q.store.in_doubt() == []
    assert q.store.outbox_size() == 1
    # a replayed pick of a review the project holds is not queued again
    await q.write(_batch(1, 8, [0.5, 0.5], [None, None]))
    assert sorted(r[0] for r in q.store.rows()) == ["r-0", "r-1", "r-2", "r-3", "r-8"]
    q.store.close()


class _Project:
    """An in-process stand-in for the few Label Studio calls the sender makes."""

    def __init__(self, held: dict[str, int]) -> None:
        self.tasks = dict(held)
        self.imports: list[list[str]] = []
        self.pages: list[int] = []  # the task pages read, in order
        self.cut_at = 0  # the read (1, 2, ...) that times out; 0: none

    async def find_project(self, title: str) -> dict[str, object]:
        return {"id": 7, "title": title}

    async def task_page(self, project: int, page: int, page_size: int) -> list[dict[str, Any]]:
        assert project == 7
        self.pages.append(page)
        if self.cut_at == len(self.pages):  # the send's deadline strikes during this read
            raise TimeoutError
        held = sorted(self.tasks.items(), key=lambda kv: kv[1])
        chunk = held[(page - 1) * page_size : page * page_size]
        return [{"id": t, "data": {"review_id": r}} for r, t in chunk]

    async def import_tasks(self, project: int, payloads: list[dict[str, Any]]) -> list[int]:
        ids = [str(p["data"]["review_id"]) for p in payloads]
        self.imports.append(ids)
        for rid in ids:
            assert rid not in self.tasks, f"a second task for {rid}"
            self.tasks[rid] = 100 + len(self.tasks)
        return [self.tasks[r] for r in ids]


async def test_a_paused_sender_sends_nothing_and_a_new_owner_adopts_first(
    tmp_path: Path,
) -> None:
    from stream.review import ReviewSender

    project = _Project({"r-1": 5})  # sent by the previous owner
    q = _queue(tmp_path / "s.sqlite")
    sender = ReviewSender(cast("Any", project), q.store, "reviews", clock=lambda: NOW)
    sender.paused = True
    await q.write(_batch(0, 0, [0.5, 0.5, 0.5], [None] * 3))
    assert await sender.send_once() == 0
    assert project.imports == []
    sender.take_over()
    assert await sender.send_once() == 2
    assert project.imports == [["r-0", "r-2"]]
    assert {r[0]: r[1] for r in q.store.rows()} == {"r-0": "sent", "r-1": "sent", "r-2": "sent"}
    await sender.pause()
    await q.write(_batch(1, 3, [0.5], [None]))
    assert await sender.send_once() == 0
    assert q.store.outbox_size() == 1
    q.store.close()


def test_truth_readings_report_the_newest_windows() -> None:
    from monitors.human import NO_LABEL as N
    from monitors.human import ground_truth_windows
    from stream.review import truth_readings

    assert truth_readings([]) == []
    windows = ground_truth_windows(
        100.0,
        [10, 20, 30, 150, 160],
        [1, 1, 0, 1, -1],
        [1, N, 1, 1, -1],
        [N, 0, 0, N, N],
        ["", "audit", "low_confidence", "", ""],
        [1.0, 0.5, 1.0, 1.0, 1.0],
    )
    got = {(r.name, tuple(r.labels.values())): r.value for r in truth_readings(windows)}
    # the newest window (start 100) has ratings only: both right
    assert got[("sentiment_review_window_start_seconds", ())] == 100.0
    assert got[("sentiment_review_window_accuracy_ratio", ())] == 1.0
    assert got[("sentiment_review_window_labels", ("human",))] == 0
    assert got[("sentiment_review_window_labels", ("rating",))] == 2
    assert got[("sentiment_review_window_class_share", ("negative",))] == 0.5
    assert got[("sentiment_review_window_class_share", ("positive",))] == 0.5
    # the audit and the selected samples come from the newest window that has them
    assert got[("sentiment_review_window_audited_accuracy_ratio", ("estimate",))] == 0.0
    assert got[("sentiment_review_window_audited_accuracy_ratio", ("lower",))] == 0.0
    assert got[("sentiment_review_window_selected_accuracy_ratio", ())] == 1.0
    assert len(got) == 12


def test_ground_truth_from_a_local_lake(tmp_path: Path) -> None:
    """The lake's reviews and labels joined: the newest human label over the rating's class,
    a review the lake holds twice counted once."""
    import pyarrow.parquet as pq

    from stream.review import ground_truth
    from stream.settings import Settings

    lake = tmp_path / "lake"
    table = _batch(0, 0, [0.9, 0.9, 0.5, 0.9], [5, 1, None, 3]).scored.table  # type: ignore[attr-defined]
    for name in ("a", "b"):  # r-0 .. r-3, and all of them again (a replayed batch)
        part = lake / "reviews" / "dt=2026-03-04" / "product_category=Knits"
        part.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.drop_columns(["dt"]), part / f"{name}.parquet")

    def label(review_id: str, value: int, reason: str, p: float, hour: int) -> dict[str, object]:
        return {
            "review_id": review_id,
            "label": value,
            "annotator": "x",
            "labeled_at": datetime(2026, 3, 5, hour, tzinfo=UTC),
            "source": "human",
            "product_category": "Knits",
            "predicted": 1,
            "reason": reason,
            "inclusion_probability": p,
            "event_time": T,
            "dt": "2026-03-05",
        }

    rows = [
        label("r-1", 1, "audit", 0.5, 9),  # over the 1-star rating
        label("r-2", -1, "low_confidence", 1.0, 8),
        label("r-2", 0, "low_confidence", 1.0, 9),  # the newer label wins
    ]
    (lake / "labels" / "dt=2026-03-05").mkdir(parents=True)
    pq.write_table(
        labels_table(rows).drop_columns(["dt"]), lake / "labels" / "dt=2026-03-05" / "l.parquet"
    )
    [window] = ground_truth(Settings(lake_path=str(lake)))
    assert window.start_s == NOW  # the hour window of T
    # truths: r-0 1 (rating 5), r-1 1 (person), r-2 0 (person), r-3 0 (rating 3); all predicted 1
    assert window.confusion.tolist() == [[0, 0, 0], [0, 0, 0], [0, 2, 2]]
    assert (window.human, window.rated, window.accuracy) == (2, 2, 0.5)
    assert window.class_shares == (0.0, 0.5, 0.5)
    assert window.audited is not None and window.audited.value == 1.0
    assert window.selected is not None and window.selected.accuracy == 0.0


def test_truth_readings_export_the_windows_tests_against_the_baseline() -> None:
    from monitors.human import NO_LABEL as N
    from monitors.human import ground_truth_windows
    from stream.review import truth_readings

    # 40 reviews, all truly negative by people's labels, the model right on 10: against a
    # baseline of an even mix that the model got 90% right, both tests fire
    n = 40
    windows = ground_truth_windows(
        100.0,
        [float(i) for i in range(n)],
        [-1] * 10 + [1] * 30,
        [N] * n,
        [-1] * n,
        ["audit"] * n,
        [1.0] * n,
        reference_counts=[300, 300, 300],
        reference_confusion=[[270, 15, 15], [15, 270, 15], [15, 15, 270]],
    )
    w = windows[-1]
    assert w.label_drift is not None and w.accuracy_drift is not None
    got = {(r.name, tuple(r.labels.values())): r.value for r in truth_readings(windows)}
    assert got[("sentiment_review_window_test_p_value", ("label_drift",))] == (
        w.label_drift.p_value
    )
    assert got[("sentiment_review_window_test_p_value", ("accuracy_drop",))] == (
        w.accuracy_drift.p_value
    )
    assert w.label_drift.p_value < 1e-6 and w.accuracy_drift.accuracy == 0.25
    assert got[("sentiment_review_window_test_fired", ("label_drift",))] == 1.0
    assert got[("sentiment_review_window_test_fired", ("accuracy_drop",))] == 1.0


def test_annotator_hashes_use_the_secret_salt_when_one_is_set() -> None:
    from pydantic import SecretStr

    from stream.settings import ReviewSettings

    assert ReviewSettings(project="Reviews").hash_salt() == "Reviews"
    salted = ReviewSettings(project="Reviews", annotator_salt=SecretStr("k3y"))
    assert salted.hash_salt() == "k3y"
    assert "k3y" not in repr(salted)  # a secret: never printed with the settings
    assert hash_annotator(4, salted.hash_salt()) != hash_annotator(4, "Reviews")


async def test_a_project_read_cut_short_resumes_where_it_stopped(tmp_path: Path) -> None:
    """A large project takes longer to read than one send may wait: the pages read survive
    the timeout, and the next send reads only the rest (instead of starting over forever)."""
    from stream.review import ReviewSender

    project = _Project({f"old-{i}": 10 + i for i in range(7)})  # the previous owner's tasks
    project.cut_at = 3
    q = _queue(tmp_path / "s.sqlite")
    sender = ReviewSender(cast("Any", project), q.store, "reviews", clock=lambda: NOW, page_size=2)
    sender.take_over()
    await q.write(_batch(0, 0, [0.5, 0.5, 0.5], [None] * 3))
    with pytest.raises(TimeoutError):
        await sender.send_once()
    assert project.pages == [1, 2, 3] and project.imports == []
    assert await sender.send_once() == 3  # pages 3 and 4 (the last, short), then the picks
    assert project.pages == [1, 2, 3, 3, 4]
    assert project.imports == [["r-0", "r-1", "r-2"]]
    # a new takeover reads the project again from its first page: 10 tasks, 5 full pages
    sender.take_over()
    assert await sender.send_once() == 0
    assert project.pages[5:] == [1, 2, 3, 4, 5, 6]
    q.store.close()


async def test_the_sender_and_the_sync_wait_for_a_held_store_off_the_event_loop(
    tmp_path: Path,
) -> None:
    """The sender's and the label sync's store calls run in a thread: a file held by another
    program stalls neither the event loop (the worker's Kafka clients) nor, once free, them."""
    from stream.review import ReviewSender, sync_labels

    q = _queue(tmp_path / "s.sqlite")
    await q.write(_batch(0, 0, [0.5, 0.5], [None] * 2))
    q.store.close()
    q.store = ReviewStore(q.store.path, busy_timeout_s=1.0)
    q.store.put("project:reviews", "7")  # known: the held file stops the writes, not this
    project = _Project({})
    sender = ReviewSender(cast("Any", project), q.store, "reviews", clock=lambda: NOW)
    other = sqlite3.connect(q.store.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    ticks, sending = await _ticks_until_done(sender.send_once())
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await sending
    assert ticks > 20  # about 100; 1 if the store's wait blocked the loop
    assert project.imports == []

    annotated = [
        _task(
            "r-0",
            [
                {
                    "id": 8,
                    "completed_by": 4,
                    "result": prediction_result(-1),
                    "updated_at": "2026-03-05T11:00:00Z",
                }
            ],
        )
    ]

    class _Annotated:
        async def find_project(self, title: str) -> dict[str, object]:
            return {"id": 7, "title": title}

        async def annotated_tasks(self, project: int) -> list[dict[str, object]]:
            return annotated

    written: list[str] = []

    async def put(path: str, data: bytes) -> None:
        written.append(path)

    sync = sync_labels(cast("Any", _Annotated()), q.store, "reviews", put, salt="s")
    ticks, syncing = await _ticks_until_done(sync)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await syncing
    assert ticks > 20
    assert len(written) == 1  # the labels reached the lake; remembering them waited

    other.execute("COMMIT")  # the file is free again: both go through
    other.close()
    assert await sender.send_once() == 2
    assert project.imports == [["r-0", "r-1"]]
    result = await sync_labels(cast("Any", _Annotated()), q.store, "reviews", put, salt="s")
    assert result.new == 1 and written[1] == written[0]  # the same file again, nothing lost
    assert q.store.synced() == {8: "2026-03-05T11:00:00Z"}
    q.store.close()
