"""``sentiment-monitor report`` and ``explore`` as a user runs them.

A small lake comes from the pipeline itself (a negative surge that raises an alert, then a
stream with malformed records for the dead letters). The report's tables are read back from
the page and every number is checked against a DuckDB query of the same lake written here
(or Python over the rows, for the word counts); the page is opened in headless Chromium over
the DevTools protocol, which logs every request it makes and takes a screenshot that must not
be blank.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from statistics import median

import duckdb
import numpy as np
import pytest
from PIL import Image

from monitors import distinctive_terms
from monitors.terms import STOPWORDS, TOKEN_PATTERN
from sinks.query import DuckDBLake
from stream.report.data import STEPS
from tests.servers.chromium import HeadlessChromium

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
Cells = list[list[tuple[str, float | None]]]


class _Tables(HTMLParser):
    """The ``data-table`` tables of a page: per table, rows of (text, data-value)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, Cells] = {}
        self._table: str | None = None
        self._row: list[tuple[str, float | None]] | None = None
        self._cell: list[str] | None = None
        self._value: float | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("data-table"):
            self._table = a["data-table"]
            self.tables[self._table or ""] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []
            v = a.get("data-value")
            self._value = None if v is None else float(v)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append(("".join(self._cell), self._value))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            if self._row:
                self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables(page: str) -> dict[str, Cells]:
    parser = _Tables()
    parser.feed(page)
    return parser.tables


