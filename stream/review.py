"""The human-in-the-loop review queue: selected reviews go to Label Studio as tasks, people's
labels come back to the lake and to the monitors.

::

    scored batch ─► ReviewQueue (a sink): ReviewSelector picks ─► outbox (SQLite, bounded)
                                                                    │ ReviewSender, in batches
                                                                    ▼
    lake labels/ ◄── sync_labels ◄── annotations ◄── people ◄── Label Studio tasks
         │                                                       (with the model's
         └─► HumanLabels: accuracy per sample, audited accuracy    pre-annotation)

* :class:`ReviewStore` is the durable record (one SQLite file): every selected review once
  (``review_id`` is the key, so a replayed batch or a restarted worker cannot queue it twice),
  its status (``pending`` -> ``sending`` -> ``sent``) and Label Studio task id, the annotations
  already synced, and the project id. The outbox is the rows not yet ``sent``; it is bounded
  (``max_outbox``): a selection that finds it full is not made (counted), nothing already
  selected is dropped.
* :class:`ReviewQueue` is a pipeline sink: ``write(batch)`` runs the selection and stores the
  picks before the batch counts as durable.
* :class:`ReviewSender` sends the outbox in batches. A request whose outcome is unknown (a
  timeout, a dropped connection, a crash) leaves its rows ``sending``; before anything else is
  sent they are reconciled against the review ids the project holds, so a task is never
  created twice. While Label Studio is down it keeps the outbox and retries with backoff.
* :func:`sync_labels` pulls completed annotations and writes the new ones to the lake
  (``labels/dt=<labelled date>/``) with the annotator's id hashed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from monitors.drift import DistributionDrift
from monitors.human import (
    NO_LABEL,
    Estimate,
    GroundTruthWindow,
    HumanLabels,
    ground_truth_windows,
)
from monitors.readings import Reading
from monitors.review import NO_RATING, Pick, ReviewSelector, SelectionConfig
from stream.errors import ConfigurationError, describe
from stream.events import (
    LABEL_SCHEMA,
    LABELS,
    Batch,
    category_or_other,
    scored_table,
    sentiments_from_ratings,
)
from stream.labelstudio import (
    LABEL_CONFIG,
    LabelStudio,
    add_review_ids,
    choice_label,
    prediction_result,
)
from stream.retry import Backoff, retriable
from stream.settings import Settings

__all__ = [
    "OutboxReadings",
    "ReviewLoop",
    "ReviewQueue",
    "ReviewSender",
    "ReviewStore",
    "SyncResult",
    "ensure_project",
    "ground_truth",
    "hash_annotator",
    "human_labels",
    "label_rows",
    "labels_table",
    "lake_training_labels",
    "read_labels",
    "review_client",
    "review_readings",
    "selection_config",
    "selector_from",
    "sync_labels",
    "truth_readings",
]

log = logging.getLogger(__name__)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS tasks (
    review_id TEXT PRIMARY KEY,
    category TEXT NOT NULL,
    reason TEXT NOT NULL,
    inclusion_probability REAL NOT NULL,
    predicted INTEGER NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    task_id INTEGER,
    selected_at REAL NOT NULL,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status, selected_at);
CREATE TABLE IF NOT EXISTS annotations (
    annotation_id INTEGER PRIMARY KEY,
    review_id TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS adopted (review_id TEXT PRIMARY KEY, task_id INTEGER NOT NULL);
"""


