"""The lake report against a bare DuckDB scan of the same rows.

Writes a lake of ``--rows`` scored reviews (default 1,000,000) in the lake's layout and schema
(:data:`stream.events.SCORED_SCHEMA`, ``reviews/dt=.../product_category=.../part-*.parquet``,
a week of event times, 20 categories, texts drawn from a pool of generated reviews) into a
temp dir, then runs, each in its own process so that its peak RSS is its own:

* ``scan``: ``select count(*), avg(sentiment), avg(p_negative), count(distinct
  product_category) from reviews`` through :class:`sinks.query.DuckDBLake`;
* ``report``: ``sentiment-monitor report --lake DIR`` (SQL aggregation, the monitors'
  statistics, every plot, the HTML page);
* for scale, ``select * from reviews`` into a pandas frame: what the report must not do.

It prints wall times, the ratio report / scan, each process's peak RSS, and for scale the
Arrow size of the rows (what loading them all would at least take).

    .venv/bin/python benchmarks/report.py [--rows 1000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

if __package__ in (None, ""):  # run as a file (``make benchmarks``): use this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stream.events import CHANNELS, SCORED_SCHEMA

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 2, tzinfo=UTC)
CATEGORIES = [f"Category {i:02d}" for i in range(20)]
WORDS = {
    -1: [
        "awful",
        "returned",
        "cheap",
        "itchy",
        "broke",
        "tight",
        "disappointed",
        "refund",
        "poor",
        "ripped",
    ],
    0: [
        "okay",
        "average",
        "fine",
        "decent",
        "expected",
        "normal",
        "plain",
        "standard",
        "usual",
        "fair",
    ],
    1: [
        "lovely",
        "perfect",
        "soft",
        "great",
        "comfortable",
        "beautiful",
        "flattering",
        "love",
        "cute",
        "gorgeous",
    ],
}
COMMON = [
    "the",
    "dress",
    "shirt",
    "fabric",
    "fit",
    "size",
    "colour",
    "length",
    "material",
    "sleeves",
    "waist",
    "order",
    "wear",
    "washed",
    "summer",
    "work",
    "jeans",
    "pants",
    "sweater",
    "jacket",
    "style",
    "quality",
    "price",
]
POOL = 20_000


def _texts(rng: np.random.Generator, cls: int) -> list[str]:
    out = []
    for _ in range(POOL // 3):
        n = int(rng.integers(8, 80))
        words = rng.choice(COMMON, n).tolist()
        for i in rng.choice(n, max(1, n // 8), replace=False):
            words[i] = str(rng.choice(WORDS[cls]))
        out.append(" ".join(words) + ".")
    return out


def make_lake(root: Path, rows: int, seed: int = 7) -> int:
    """Write ``rows`` scored reviews under ``root``; returns the Arrow size of the rows."""
    rng = np.random.default_rng(seed)
    pools = {k: _texts(rng, k) for k in (-1, 0, 1)}
    pool = pa.array(pools[-1] + pools[0] + pools[1])
    start = {-1: 0, 0: len(pools[-1]), 1: len(pools[-1]) + len(pools[0])}
    sentiment = rng.choice(np.array([-1, 0, 1], dtype=np.int8), rows, p=[0.22, 0.18, 0.60])
    category = rng.integers(0, len(CATEGORIES), rows)
    seconds = np.sort(rng.integers(0, 7 * 86_400, rows))
    event_us = (int(T0.timestamp()) + seconds) * 1_000_000 + rng.integers(0, 1_000_000, rows)
    # each row takes a text of its own class
    offset = np.select([sentiment == -1, sentiment == 0], [start[-1], start[0]], start[1])
    text = pool.take(pa.array(offset + rng.integers(0, POOL // 3, rows)))
    probs = rng.dirichlet([1.0, 1.0, 1.0], rows).astype(np.float32)
    top = np.argmax(probs, axis=1)
    probs[np.arange(rows), top], probs[np.arange(rows), sentiment + 1] = (
        probs[np.arange(rows), sentiment + 1],
        probs[np.arange(rows), top],
    )
    rating = np.where(
        rng.random(rows) < 0.3,
        np.select([sentiment == -1, sentiment == 0], [rng.integers(1, 3, rows), 3], 5),
        0,
    ).astype(np.int8)
    ts = pa.array(event_us, pa.timestamp("us", tz="UTC"))
    ids = pa.array([f"r{i:08d}" for i in range(rows)])
    cols = {
        "review_id": ids,
        "product_id": pc.binary_join_element_wise(
            "p", pc.cast(pa.array(category), pa.string()), ""
        ),
        "product_category": pa.array(np.array(CATEGORIES)[category]),
        "review_text": text,
        "channel": pa.array(np.array(CHANNELS)[rng.integers(0, len(CHANNELS), rows)]),
        "event_time": ts,
        "rating": pa.array(rating, mask=rating == 0),
        "language": pa.nulls(rows, pa.string()),
        "customer_segment": pa.nulls(rows, pa.string()),
        "sentiment": pa.array(sentiment),
        "sentiment_label": pa.array(np.array(["negative", "neutral", "positive"])[sentiment + 1]),
        "p_negative": pa.array(probs[:, 0]),
        "p_neutral": pa.array(probs[:, 1]),
        "p_positive": pa.array(probs[:, 2]),
        "model_name": pa.array(["tfidf-logreg"] * rows),
        "model_version": pa.array(["1"] * rows),
        "scored_at": ts,
        "endpoint_latency_ms": pa.array(rng.gamma(2.0, 3.0, rows).astype(np.float32)),
        "source": pa.array(["replay"] * rows),
        "source_stream": pa.array(["bench"] * rows),
        "source_partition": pa.array(["0"] * rows),
        "source_offset": pa.array(np.arange(rows).astype(str)),
        "dt": pc.cast(pc.cast(ts, pa.date32()), pa.string()),
    }
    table = pa.table(cols).cast(SCORED_SCHEMA)
    keys = pa.table({"dt": table["dt"], "c": table["product_category"]})
    groups = keys.group_by(["dt", "c"]).aggregate([])
    for dt, cat in zip(groups["dt"].to_pylist(), groups["c"].to_pylist(), strict=True):
        mask = pc.and_(pc.equal(table["dt"], dt), pc.equal(table["product_category"], cat))
        part = table.filter(mask)
        d = root / "reviews" / f"dt={dt}" / f"product_category={quote(cat, safe='')}"
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(part, d / "part-replay-bench-0.parquet", compression="zstd")
    size: int = table.nbytes
    return size


_SCAN = """
import json, sys, time
from sinks.query import DuckDBLake
t = time.perf_counter()
row = DuckDBLake(sys.argv[1]).query(
    "select count(*) as n, avg(sentiment) as s, avg(p_negative) as p,"
    " count(distinct product_category) as c from reviews"
).to_pylist()[0]
print(json.dumps({"seconds": time.perf_counter() - t, **row}))
"""


#: For scale: every row in pandas (what the report must not do).
_ALL_ROWS = """
import sys
from sinks.query import DuckDBLake
frame = DuckDBLake(sys.argv[1]).query("select * from reviews").to_pandas()
print(len(frame))
"""


def _run(cmd: list[str], out: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes, from ``wait4``) of one child process; its stdout
    goes to ``out``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    with out.open("w") as stdout:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed:\n{err[-2000:]}")
    return wall, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="Write the lake and the page here (kept).")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="report-bench-"))
    lake = work / "lake"
    try:
        t = time.perf_counter()
        if not (lake / "reviews").exists():
            size = make_lake(lake, args.rows)
            print(
                f"lake of {args.rows:,} reviews written in {time.perf_counter() - t:.1f} s "
                f"(Arrow size of the rows: {size / 2**20:,.0f} MiB)"
            )
        py = sys.executable
        scan_wall, scan_rss = _run([py, "-c", _SCAN, str(lake)], work / "scan.json")
        scan = json.loads((work / "scan.json").read_text())
        out = work / "report.html"
        report_wall, report_rss = _run(
            [py, "-m", "stream", "report", "--lake", str(lake), "--out", str(out),
             "--no-progress"],
            work / "report.log",
        )  # fmt: skip
        rows_wall, rows_rss = _run([py, "-c", _ALL_ROWS, str(lake)], work / "rows.txt")
        print(
            f"bare scan : {scan['n']:,} rows, avg(sentiment) {scan['s']:.4f}: "
            f"query {scan['seconds']:.2f} s, process {scan_wall:.1f} s, "
            f"peak RSS {scan_rss / 2**20:,.0f} MiB"
        )
        print(
            f"report    : process {report_wall:.1f} s, peak RSS {report_rss / 2**20:,.0f} MiB, "
            f"page {out.stat().st_size / 2**20:.1f} MiB"
        )
        print(
            f"all rows into pandas (for scale, not part of the report): process "
            f"{rows_wall:.1f} s, peak RSS {rows_rss / 2**20:,.0f} MiB"
        )
        print(
            f"ratio report / scan: {report_wall / scan_wall:.1f}x (processes), "
            f"{report_wall / scan['seconds']:.0f}x (against the scan query alone)"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