def cli(*args: str, cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "stream", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    for scenario, events in (("negative-surge", 4000), ("bad-input", 800)):
        cli(
            "run", "--scenario", scenario, "--events", str(events), "--seed", "3",
            "--lake", str(root / "lake"), "--alerts", str(root / "alerts.jsonl"),
            "--metrics-port", "0", "--no-progress",
            cwd=root,
        )  # fmt: skip
    return root / "lake"


@pytest.fixture(scope="module")
def page(lake: Path) -> Path:
    out = lake.parent / "report.html"
    log = cli("report", "--lake", str(lake), "--out", str(out), cwd=lake.parent)
    with DuckDBLake(str(lake)).connect() as c:
        n = one(c, "select count(*) from reviews")[0]
    assert f"report of {n:,} reviews written" in log
    assert f"done {'':24}" in log and f"{len(STEPS)}/{len(STEPS)}" in log  # the progress bar
    return out


@pytest.fixture(scope="module")
def con(lake: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = DuckDBLake(str(lake)).connect()
    yield c
    c.close()


def one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[object, ...]:
    row = con.execute(sql).fetchone()
    assert row is not None
    return tuple(row)


def close(a: float | None, b: object) -> bool:
    assert a is not None
    assert isinstance(b, int | float)
    return math.isclose(a, float(b), rel_tol=1e-9, abs_tol=1e-12)


def _sql_terms(con: duckdb.DuckDBPyConnection, where: str) -> dict[tuple[str, bool, str], int]:
    pattern = TOKEN_PATTERN.replace("'", "''")
    rows = con.execute(
        f"""select product_category, sentiment = -1, term, count(*) from (
              select product_category, sentiment,
                     unnest(regexp_extract_all(lower(review_text), '{pattern}')) as term
              from reviews) where {where} group by all"""
    ).fetchall()
    return {(str(c), bool(neg), str(t)): int(n) for c, neg, t, n in rows}


def test_every_number_in_the_tables_is_a_query_of_the_lake(
    page: Path, con: duckdb.DuckDBPyConnection
) -> None:
    t = tables(page.read_text(encoding="utf-8"))
    assert set(t) == {
        "overview", "categories", "alerts", "lengths", "bias", "terms", "dead_letters",
    }  # fmt: skip
    # overview
    expected = {
        "reviews": one(con, "select count(*) from reviews")[0],
        "labelled reviews": one(con, "select count(rating) from reviews")[0],
        "categories": one(con, "select count(distinct product_category) from reviews")[0],
        "dead letters": one(con, "select count(*) from dead_letters")[0],
        "alerts": one(con, "select count(*) from alerts")[0],
    }
    assert {row[0][0]: row[1][1] for row in t["overview"]} == expected
    assert expected["dead letters"] and expected["alerts"]  # the lake exercises both
    # per category
    rows = con.execute(
        """select product_category, count(*), avg((sentiment = -1)::INT),
                  avg((sentiment = 0)::INT), avg((sentiment = 1)::INT), count(rating),
                  avg((rating <= 2)::INT)
           from reviews group by 1 order by 1"""
    ).fetchall()
    assert len(t["categories"]) == len(rows)
    for shown, want in zip(t["categories"], rows, strict=True):
        assert shown[0][0] == want[0]
        assert all(close(s[1], w) for s, w in zip(shown[1:], want[1:], strict=True)), shown
    # alerts
    alerts = con.execute(
        """select name, category, severity, status, strftime(window_start, '%Y-%m-%d %H:%M'),
                  strftime(window_end, '%Y-%m-%d %H:%M') from alerts order by window_end"""
    ).fetchall()
    assert [tuple(c[0] for c in row) for row in t["alerts"]] == alerts
    # review lengths: words as the monitors count them (str.split), from the rows themselves
    texts = con.execute("select sentiment, review_text from reviews").fetchall()
    for row in t["lengths"]:
        k = {"negative": -1, "neutral": 0, "positive": 1}[row[0][0]]
        words = [len(x.split()) for s, x in texts if s == k]
        chars = [len(x) for s, x in texts if s == k]
        assert row[1][1] == len(words)
        assert close(row[2][1], median(words))
        assert close(row[3][1], sum(words) / len(words))
        assert close(row[4][1], median(chars))
    # Clarify's metrics, in SQL, on predicted and on rated sentiment
    for labels, positive, where in (
        ("predicted", "sentiment = 1", "true"),
        ("rated", "rating >= 4", "rating is not null"),
    ):
        bias = con.execute(
            f"""with f as (select product_category as c, count(*)::DOUBLE as nd,
                                  sum(({positive})::INT)::DOUBLE as pd
                           from reviews where {where} group by 1),
                     t as (select sum(nd) as n, sum(pd) as p from f),
                     q as (select c, nd, n - nd as na, pd / nd as qd, (p - pd) / (n - nd) as qa
                           from f, t)
                select c, (na - nd) / (na + nd) as ci, qa - qd as dpl,
                       0.5 * ((qa * ln(qa / ((qa + qd) / 2)) + qd * ln(qd / ((qa + qd) / 2)))
                              + ((1 - qa) * ln((1 - qa) / ((2 - qa - qd) / 2))
                                 + (1 - qd) * ln((1 - qd) / ((2 - qa - qd) / 2)))) as js,
                       qa * ln(qa / qd) + (1 - qa) * ln((1 - qa) / (1 - qd)) as kl,
                       abs(qa - qd) as ks, sqrt(2) * abs(qa - qd) as lp, abs(qa - qd) as tvd
                from q order by c"""
        ).fetchall()
        bias_rows = [row for row in t["bias"] if row[1][0] == labels]
        assert len(bias_rows) == len(bias) > 1
        for got, w in zip(bias_rows, bias, strict=True):
            assert got[0][0] == w[0]
            for cell, want in zip(got[2:], w[1:], strict=True):
                assert math.isclose(cell[1] or 0.0, float(want), rel_tol=1e-9, abs_tol=1e-12)
    # terms: counts by SQL, z by the monitors' function on those counts
    counts = _sql_terms(con, "true")
    kept = {k: n for k, n in counts.items() if len(k[2]) >= 3 and k[2] not in STOPWORDS}
    assert t["terms"]
    for row in t["terms"]:
        cat, term = row[0][0], row[1][0]
        assert row[2][1] == kept[(cat, True, term)]
        assert row[3][1] == kept.get((cat, False, term), 0)
    for cat in {row[0][0] for row in t["terms"]}:
        target = {w: n for (c, neg, w), n in kept.items() if c == cat and neg and n >= 3}
        reference = {
            w: n for (c, neg, w), n in kept.items() if c == cat and not neg and w in target
        }
        totals = [
            sum(n for (c, neg, _), n in kept.items() if c == cat and neg is flag)
            for flag in (True, False)
        ]
        z = distinctive_terms(
            target, reference, top=5, target_total=totals[0], reference_total=totals[1]
        )
        assert [(r[1][0], r[4][1]) for r in t["terms"] if r[0][0] == cat] == z
    # dead letters by reason
    dead = con.execute(
        "select reason, count(*) from dead_letters group by 1 order by 2 desc, 1"
    ).fetchall()
    assert sorted((r[0][0], r[1][1]) for r in t["dead_letters"]) == sorted(dead)


def test_the_page_loads_nothing_and_renders(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "Content-Security-Policy" in html
    with HeadlessChromium() as browser:
        visit = browser.visit(page.resolve().as_uri())
    assert visit.requests[0] == page.resolve().as_uri()
    others = [u for u in visit.requests[1:] if not u.startswith("data:image/png;base64,")]
    assert others == []
    assert len(visit.requests) == 1 + html.count("<img ")
    image = np.asarray(Image.open(io.BytesIO(visit.screenshot)).convert("L"), dtype=np.float64)
    assert image.shape[1] == 1300 and image.shape[0] > 2400  # the whole page
    assert image.std() > 20  # text and plots, not a blank page
    assert (image < 128).mean() > 0.02
    (page.parent / "report.png").write_bytes(visit.screenshot)


def test_a_time_span_selects_reviews_and_dead_letters(
    lake: Path, con: duckdb.DuckDBPyConnection
) -> None:
    first = one(
        con, "select strftime(min(event_time) + interval 6 hour, '%Y-%m-%dT%H:%M:%S') from reviews"
    )[0]
    last = one(
        con, "select strftime(min(event_time) + interval 30 hour, '%Y-%m-%dT%H:%M:%S') from reviews"
    )[0]
    out = lake.parent / "span.html"
    cli(
        "report",
        "--lake",
        str(lake),
        "--since",
        str(first),
        "--until",
        str(last),
        "--out",
        str(out),
        "--no-progress",
        cwd=lake.parent,
    )
    t = tables(out.read_text(encoding="utf-8"))
    shown = {row[0][0]: row[1][1] for row in t["overview"]}
    span = f"between TIMESTAMPTZ '{first}+00:00' and TIMESTAMPTZ '{last}+00:00' - interval 1 microsecond"
    assert shown["reviews"] == one(con, f"select count(*) from reviews where event_time {span}")[0]
    assert (
        shown["dead letters"]
        == one(con, f"select count(*) from dead_letters where received_at {span}")[0]
    )
    assert 0 < (shown["reviews"] or 0) < one(con, "select count(*) from reviews")[0]  # type: ignore[operator]


def test_explore_a_training_csv(tmp_path: Path, con: duckdb.DuckDBPyConnection) -> None:
    csv = tmp_path / "train.csv"
    con.execute(
        f"""copy (select case when rating <= 2 then -1 when rating = 3 then 0 else 1 end
                         as sentiment, review_text as review_body, product_category
                  from reviews order by review_id limit 1500)
            to '{csv}' (header, delimiter ',')"""
    )
    out = tmp_path / "explore.html"
    log = cli("explore", "--data", str(csv), "--out", str(out), "--no-progress", cwd=tmp_path)
    assert "report of 1,500 reviews written" in log
    page = out.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    t = tables(page)
    assert set(t) == {"overview", "categories", "lengths", "bias", "terms"}
    db = duckdb.connect()
    rows = db.execute(
        f"""select product_category, count(*), avg((sentiment = -1)::INT),
                   avg((sentiment = 0)::INT), avg((sentiment = 1)::INT)
            from read_csv('{csv}', header = true) group by 1 order by 1"""
    ).fetchall()
    for shown, want in zip(t["categories"], rows, strict=True):
        assert shown[0][0] == want[0]
        assert all(close(s[1], w) for s, w in zip(shown[1:], want[1:], strict=True))
    ci = db.execute(
        f"""with f as (select product_category as c, count(*)::DOUBLE as nd,
                              sum((sentiment = 1)::INT)::DOUBLE as pd
                       from read_csv('{csv}', header = true) group by 1),
                 t as (select sum(nd) as n, sum(pd) as p from f)
            select c, (n - 2 * nd) / n, (p - pd) / (n - nd) - pd / nd from f, t order by c"""
    ).fetchall()
    for shown, (c, want_ci, want_dpl) in zip(t["bias"], ci, strict=True):
        assert shown[0][0] == c and shown[1][0] == "label"
        assert close(shown[2][1], want_ci) and close(shown[3][1], want_dpl)
    db.close()


def test_help_loads_no_dataframe_or_plotting_library() -> None:
    script = (
        "import sys\n"
        "from stream.cli import app\n"
        "for cmd in ('report', 'explore'):\n"
        "    try:\n"
        "        app([cmd, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = ('pandas', 'scipy', 'matplotlib', 'seaborn', 'duckdb', 'sklearn')\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", "import json\n" + script],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