class ReviewStore:
    """The review loop's durable record (see the module doc). One process writes it."""

    def __init__(
        self, path: Path, *, max_outbox: int = 100_000, busy_timeout_s: float = 5.0
    ) -> None:
        self.path = path
        self.max_outbox = max_outbox
        path.parent.mkdir(parents=True, exist_ok=True)
        # The metrics server reads the outbox size from its own thread: one lock for all.
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, sql: str, *args: object) -> Any:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return None if row is None else row[0]

    def _all(self, sql: str, *args: object) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- meta ------------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        value = self._one("SELECT value FROM meta WHERE key = ?", key)
        return None if value is None else str(value)

    def put(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- outbox ----------------------------------------------------------------------------

    def outbox_size(self) -> int:
        return int(self._one("SELECT count(*) FROM tasks WHERE status IN ('pending', 'sending')"))

    def add(
        self,
        rows: Sequence[tuple[Pick, int, dict[str, Any]]],
        now_s: float,
        meta: Mapping[str, str] | None = None,
    ) -> int:
        """Queue picks (with the model's class and the task payload) that are new (neither
        queued before nor :meth:`adopt`-ed from the project), and put ``meta``, in one
        transaction; returns how many were queued. Stops at the outbox bound."""
        added = 0
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", (meta or {}).items())
            room = self.max_outbox - int(
                db.execute(
                    "SELECT count(*) FROM tasks WHERE status IN ('pending', 'sending')"
                ).fetchone()[0]
            )
            for pick, predicted, payload in rows:
                if added >= room:
                    break
                cur = db.execute(
                    "INSERT OR IGNORE INTO tasks (review_id, category, reason,"
                    " inclusion_probability, predicted, payload, status, selected_at)"
                    " SELECT ?, ?, ?, ?, ?, ?, 'pending', ?"
                    " WHERE NOT EXISTS (SELECT 1 FROM adopted WHERE review_id = ?)",
                    (
                        pick.review_id,
                        pick.category,
                        pick.reason,
                        pick.inclusion_probability,
                        predicted,
                        json.dumps(payload, ensure_ascii=False),
                        now_s,
                        pick.review_id,
                    ),
                )
                added += cur.rowcount
        return added

    def take(self, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Up to ``limit`` pending tasks, oldest first, marked ``sending``."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT review_id, payload FROM tasks WHERE status = 'pending'"
                " ORDER BY selected_at, review_id LIMIT ?",
                (limit,),
            ).fetchall()
            db.executemany(
                "UPDATE tasks SET status = 'sending' WHERE review_id = ?", [(r[0],) for r in rows]
            )
        return [(str(r[0]), json.loads(r[1])) for r in rows]

    def rows(self) -> list[tuple[str, str, str, float, int]]:
        """Every selected review: (review_id, status, reason, inclusion probability, the
        model's class)."""
        return [
            (str(a), str(b), str(c), float(d), int(e))
            for a, b, c, d, e in self._all(
                "SELECT review_id, status, reason, inclusion_probability, predicted FROM tasks"
            )
        ]

    def in_doubt(self) -> list[str]:
        return [r[0] for r in self._all("SELECT review_id FROM tasks WHERE status = 'sending'")]

    def mark_sent(self, task_ids: dict[str, int], now_s: float) -> None:
        with self._tx() as db:
            db.executemany(
                "UPDATE tasks SET status = 'sent', task_id = ?, sent_at = ? WHERE review_id = ?",
                [(task, now_s, review) for review, task in task_ids.items()],
            )

    def mark_pending(self, review_ids: Sequence[str]) -> None:
        with self._tx() as db:
            db.executemany(
                "UPDATE tasks SET status = 'pending' WHERE review_id = ?",
                [(r,) for r in review_ids],
            )

    def adopt(self, held: dict[str, int], now_s: float) -> None:
        """Take the project's tasks (review_id -> task id) as this store's own: a row not yet
        ``sent`` whose review the project holds becomes ``sent``, a row left ``sending`` that
        it does not hold is ``pending`` again, and a later pick of a held review is not
        queued. What a worker does when it takes over the review loop from another one."""
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO adopted VALUES (?, ?)", sorted(held.items()))
            db.execute(
                "UPDATE tasks SET status = 'sent', sent_at = ?,"
                " task_id = (SELECT task_id FROM adopted a WHERE a.review_id = tasks.review_id)"
                " WHERE status IN ('pending', 'sending')"
                " AND review_id IN (SELECT review_id FROM adopted)",
                (now_s,),
            )
            db.execute("UPDATE tasks SET status = 'pending' WHERE status = 'sending'")

    # -- annotations -----------------------------------------------------------------------

    def synced(self) -> dict[int, str]:
        """annotation id -> its ``updated_at`` as last synced."""
        return {
            int(a): str(u)
            for a, u in self._all("SELECT annotation_id, updated_at FROM annotations")
        }

    def mark_synced(self, rows: Sequence[tuple[int, str, str]]) -> None:
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO annotations VALUES (?, ?, ?)", rows)


# -- the sink ----------------------------------------------------------------------------------


def _task_payload(row: dict[str, Any], pick: Pick, score: float) -> dict[str, Any]:
    event_time = row["event_time"]
    data = {
        "review_id": pick.review_id,
        "review_text": row["review_text"],
        "product_category": row["product_category"],
        "rating": row["rating"],
        "event_time": event_time.isoformat() if isinstance(event_time, datetime) else event_time,
        "reason": pick.reason,
        "inclusion_probability": pick.inclusion_probability,
        "predicted": int(row["sentiment"]),
        "model_version": f"{row['model_name']}:{row['model_version']}",
    }
    prediction = {
        "model_version": data["model_version"],
        "score": round(score, 6),
        "result": prediction_result(int(row["sentiment"])),
    }
    return {"data": data, "predictions": [prediction]}


_COLUMNS: Final = (
    "review_id",
    "product_category",
    "review_text",
    "rating",
    "event_time",
    "sentiment",
    "p_negative",
    "p_neutral",
    "p_positive",
    "model_name",
    "model_version",
)


def _floats(column: pa.ChunkedArray) -> npt.NDArray[np.float64]:
    """A numeric column as floats, NaN where it is null."""
    out: npt.NDArray[np.float64] = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    return out


@dataclass(slots=True)
class ReviewQueue:
    """A pipeline sink that selects reviews for people and queues them in the store. Stored
    synchronously, so ``durable_seq`` is the last batch written. ``recent_rows`` reviews are
    kept to find the examples of an alert raised after they passed.

    A write the store refuses (a disk error, a lock held too long) raises and changes
    nothing: the picks and the selector's spent budget are stored in one transaction, and
    the selector goes back to where it was, so writing the batch again picks the same
    reviews."""

    store: ReviewStore
    selector: ReviewSelector
    clock: Callable[[], float] = time.time
    recent_rows: int = 20_000
    not_queued: int = 0  #: picks the full outbox turned away
    queued: int = 0
    _recent: deque[pa.Table] = field(default_factory=deque)
    _recent_n: int = 0
    _seq: int = -1

    async def write(self, batch: Batch) -> None:
        if len(batch.scored):
            await self._select(scored_table(batch.scored).select(list(_COLUMNS)), batch)
        self._seq = batch.seq

    async def _select(self, table: pa.Table, batch: Batch) -> None:
        alert_ids = {
            str(r)
            for a in batch.alerts
            if a.status == "firing"
            for r in a.evidence.get("example_review_ids", ())
        }
        candidates = self._with_recent(table, alert_ids)
        ids = candidates.column("review_id").to_pylist()
        probs = np.column_stack(
            [candidates.column(c).to_numpy() for c in ("p_negative", "p_neutral", "p_positive")]
        )
        true = sentiments_from_ratings(_floats(candidates.column("rating")), NO_RATING)
        # Reviews of earlier batches are candidates only as alert examples.
        fresh = len(ids) - len(table)
        now = self.clock()
        before = self.selector.state()
        picks = self.selector.select(
            ids,
            candidates.column("product_category").to_pylist(),
            candidates.column("sentiment").to_numpy(),
            probs,
            true,
            now,
            alert_ids,
            first_row=fresh,
        )
        if picks:
            rows = candidates.take([p.row for p in picks]).to_pylist()
            top = probs.max(axis=1)
            try:
                # in a thread: a store held by another program waits out its busy timeout
                # there, not in the event loop the worker's Kafka clients run in
                queued = await asyncio.to_thread(
                    self.store.add,
                    [
                        (p, int(r["sentiment"]), _task_payload(r, p, float(top[p.row])))
                        for p, r in zip(picks, rows, strict=True)
                    ],
                    now,
                    {"selector": json.dumps(self.selector.state())},
                )
            except BaseException:
                self.selector = ReviewSelector.from_state(self.selector.config, before)
                raise
            self.queued += queued
            self.not_queued += len(picks) - queued
        self._remember(table)

    def _with_recent(self, table: pa.Table, alert_ids: set[str]) -> pa.Table:
        if not alert_ids or not self._recent:
            return table
        earlier = pa.concat_tables(self._recent)
        hit = earlier.filter(pc.is_in(earlier.column("review_id"), pa.array(sorted(alert_ids))))
        return pa.concat_tables([hit, table]) if len(hit) else table

    def _remember(self, table: pa.Table) -> None:
        if self.recent_rows <= 0:
            return
        self._recent.append(table)
        self._recent_n += len(table)
        while self._recent and self._recent_n - len(self._recent[0]) >= self.recent_rows:
            self._recent_n -= len(self._recent.popleft())

    def durable_seq(self) -> int:
        return self._seq

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


# -- Label Studio ------------------------------------------------------------------------------


async def ensure_project(client: LabelStudio, store: ReviewStore, title: str) -> int:
    """The id of the project named ``title``: the one the store remembers, else the one the
    server has, else a new one (with the three-choice labeling config)."""
    known = await asyncio.to_thread(store.get, f"project:{title}")
    if known is not None:
        return int(known)
    project = await client.find_project(title)
    if project is None:
        project = await client.create_project(
            title,
            LABEL_CONFIG,
            description="Reviews the sentiment model is unsure of, plus a random audit sample.",
            show_collab_predictions=True,
        )
    pid = int(project["id"])
    await asyncio.to_thread(store.put, f"project:{title}", str(pid))
    return pid


@dataclass(slots=True)
class ReviewSender:
    """Sends the outbox to one project in batches (see the module doc)."""

    client: LabelStudio
    store: ReviewStore
    title: str
    batch_size: int = 100
    backoff: Backoff = field(default_factory=lambda: Backoff(initial_s=0.5, max_s=30.0))
    clock: Callable[[], float] = time.time
    sent: int = 0  #: tasks created
    failures: int = 0  #: failed send attempts
    #: sends nothing while True (a worker that does not own the review loop)
    paused: bool = False
    #: tasks per page when reading which review ids the project holds
    page_size: int = 500
    _project: int | None = None
    _adopt: bool = False
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: the walk through the project's tasks in progress: next page, review ids held so far
    _scan: tuple[int, dict[str, int]] | None = None

    async def project(self) -> int:
        if self._project is None:
            self._project = await ensure_project(self.client, self.store, self.title)
        return self._project

    async def held(self) -> dict[str, int]:
        """review_id -> task id of every task the project holds, read a page at a time. The
        pages read so far outlive a send cut short by its deadline (a large project takes
        longer to read than one send may wait), so the next send goes on where it stopped
        instead of starting over and never finishing. Only this sender creates tasks while
        it reads (the loop's owner; a paused one sends nothing), so no task lands on a page
        already read."""
        project = await self.project()
        page, held = self._scan or (1, {})
        while True:
            tasks = await self.client.task_page(project, page, self.page_size)
            add_review_ids(held, tasks)
            page += 1
            self._scan = (page, held)  # kept until the walk ends: a cancelled send resumes
            if len(tasks) < self.page_size:
                self._scan = None
                return held

    async def reconcile(self) -> None:
        """Rows left ``sending`` (outcome unknown): sent if the project holds their review
        id, else pending again."""
        doubt = await asyncio.to_thread(self.store.in_doubt)
        if not doubt:
            return
        held = await self.held()
        found = {r: held[r] for r in doubt if r in held}
        await asyncio.to_thread(self.store.mark_sent, found, self.clock())
        await asyncio.to_thread(self.store.mark_pending, [r for r in doubt if r not in held])

    def take_over(self) -> None:
        """Start sending as the loop's new owner: before the first task, every review id the
        project holds is adopted (:meth:`ReviewStore.adopt`), so picks another worker already
        sent, or picks of a replayed feed, never make a second task."""
        self.paused = False
        self._adopt = True
        self._scan = None  # pages read before another owner sent are stale: read them again

    async def pause(self) -> None:
        """Stop sending: waits for a send in flight, and no later one starts until
        :meth:`take_over`. Once it returns this worker creates no task (the fence a new owner
        relies on)."""
        async with self._lock:
            self.paused = True

    async def send_once(self) -> int:
        """Send everything pending now, a batch per request; returns the tasks created.
        Raises what the server answered (the rows stay ``sending`` until reconciled).
        Sends nothing while :attr:`paused`."""
        async with self._lock:
            if self.paused:
                return 0
            if self._adopt:
                held = await self.held()
                await asyncio.to_thread(self.store.adopt, held, self.clock())
                self._adopt = False
            return await self._send()

    async def _send(self) -> int:
        await self.reconcile()
        project = await self.project()
        created = 0
        while True:
            rows = await asyncio.to_thread(self.store.take, self.batch_size)
            if not rows:
                return created
            task_ids = await self.client.import_tasks(project, [payload for _, payload in rows])
            if len(task_ids) == len(rows):
                sent = {r: t for (r, _), t in zip(rows, task_ids, strict=True)}
                await asyncio.to_thread(self.store.mark_sent, sent, self.clock())
            else:  # an older server without task ids: look them up
                await self.reconcile()
            created += len(rows)
            self.sent += len(rows)

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        """Send every ``interval_s`` until ``stop``; while the server fails, wait with
        backoff (the outbox keeps everything)."""
        retry = 0
        while not stop.is_set():
            try:
                await self.send_once()
                retry = 0
                wait = interval_s
            except Exception as err:
                if not retriable(err):
                    raise
                self.failures += 1
                wait = self.backoff.delay(retry, random.random)
                retry += 1
                log.warning("sending review tasks failed (%s); retry in %.1fs", describe(err), wait)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await stop.wait()


def _log_stopped(task: asyncio.Task[None]) -> None:
    """A background task of the loop ended with an error the loop does not retry: say so when
    it happens, not at shutdown (the outbox keeps what it had not sent)."""
    err = None if task.cancelled() else task.exception()
    if err is not None:
        log.error("review %s stopped: %s", task.get_name(), describe(err))


#: How long closing the loop waits for its last send.
LAST_SEND_TIMEOUT_S: Final = 10.0


# -- sync --------------------------------------------------------------------------------------


def hash_annotator(user: object, salt: str) -> str:
    """An annotator's id as the lake keeps it: SHA-256 of ``salt:user``, 16 hex digits."""
    return hashlib.sha256(f"{salt}:{user}".encode()).hexdigest()[:16]


def _time(value: object) -> datetime:
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)


