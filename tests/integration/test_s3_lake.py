"""The S3 lake against real servers: SeaweedFS (``weed mini``) for S3, moto_server for Glue and
for S3 with SSE-KMS. Written through the sink, read back with awswrangler, DuckDB and the CLI.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import awswrangler as wr
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from sinks.catalog import GlueCatalog
from sinks.lake import (
    MARKERS,
    BufferLimits,
    LakeSink,
    LocalLakeWriter,
    Markers,
    marker_prefix,
    parse_file_range,
)
from sinks.query import DuckDBLake
from sinks.s3 import Encryption, S3LakeWriter
from stream.events import (
    ALERT_SCHEMA,
    DEAD_LETTER_SCHEMA,
    SCORED_SCHEMA,
    Alert,
    Batch,
    DeadLetter,
    Reason,
    ReviewEvent,
    ScoredReview,
    Severity,
    SourcePosition,
)
from stream.lake_cli import lake_app
from stream.lake_factory import build_lake_sink
from stream.pipeline import Pipeline, PipelineOptions, RawRecord
from tests.fakes import NeutralScorer, NoMonitor
from tests.lake_rows import T, latest_positions
from tests.servers.lake_fixtures import *  # noqa: F403
from tests.servers.lake_fixtures import FAST, glue_lake_settings, session_of
from tests.servers.moto import MotoServer
from tests.servers.seaweedfs import SeaweedFS

pytestmark = [
    pytest.mark.integration,
    # awswrangler 3.17 reads tz-aware columns through Series.values, which pandas 3.1 deprecates
    pytest.mark.filterwarnings(
        "ignore:Series.values returning an ndarray that drops timezone:pandas.errors.Pandas4Warning"
    ),
]

PREFIX = "lake/v1"


def review(offset: int, category: str, *, day: int = 4, partition: str = "0") -> ScoredReview:
    ev = ReviewEvent(
        review_id=f"r-{partition}-{offset}",
        product_id="p-1",
        product_category=category,
        review_text=f"review {offset}",
        channel="web",
        event_time=T.replace(day=day),
        rating=offset % 5 + 1,
    )
    pos = SourcePosition("kafka", "reviews", partition, offset)
    return ScoredReview(ev, 1, 0.1, 0.2, 0.7, "m", "1", T, 4.0, pos)


def dead(offset: int, partition: str = "0") -> DeadLetter:
    pos = SourcePosition("kafka", "reviews", partition, offset)
    return DeadLetter(b"{not json", Reason.NOT_JSON, "bad", pos, T)


def batch(seq: int, rows: Sequence[ScoredReview | DeadLetter], alerts: int = 0) -> Batch:
    positions = latest_positions(rows)
    raised = [
        Alert(f"a-{seq}-{i}", "SentimentShift", "firing", Severity.WARNING, "Dresses", "s", T, T,
              T, {"n": i})
        for i in range(alerts)
    ]  # fmt: skip
    return Batch(
        scored=[r for r in rows if isinstance(r, ScoredReview)],
        dead=[r for r in rows if isinstance(r, DeadLetter)],
        positions=positions,
        alerts=raised,
        seq=seq,
    )


def keys(server: SeaweedFS | MotoServer, bucket: str) -> list[str]:
    client: Any = session_of(server).client("s3")
    found = client.list_objects_v2(Bucket=bucket, Prefix=PREFIX + "/").get("Contents", [])
    return sorted(o["Key"][len(PREFIX) + 1 :] for o in found)


def read_reviews(server: SeaweedFS, bucket: str) -> list[str]:
    frame = wr.s3.read_parquet(
        f"s3://{bucket}/{PREFIX}/reviews/", dataset=True, boto3_session=session_of(server)
    )
    return sorted(frame["review_id"].tolist())


async def test_round_trip_through_awswrangler(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    sink = LakeSink(S3LakeWriter(s3_bucket, PREFIX, session=session_of(seaweedfs)))
    await sink.write(batch(0, [review(0, "Dresses"), review(1, "Fine gauge"), dead(2)], alerts=2))
    await sink.write(batch(1, [review(3, "Dresses", day=5), review(4, "Dresses")]))
    await sink.write(batch(2, [review(5, "Knits", partition="1")]))
    assert keys(seaweedfs, s3_bucket) == []  # buffered until flushed
    await sink.close()
    assert sink.durable_seq() == 2

    stored = keys(seaweedfs, s3_bucket)
    assert [k.rsplit("/", 1)[0] for k in stored] == [
        "alerts/dt=2026-03-04",
        "dlq/dt=2026-03-04/reason=not_json",
        "reviews/dt=2026-03-04/product_category=Dresses",
        "reviews/dt=2026-03-04/product_category=Fine%20gauge",
        "reviews/dt=2026-03-04/product_category=Knits",
        "reviews/dt=2026-03-05/product_category=Dresses",
    ]
    dresses = next(k for k in stored if "dt=2026-03-04/product_category=Dresses" in k)
    assert parse_file_range(dresses.rsplit("/", 1)[1]) == (("kafka", "reviews", "0"), 0, 4)

    session = session_of(seaweedfs)
    frame = wr.s3.read_parquet(f"s3://{s3_bucket}/{PREFIX}/reviews/", dataset=True,
                               boto3_session=session)  # fmt: skip
    assert sorted(frame["review_id"]) == ["r-0-0", "r-0-1", "r-0-3", "r-0-4", "r-1-5"]
    by_id = frame.set_index("review_id")
    # awswrangler takes partition values from the path without URI-decoding them; the files
    # themselves hold the plain value.
    assert str(by_id.loc["r-0-1", "product_category"]) == "Fine%20gauge"
    plain = wr.s3.read_parquet(f"s3://{s3_bucket}/{PREFIX}/reviews/", boto3_session=session)
    assert set(plain["product_category"]) == {"Dresses", "Fine gauge", "Knits"}
    assert str(by_id.loc["r-0-3", "dt"]) == "2026-03-05"
    assert str(by_id.loc["r-0-4", "rating"]) == "5"

    client: Any = session.client("s3")
    for top, schema in (("reviews", SCORED_SCHEMA), ("dlq", DEAD_LETTER_SCHEMA),
                        ("alerts", ALERT_SCHEMA)):  # fmt: skip
        key = next(k for k in stored if k.startswith(top + "/"))
        body = client.get_object(Bucket=s3_bucket, Key=f"{PREFIX}/{key}")["Body"].read()
        assert pq.read_table(io.BytesIO(body)).schema == schema


async def test_sse_s3_is_requested_and_stored(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    session = session_of(seaweedfs)
    sent: list[str | None] = []

    def capture(request: Any, **_: Any) -> None:
        sent.append(request.headers.get("x-amz-server-side-encryption"))

    session.events.register("before-send.s3.PutObject", capture)
    writer = S3LakeWriter(s3_bucket, PREFIX, session=session, encryption=Encryption("AES256"))
    await writer.put("reviews/x.parquet", b"PAR1")
    assert [s.decode() if isinstance(s, bytes) else s for s in sent] == ["AES256"]
    client: Any = session.client("s3")
    head = client.head_object(Bucket=s3_bucket, Key=f"{PREFIX}/reviews/x.parquet")
    assert head["ServerSideEncryption"] == "AES256"


async def test_sse_kms_with_a_key_id(moto_server: MotoServer) -> None:
    session = session_of(moto_server)
    client: Any = session.client("s3")
    bucket = f"kms-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    kms: Any = session.client("kms", endpoint_url=moto_server.endpoint_url)
    key_id = kms.create_key(Description="lake")["KeyMetadata"]["KeyId"]
    writer = S3LakeWriter(bucket, PREFIX, session=session, encryption=Encryption("aws:kms", key_id))
    sink = LakeSink(writer)
    await sink.write(batch(0, [review(0, "Dresses")]))
    await sink.close()
    [key] = keys(moto_server, bucket)
    head = client.head_object(Bucket=bucket, Key=f"{PREFIX}/{key}")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert key_id in head["SSEKMSKeyId"]


@pytest.mark.parametrize("markers", ["off", "trust"])
async def test_a_replay_after_a_crash_leaves_no_duplicate(
    seaweedfs: SeaweedFS, s3_bucket: str, markers: Markers
) -> None:
    """With ``trust`` the second process finds the leftover (Dresses 4-6) and the straddler
    (Dresses 0-3, whose rows 1-3 come again) from the pending markers alone."""
    listed: list[str] = []

    class Listing(S3LakeWriter):
        async def list_files(self, prefix: str, suffix: str = ".parquet") -> list[str]:
            listed.append(prefix)
            return await super().list_files(prefix, suffix)

    limits = BufferLimits(max_rows=3)
    writer = S3LakeWriter(s3_bucket, PREFIX, session=session_of(seaweedfs))
    first = LakeSink(writer, limits=limits, markers=markers)
    committed = -1
    pending: list[Batch] = []
    for b in (
        batch(0, [review(0, "Dresses")]),
        batch(1, [review(1, "Knits")]),
        batch(2, [review(2, "Dresses"), review(3, "Dresses")]),  # Dresses 0-3 written
        batch(3, [review(4, "Dresses"), review(5, "Dresses")]),
        batch(4, [review(6, "Dresses")]),  # Dresses 4-6 written; Knits holds the commit
    ):
        await first.write(b)
        pending.append(b)
        while pending and pending[0].seq <= first.durable_seq():
            committed = pending.pop(0).positions[("kafka", "reviews", "0")].offset
    assert committed == 0
    # The process dies: Knits' buffer is lost. The next one resumes at offset 1, re-reads
    # everything after it and cuts batches differently.
    second = LakeSink(Listing(s3_bucket, PREFIX, session=session_of(seaweedfs)), markers=markers)
    assert await second.rewind(SourcePosition("kafka", "reviews", "0", committed + 1)) == 1
    key = ("kafka", "reviews", "0")
    assert listed == ([marker_prefix(key)] if markers == "trust" else ["reviews", "dlq"])
    cats = ["Knits", "Dresses", "Dresses", "Dresses", "Dresses", "Dresses", "Knits"]
    rows = [review(i, c) for i, c in enumerate(cats, start=1)]
    await second.write(batch(0, rows[:2]))
    await second.write(batch(1, rows[2:]))
    await second.close()
    assert read_reviews(seaweedfs, s3_bucket) == sorted(f"r-0-{i}" for i in range(8))
    marked = [k for k in keys(seaweedfs, s3_bucket) if k.startswith(f"{MARKERS}/")]
    assert len(marked) == (3 if markers == "trust" else 0)  # the straddler, two new files
    await second.committed({key: SourcePosition(*key, 7)})
    assert not [k for k in keys(seaweedfs, s3_bucket) if k.startswith(f"{MARKERS}/")]


# -- the store goes away mid-run ----------------------------------------------------------------


def event_bytes(i: int) -> bytes:
    return json.dumps(
        {
            "review_id": f"r-{i}",
            "product_id": f"p-{i % 5}",
            "product_category": ("Dresses", "Knits", "Fine gauge")[i % 3],
            "review_text": "fine",
            "channel": "web",
            "event_time": (T + timedelta(seconds=i)).isoformat(),
        }
    ).encode()


class PacedSource:
    def __init__(self, count: int, signal_at: int) -> None:
        self.count = count
        self.pulled = 0
        self.committed = -1
        self.signal_at = signal_at
        self.reached = asyncio.Event()

    async def records(self) -> AsyncIterator[RawRecord]:
        for i in range(self.count):
            self.pulled += 1
            yield RawRecord(event_bytes(i), SourcePosition("test", "reviews", "0", i), T)
            await asyncio.sleep(0.0005)

    async def commit(self, positions: Mapping[tuple[str, str, str], SourcePosition]) -> None:
        for pos in positions.values():
            self.committed = max(self.committed, pos.offset)
        if self.committed >= self.signal_at:
            self.reached.set()


async def _standstill(read: Callable[[], int], *, quiet_s: float, timeout_s: float) -> int:
    """``read()`` once it has not changed for ``quiet_s``; fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    value, since = read(), time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, f"still moving after {timeout_s} s: {read()}"
        await asyncio.sleep(0.05)
        if read() != value:
            value, since = read(), time.monotonic()
    return value


