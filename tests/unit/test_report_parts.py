"""The report's pure parts: time spans as SQL, the time grain, the term sample, the page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from stream.report.data import TERM_REVIEWS, Span, term_sample, time_grain
from stream.report.page import CSP, Cell, Section, Table, num, pct, render

T = datetime(2026, 3, 4, 12, tzinfo=UTC)


def test_span_as_sql() -> None:
    assert Span().where("event_time") == "true"
    assert Span(T, T + timedelta(days=2)).where("event_time") == (
        "true and event_time >= TIMESTAMPTZ '2026-03-04T12:00:00+00:00'"
        " and dt >= '2026-03-04'"
        " and event_time < TIMESTAMPTZ '2026-03-06T12:00:00+00:00' and dt <= '2026-03-06'"
    )
    assert Span(until=T).where("received_at", dt=False) == (
        "true and received_at < TIMESTAMPTZ '2026-03-04T12:00:00+00:00'"
    )


def test_span_selects_half_open_interval() -> None:
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute(
        "create table x as select TIMESTAMPTZ '2026-03-04 11:00:00+00' + i * interval 1 hour"
        " as event_time, strftime(event_time, '%Y-%m-%d') as dt from range(5) t(i)"
    )
    span = Span(T, T + timedelta(hours=2))
    rows = con.execute(f"select count(*) from x where {span.where('event_time')}").fetchone()
    assert rows == (2,)  # 12:00 and 13:00, not 14:00


@pytest.mark.parametrize(
    ("span", "grain"),
    [(timedelta(hours=5), "hour"), (timedelta(days=3), "hour"), (timedelta(days=3, seconds=1), "day"),
     (timedelta(days=90), "day"), (timedelta(days=91), "week")],
)  # fmt: skip
def test_time_grain(span: timedelta, grain: str) -> None:
    assert time_grain(T, T + span) == grain


def test_term_sample_bounds_the_reviews_tokenised() -> None:
    assert term_sample(0) == 1
    assert term_sample(TERM_REVIEWS) == 1
    assert term_sample(TERM_REVIEWS + 1) == 2
    assert term_sample(1_000_000) == 5


def test_cells_keep_the_exact_value() -> None:
    assert num(1234) == Cell("1,234", 1234)
    assert num(0.123456) == Cell("0.123", 0.123456)
    assert num(2.5, 1) == Cell("2.5", 2.5)
    assert pct(0.2345) == Cell("23.4%", 0.2345)
    assert pct(float("nan")).text == "n/a"


def test_page_is_self_contained_and_escaped() -> None:
    section = Section(
        "A <b> title",
        "reading & more",
        [b"\x89PNG fake"],
        [Table("t", ["name", "n"], [[Cell("<x>"), num(0.5)]])],
    )
    page = render("Report", "meta", [section])
    assert f'content="{CSP}"' in page
    assert "A &lt;b&gt; title" in page and "reading &amp; more" in page
    assert '<td>&lt;x&gt;</td><td class="n" data-value="0.5">0.500</td>' in page
    assert 'src="data:image/png;base64,iVBORyBmYWtl"' in page
    assert not re.search(r"(src|href)=\"(?!data:)", page)
    assert "http:" not in page and "https:" not in page