def label_rows(tasks: Sequence[dict[str, Any]], salt: str) -> list[dict[str, Any]]:
    """One row per task with a usable annotation (the latest one that chose a class and was
    not cancelled), in the lake's ``labels`` schema plus ``annotation_id``."""
    rows: list[dict[str, Any]] = []
    for task in tasks:
        data = task.get("data") or {}
        review_id = data.get("review_id")
        if not isinstance(review_id, str):
            continue
        best: tuple[datetime, dict[str, Any], int] | None = None
        for ann in task.get("annotations") or ():
            if ann.get("was_cancelled"):
                continue
            label = choice_label(ann.get("result") or ())
            if label is None:
                continue
            when = _time(ann.get("updated_at") or ann.get("created_at"))
            if best is None or when >= best[0]:
                best = (when, ann, label)
        if best is None:
            continue
        when, ann, label = best
        rows.append(
            {
                "review_id": review_id,
                "label": label,
                "annotator": hash_annotator(ann.get("completed_by"), salt),
                "labeled_at": when,
                "source": "human",
                "product_category": str(data.get("product_category", "")),
                "predicted": int(data.get("predicted", 0)),
                "reason": str(data.get("reason", "")),
                "inclusion_probability": float(data.get("inclusion_probability", 1.0)),
                "event_time": _time(data.get("event_time")),
                "dt": when.strftime("%Y-%m-%d"),
                "annotation_id": int(ann["id"]),
                "updated_at": str(ann.get("updated_at") or ann.get("created_at")),
            }
        )
    return rows