@pytest.fixture
def own_seaweedfs() -> Iterator[SeaweedFS]:
    """A SeaweedFS of this test alone: it is taken away and brought back."""
    with SeaweedFS() as server:
        yield server


@pytest.mark.slow
async def test_the_store_stops_mid_run_and_nothing_is_lost(own_seaweedfs: SeaweedFS) -> None:
    server = own_seaweedfs
    bucket = server.create_bucket("outage")
    writer = S3LakeWriter(bucket, PREFIX, session=session_of(server), backoff=FAST)
    sink = LakeSink(writer, limits=BufferLimits(max_rows=200, max_age_s=0.3))
    source = PacedSource(4_000, signal_at=500)
    pipeline = Pipeline(
        source,
        NeutralScorer(),
        [sink],
        NoMonitor(),
        options=PipelineOptions(max_batch_events=100, max_batch_wait_s=0.05, queue_batches=2),
    )
    run = asyncio.create_task(pipeline.run())
    await asyncio.wait_for(source.reached.wait(), 60)
    await asyncio.to_thread(server.stop, kill=True)
    # The queues fill with what was read before the first failing write: wait until the
    # source stands still (on a loaded machine that took more than the 1 s once waited here).
    pulled = await _standstill(lambda: source.pulled, quiet_s=0.5, timeout_s=20.0)
    committed = source.committed
    await asyncio.sleep(2.0)
    # Backpressure: the store is down, so the source is not read and nothing is committed.
    assert source.pulled == pulled < source.count
    assert source.committed == committed
    assert writer.retries > 0
    assert not run.done()
    await asyncio.to_thread(server.start)
    summary = await asyncio.wait_for(run, 120)
    assert summary.scored == source.count
    assert source.committed == source.count - 1
    assert read_reviews(server, bucket) == sorted(f"r-{i}" for i in range(source.count))