def labels_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    names = LABEL_SCHEMA.names
    return pa.Table.from_pylist([{k: r[k] for k in names} for r in rows], schema=LABEL_SCHEMA)


def human_labels(table: pa.Table) -> HumanLabels:
    """The monitors' view of a ``labels`` table (the newest label of each review)."""
    if len(table):
        order = pc.sort_indices(table, [("review_id", "ascending"), ("labeled_at", "descending")])
        table = table.take(order)
        ids = table.column("review_id").to_pylist()
        keep = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]]
        table = table.take(keep)

    def seconds(name: str) -> list[float]:
        return [t.timestamp() for t in table.column(name).to_pylist()]

    return HumanLabels.from_columns(
        table.column("predicted").to_pylist(),
        table.column("label").to_pylist(),
        table.column("product_category").to_pylist(),
        table.column("reason").to_pylist(),
        table.column("inclusion_probability").to_pylist(),
        seconds("event_time"),
        seconds("labeled_at"),
    )


@dataclass(frozen=True, slots=True)
class SyncResult:
    new: int  #: labels written this time
    path: str | None  #: the lake file they went to


async def sync_labels(
    client: LabelStudio,
    store: ReviewStore,
    title: str,
    put: Callable[[str, bytes], Awaitable[None]],
    *,
    salt: str,
    compression: str = "zstd",
) -> SyncResult:
    """Pull the annotated tasks, write the labels not synced yet (new or changed) to the
    lake through ``put(path, data)`` (a lake writer's), then remember them."""
    from sinks.lake import to_parquet_bytes

    project = await ensure_project(client, store, title)
    tasks = await client.annotated_tasks(project)
    done = await asyncio.to_thread(store.synced)
    rows = [r for r in label_rows(tasks, salt) if done.get(r["annotation_id"]) != r["updated_at"]]
    if not rows:
        return SyncResult(0, None)
    key = ",".join(f"{r['annotation_id']}@{r['updated_at']}" for r in rows)
    name = hashlib.sha256(key.encode()).hexdigest()[:16]
    dt = max(r["dt"] for r in rows)
    path = f"labels/dt={dt}/labels-{name}.parquet"
    await put(path, to_parquet_bytes(labels_table(rows), compression))
    synced = [(r["annotation_id"], r["review_id"], r["updated_at"]) for r in rows]
    await asyncio.to_thread(store.mark_synced, synced)
    return SyncResult(len(rows), path)


def selector_from(config: SelectionConfig, store: ReviewStore) -> ReviewSelector:
    """A selector that continues the budget the store remembers."""
    saved = store.get("selector")
    return (
        ReviewSelector(config)
        if saved is None
        else ReviewSelector.from_state(config, json.loads(saved))
    )


# -- the loop in a running pipeline ------------------------------------------------------------


def selection_config(settings: Settings) -> SelectionConfig:
    r = settings.review
    return SelectionConfig(
        categories=tuple(settings.categories),
        threshold=r.threshold,
        audit_rate=r.audit_rate,
        budget_per_hour=r.budget_per_hour,
        seed=r.seed,
    )


def review_client(settings: Settings) -> LabelStudio:
    token = settings.review.api_token()
    if not token:
        raise ConfigurationError(
            "the review loop needs a Label Studio API token: set SENTIMENT_REVIEW__TOKEN "
            "or SENTIMENT_REVIEW__TOKEN_FILE"
        )
    return LabelStudio(settings.review.url, token)


def read_labels(settings: Settings) -> pa.Table:
    """Every label in the lake's ``labels/`` (empty, with its schema, when there is none)."""
    from stream.lake_factory import build_lake_query

    return build_lake_query(settings).query("SELECT * FROM labels")


#: how many of the newest windows with a person's label are evaluated on ground truth
TRUTH_WINDOWS: Final = 24