async def test_a_stopped_writer_gives_up_waiting(own_seaweedfs: SeaweedFS) -> None:
    from stream.errors import LakeUnavailable

    writer = S3LakeWriter("gone", PREFIX, session=session_of(own_seaweedfs), backoff=FAST)
    await asyncio.to_thread(own_seaweedfs.stop, kill=True)
    put = asyncio.create_task(writer.put("reviews/x.parquet", b"x"))
    await asyncio.sleep(0.5)
    assert not put.done()
    writer.stop()
    with pytest.raises(LakeUnavailable):
        await asyncio.wait_for(put, 10)


# -- Glue -------------------------------------------------------------------------------------


async def test_glue_partitions_are_added_as_files_land(moto_server: MotoServer) -> None:
    bucket = f"glue-{uuid.uuid4().hex[:10]}"
    database = f"lake_{uuid.uuid4().hex[:8]}"
    session = session_of(moto_server)
    settings = glue_lake_settings(moto_server, bucket, database, PREFIX, buffer_max_rows=2)
    sink = build_lake_sink(settings)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", moto_server.access_key)
        mp.setenv("AWS_SECRET_ACCESS_KEY", moto_server.secret_key)
        await sink.write(batch(0, [review(0, "Fine gauge"), review(1, "Fine gauge"), dead(2)]))
        catalog = GlueCatalog(database, bucket=bucket, prefix=PREFIX, session=session)
        assert catalog.partitions("reviews") == {
            f"s3://{bucket}/{PREFIX}/reviews/dt=2026-03-04/product_category=Fine%20gauge/": [
                "2026-03-04",
                "Fine gauge",
            ]
        }
        assert catalog.partitions("dead_letters") == {}
        await sink.close()
    assert list(catalog.partitions("dead_letters").values()) == [["2026-03-04", "not_json"]]
    columns = wr.catalog.get_table_types(database, "reviews", boto3_session=session)
    assert columns is not None
    assert columns["rating"] == "tinyint" and columns["p_negative"] == "float"
    assert columns["event_time"] == "timestamp"
    assert list(columns)[-2:] == ["dt", "product_category"]  # partition keys come last
    # A repair registers what the lake holds, and finds nothing new here.
    assert catalog.sync() == 0