def ground_truth(
    settings: Settings, reference: Any = None, windows: int = TRUTH_WINDOWS
) -> list[GroundTruthWindow]:
    """The monitor windows (``monitor.window_minutes``) that hold a person's label, the newest
    ``windows`` of them, evaluated on the best truth of each review the lake holds: the
    newest human label where one was synced, else its rating's class. ``reference`` (the
    monitors' baseline, when there is one) gives the label drift and accuracy tests their
    reference."""
    from stream.lake_factory import build_lake_query

    window_s = settings.monitor.window_minutes * 60
    table = build_lake_query(settings).query(
        "WITH latest AS (SELECT review_id, arg_max(label, labeled_at) AS label,"  # noqa: S608 - only integers are formatted in
        " arg_max(reason, labeled_at) AS reason,"
        " arg_max(inclusion_probability, labeled_at) AS p FROM labels GROUP BY review_id),"
        f" wins AS (SELECT DISTINCT floor(epoch(event_time) / {window_s}) AS w FROM labels"
        f" ORDER BY w DESC LIMIT {int(windows)}),"
        " r AS (SELECT review_id, any_value(event_time) AS event_time,"
        " any_value(sentiment) AS sentiment, any_value(rating) AS rating FROM reviews"
        f" WHERE floor(epoch(event_time) / {window_s}) IN (SELECT w FROM wins)"
        " GROUP BY review_id)"
        " SELECT epoch(r.event_time) AS t, r.sentiment, r.rating, l.label, l.reason, l.p"
        " FROM r LEFT JOIN latest l USING (review_id)"
        " WHERE r.rating IS NOT NULL OR l.label IS NOT NULL ORDER BY review_id"
    )
    rated = sentiments_from_ratings(_floats(table.column("rating")), NO_LABEL)
    true_counts = getattr(reference, "true_counts", None)
    confusion = getattr(reference, "confusion", None)
    return ground_truth_windows(
        float(window_s),
        table.column("t").to_numpy().astype(np.float64),
        table.column("sentiment").to_numpy().astype(np.int64),
        rated,
        table.column("label").fill_null(NO_LABEL).to_numpy().astype(np.int64),
        [str(r or "") for r in table.column("reason").to_pylist()],
        table.column("p").fill_null(1.0).to_numpy().astype(np.float64),
        reference_counts=None if true_counts is None else list(true_counts),
        reference_confusion=None if confusion is None else [list(row) for row in confusion],
        alpha=settings.monitor.false_alarm_rate,
    )


class ReviewLoop:
    """The review queue of a running pipeline: the :class:`ReviewQueue` sink, a task that
    sends the outbox, and one that syncs annotations into the lake and into
    :attr:`labels`. Its :meth:`readings` are the ``sentiment_review_*`` metrics."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from stream.lake_factory import build_lake_writer

        r = settings.review
        self.settings = settings
        self.clock = clock
        self.store = ReviewStore(r.state_path, max_outbox=r.max_outbox)
        self.client = review_client(settings)
        self.queue = ReviewQueue(
            self.store,
            selector_from(selection_config(settings), self.store),
            clock=clock,
            recent_rows=r.recent_rows,
        )
        self.sender = ReviewSender(
            self.client, self.store, r.project, batch_size=r.send_batch, clock=clock
        )
        #: the outbox depth, read from the store (on a scrape's own thread)
        self.outbox = OutboxReadings(self.store)
        self.writer = build_lake_writer(settings)
        self.labels: HumanLabels | None = None
        #: windows evaluated on people's labels over ratings (see :func:`ground_truth`)
        self.truth: list[GroundTruthWindow] = []
        #: the monitors' baseline, when there is one (the reference of the truth windows)
        self.reference: Callable[[], Any] = lambda: None
        self.received = 0
        self.sync_failures = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start sending and syncing in the background (call inside the event loop)."""
        r = self.settings.review
        self._tasks = [
            asyncio.create_task(self.sender.run(r.send_interval_s, self._stop), name="review-send"),
            asyncio.create_task(self._sync_every(r.sync_interval_s), name="review-sync"),
        ]
        for task in self._tasks:
            task.add_done_callback(_log_stopped)

    async def sync(self) -> SyncResult:
        """Pull annotations into the lake once, and refresh :attr:`labels` from it."""
        result = await sync_labels(
            self.client,
            self.store,
            self.settings.review.project,
            self.writer.put,
            salt=self.settings.review.hash_salt(),
            compression=self.settings.lake.compression,
        )
        self.received += result.new
        self.labels = human_labels(await asyncio.to_thread(read_labels, self.settings))
        if len(self.labels):
            self.truth = await asyncio.to_thread(ground_truth, self.settings, self.reference())
        return result

    async def send_now(self, timeout_s: float) -> int:
        """One send of the outbox, waiting at most ``timeout_s``; returns the tasks created.
        A failure (the server down, or refusing) is counted and logged, never raised: the
        outbox keeps the rows (a request cut by the timeout leaves them in doubt, reconciled
        before the next send)."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self.sender.send_once()
        except Exception as err:  # noqa: BLE001 - the outbox keeps the rows
            self.sender.failures += 1
            log.warning("sending review tasks failed (%s); they stay in the outbox", describe(err))
            return 0

    async def sync_now(self) -> None:
        """One :meth:`sync`; a failure the server may recover from is counted and logged."""
        try:
            await self.sync()
        except Exception as err:
            if not retriable(err):
                raise
            self.sync_failures += 1
            log.warning("syncing review labels failed (%s)", describe(err))

    async def _sync_every(self, interval_s: float) -> None:
        while not self._stop.is_set():
            await self.sync_now()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await self._stop.wait()

    async def close(self, *, send_last: bool = True) -> None:
        """Stop the background tasks (a task that failed was logged when it stopped), then a
        last send of at most :data:`LAST_SEND_TIMEOUT_S`, and close the client and the store."""
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if send_last:
            await self.send_now(LAST_SEND_TIMEOUT_S)
        await self.client.close()
        self.store.close()

    def readings(self) -> list[Reading]:
        """The metrics this loop keeps in memory (take them on its event loop); the store's
        outbox depth is :attr:`outbox`'s."""
        return review_readings(self, self.clock())


def _r(
    name: str, doc: str, value: float, kind: Literal["gauge", "counter"] = "gauge", **labels: str
) -> Reading:
    return Reading(name, doc, kind, labels, float(value))


class OutboxReadings:
    """The review store's outbox depth, the one ``sentiment_review_*`` metric read from the
    store. The store is thread-safe, so a scrape reads it on its own thread: on the event
    loop, a store file that another program holds would stall the loop (and the worker's
    Kafka clients on it) for SQLite's busy timeout."""

    def __init__(self, store: ReviewStore) -> None:
        self.store = store

    def readings(self) -> list[Reading]:
        return [
            _r(
                "sentiment_review_outbox_tasks",
                "Reviews selected for people and not yet sent to Label Studio (queue depth).",
                self.store.outbox_size(),
            )
        ]


def review_readings(loop: ReviewLoop, now_s: float) -> list[Reading]:
    """The ``sentiment_review_*`` metrics of a running loop (docs/metrics.md) that it keeps in
    memory, all but the outbox depth (:class:`OutboxReadings`). The loop's tasks change them,
    so they are read on its event loop (:class:`stream.metrics.ReadingsCollector`)."""
    sel = loop.queue.selector
    out = [
        _r(
            "sentiment_review_tasks_sent_total",
            "Tasks created in Label Studio.",
            loop.sender.sent,
            "counter",
        ),
        _r(
            "sentiment_review_send_failures_total",
            "Failed attempts to send the outbox (Label Studio down or refusing).",
            loop.sender.failures,
            "counter",
        ),
        _r(
            "sentiment_review_annotations_received_total",
            "Human labels synced from Label Studio into the lake.",
            loop.received,
            "counter",
        ),
        _r(
            "sentiment_review_outbox_full_total",
            "Selections not made because the outbox was full.",
            loop.queue.not_queued,
            "counter",
        ),
    ]
    for reason in sel.picked:
        out.append(
            _r(
                "sentiment_review_selected_total",
                "Reviews selected for people, by reason.",
                sel.picked[reason],
                "counter",
                reason=reason,
            )
        )
        out.append(
            _r(
                "sentiment_review_over_budget_total",
                "Reviews the hourly budget per category kept from people, by reason.",
                sel.dropped[reason],
                "counter",
                reason=reason,
            )
        )
    labels = loop.labels
    if labels is None or not len(labels):
        return out
    newest = labels.newest_label_s()
    if newest is not None:
        out.append(
            _r(
                "sentiment_review_labels_age_seconds",
                "Time since the newest human label was given.",
                max(0.0, now_s - newest),
            )
        )
    allowed = set(loop.settings.categories)
    for category, (_n, share) in labels.agreement().items():
        out.append(
            _r(
                "sentiment_review_agreement_ratio",
                "Share of human labels equal to the model's class, by category.",
                share,
                product_category=category_or_other(category, allowed),
            )
        )
    for sample, scores in labels.by_sample().items():
        out.append(
            _r(
                "sentiment_review_accuracy_ratio",
                "Model accuracy on human labels, by selection reason (only audit is unbiased).",
                scores.accuracy,
                sample=sample,
            )
        )
        out.append(
            _r(
                "sentiment_review_macro_f1_ratio",
                "Model macro-F1 on human labels, by selection reason.",
                scores.macro_f1,
                sample=sample,
            )
        )
    shares = labels.audited_class_shares()
    if shares is not None:
        for name, share in zip(LABELS.values(), shares, strict=True):
            out.append(
                _r(
                    "sentiment_review_audited_class_share",
                    "The stream's true class mix estimated from the audit sample's human "
                    "labels (label drift on human labels), by sentiment.",
                    share,
                    sentiment=name,
                )
            )
    audited = labels.audited_accuracy(0.95)
    if audited is not None:
        out += _bounds(
            "sentiment_review_audited_accuracy_ratio",
            "The stream's accuracy estimated from the random audit sample, with its "
            "interval (bound: estimate, lower, upper).",
            audited,
        )
    return out + truth_readings(loop.truth)