# -- queries ----------------------------------------------------------------------------------


async def fill(sink: LakeSink) -> None:
    await sink.write(batch(0, [review(0, "Dresses"), review(1, "Fine gauge"), dead(2)]))
    await sink.write(batch(1, [review(3, "Fine gauge"), review(4, "Knits", day=5)], alerts=1))
    await sink.close()


SQL = "SELECT product_category, count(*) AS n FROM reviews GROUP BY 1 ORDER BY 1"
EXPECTED = [
    {"product_category": "Dresses", "n": 1},
    {"product_category": "Fine gauge", "n": 2},
    {"product_category": "Knits", "n": 1},
]


async def test_duckdb_answers_over_s3_and_the_local_lake(
    seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    session = session_of(seaweedfs)
    await fill(LakeSink(S3LakeWriter(s3_bucket, PREFIX, session=session)))
    await fill(LakeSink(LocalLakeWriter(tmp_path)))
    for lake in (DuckDBLake(f"s3://{s3_bucket}/{PREFIX}", session=session),
                 DuckDBLake(str(tmp_path))):  # fmt: skip
        assert lake.query(SQL).to_pylist() == EXPECTED
        pruned = lake.query("SELECT review_id FROM reviews WHERE dt = '2026-03-05'")
        assert pruned.column("review_id").to_pylist() == ["r-0-4"]
        assert lake.query("SELECT count(*) AS n FROM dead_letters").to_pylist() == [{"n": 1}]
        assert lake.query("SELECT name FROM alerts").to_pylist() == [{"name": "SentimentShift"}]
    empty = DuckDBLake(str(tmp_path / "nothing-here"))
    assert empty.query("SELECT count(*) AS n FROM reviews").to_pylist() == [{"n": 0}]


async def test_the_query_command(seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path) -> None:
    await fill(LakeSink(S3LakeWriter(s3_bucket, PREFIX, session=session_of(seaweedfs))))
    await fill(LakeSink(LocalLakeWriter(tmp_path / "lake")))
    runner = CliRunner()
    env = {
        "SENTIMENT_LAKE__S3_ENDPOINT_URL": seaweedfs.endpoint_url,
        "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
    }
    for lake in (f"s3://{s3_bucket}/{PREFIX}", str(tmp_path / "lake")):
        as_json = await asyncio.to_thread(
            runner.invoke, lake_app, ["query", SQL, "--json", "--lake", lake], env=env
        )
        assert as_json.exit_code == 0, as_json.output
        assert json.loads(as_json.stdout) == EXPECTED
        table = await asyncio.to_thread(
            runner.invoke, lake_app, ["query", SQL, "--lake", lake], env=env
        )
        assert table.exit_code == 0, table.output
        assert "Fine gauge" in table.stdout and "3 rows" in table.stdout
    bad = runner.invoke(lake_app, ["query", "SELECT * FROM nope", "--lake", str(tmp_path)])
    assert bad.exit_code == 1
    assert "error:" in bad.output


async def test_the_report_command_reads_an_s3_lake(
    seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    from stream.cli import app

    await fill(LakeSink(S3LakeWriter(s3_bucket, PREFIX, session=session_of(seaweedfs))))
    env = {
        "SENTIMENT_LAKE__S3_ENDPOINT_URL": seaweedfs.endpoint_url,
        "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
    }
    out = tmp_path / "report.html"
    args = ["report", "--lake", f"s3://{s3_bucket}/{PREFIX}", "--out", str(out), "--no-progress"]
    result = await asyncio.to_thread(CliRunner().invoke, app, args, env=env)
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    overview = page[page.index('data-table="overview"') :].split("</table>")[0]
    for what, n in (("reviews", 4), ("categories", 3), ("dead letters", 1), ("alerts", 1)):
        assert f'<td>{what}</td><td class="n" data-value="{n}">' in overview
    assert "http://" not in page and "https://" not in page