def _bounds(name: str, doc: str, e: Estimate) -> list[Reading]:
    return [
        _r(name, doc, value, bound=bound)
        for bound, value in (("estimate", e.value), ("lower", e.lower), ("upper", e.upper))
    ]


def truth_readings(windows: Sequence[GroundTruthWindow]) -> list[Reading]:
    """The ``sentiment_review_window_*`` metrics: the newest window evaluated on people's
    labels over ratings, and apart from it the newest window's audit estimate and the
    newest window's biased (selected) sample."""
    if not windows:
        return []
    w = windows[-1]
    out = [
        _r(
            "sentiment_review_window_start_seconds",
            "Start of the newest event-time window that holds a human label.",
            w.start_s,
        ),
        _r(
            "sentiment_review_window_accuracy_ratio",
            "Model accuracy in that window on the human label of a review where there is one, "
            "else on its rating's class.",
            w.accuracy,
        ),
        _r(
            "sentiment_review_window_macro_f1_ratio",
            "Model macro-F1 in that window, human labels over ratings.",
            w.macro_f1,
        ),
    ]
    for source, n in (("human", w.human), ("rating", w.rated)):
        out.append(
            _r(
                "sentiment_review_window_labels",
                "Reviews of that window whose truth is a human label or a rating, by source.",
                n,
                source=source,
            )
        )
    for name, share in zip(LABELS.values(), w.class_shares, strict=True):
        out.append(
            _r(
                "sentiment_review_window_class_share",
                "The true class mix of that window, human labels over ratings (label drift), "
                "by sentiment.",
                share,
                sentiment=name,
            )
        )
    for test, result in (("label_drift", w.label_drift), ("accuracy_drop", w.accuracy_drift)):
        if result is None:
            continue  # no baseline with ratings to test against
        fired = result.drifted if isinstance(result, DistributionDrift) else result.dropped
        out += [
            _r(
                "sentiment_review_window_test_p_value",
                "p-value of that window's test against the baseline, human labels over ratings "
                "(test: label_drift, the true class mix; accuracy_drop).",
                result.p_value,
                test=test,
            ),
            _r(
                "sentiment_review_window_test_fired",
                "1 when that window's test finds a change (p below the window tests' alpha and "
                "the change above its floor), else 0, by test.",
                float(fired),
                test=test,
            ),
        ]
    audited = next((x.audited for x in reversed(windows) if x.audited is not None), None)
    if audited is not None:
        out += _bounds(
            "sentiment_review_window_audited_accuracy_ratio",
            "Accuracy on the random audit sample of the newest window that has one, with its "
            "interval (bound: estimate, lower, upper).",
            audited,
        )
    selected = next((x.selected for x in reversed(windows) if x.selected is not None), None)
    if selected is not None:
        out.append(
            _r(
                "sentiment_review_window_selected_accuracy_ratio",
                "Accuracy on the other human labels (low confidence, disagreement, alert: "
                "biased) of the newest window that has them.",
                selected.accuracy,
            )
        )
    return out


def lake_training_labels(settings: Settings) -> tuple[list[str], list[int]]:
    """The newest human label of every review the lake holds, with the review's text (what
    ``model train --labels lake`` adds to the training set)."""
    from stream.lake_factory import build_lake_query

    table = build_lake_query(settings).query(
        "WITH latest AS (SELECT review_id, arg_max(label, labeled_at) AS label FROM labels"
        " GROUP BY review_id),"
        " texts AS (SELECT review_id, any_value(review_text) AS review_text FROM reviews"
        " WHERE review_id IN (SELECT review_id FROM latest) GROUP BY review_id)"
        " SELECT t.review_text, l.label FROM latest l JOIN texts t USING (review_id)"
        " ORDER BY review_id"
    )
    return (
        [str(t) for t in table.column("review_text").to_pylist()],
        [int(v) for v in table.column("label").to_pylist()],
    )
