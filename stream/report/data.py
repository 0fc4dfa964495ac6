"""The report's numbers, aggregated in SQL (DuckDB) before anything reaches pandas.

Every query runs over the view ``r`` (one row per review) that :func:`lake_view` (the lake's
``reviews``, within a time span) or :func:`csv_view` (a training CSV) defines on a DuckDB
connection, with the columns:

``dt`` (the partition), ``id`` (review id), ``t`` (event time; all three NULL for a CSV),
``category``, ``channel``, ``text``, ``pred`` (the
model's sentiment -1/0/1; a CSV's label), ``truth`` (the sentiment of the star rating, 1-2
-> -1, 3 -> 0, 4-5 -> 1, or a CSV's label; NULL without one), ``rating``, ``p_negative``,
``p_neutral``, ``p_positive`` and ``confidence`` (NULL for a CSV).

The text is read twice, one ``dt`` partition at a time (one day's text in memory), once to
count words and characters into a narrow temporary table (``rn``, no text) that every other
aggregate reads, once to count terms (in a lake of more than :data:`TERM_REVIEWS` reviews,
over a sample of one review in ``k`` by review-id hash).
What comes back is one row per (time bucket, group) at most, and the monitors' reference: the
first ``baseline_events`` reviews, as the pipeline learns it when no baseline file is given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict

import duckdb
import numpy as np
import pyarrow as pa

from monitors.evaluation import PROB_GRID
from monitors.terms import STOPWORDS, TOKEN_PATTERN

if TYPE_CHECKING:
    import pandas as pd

    from monitors import Baseline

__all__ = [
    "FEATURE_COLUMNS",
    "STEPS",
    "TERM_REVIEWS",
    "ReportData",
    "Span",
    "csv_view",
    "lake_view",
    "read_csv_data",
    "read_lake_data",
    "term_sample",
    "time_grain",
]

#: What ``step`` is called with, in order, while a lake report reads (the progress bar's
#: total is their number).
STEPS: tuple[str, ...] = (
    "time span",
    "review features",
    "sentiment over time",
    "review lengths",
    "channel mix",
    "model confidence",
    "reference (first reviews)",
    "drift histograms",
    "prior estimates",
    "terms",
    "dead letters",
    "alerts",
)

#: Monitor feature -> column of ``rn`` (``oov_rate`` needs the model's vocabulary: left out).
FEATURE_COLUMNS: Mapping[str, str] = {
    "review_words": "words",
    "review_chars": "chars",
    "rating": "rating",
    "confidence": "confidence",
    "channel": "channel",
    "product_category": "category",
}

#: Terms are counted over at most about this many reviews (a sample by review-id hash).
TERM_REVIEWS = 200_000


@dataclass(frozen=True, slots=True)
class Span:
    """Reviews with ``since <= event time < until`` (either end open when None)."""

    since: datetime | None = None
    until: datetime | None = None

    def where(self, column: str, dt: bool = True) -> str:
        """A SQL condition on ``column`` (and on the ``dt`` partition, to skip directories)."""
        parts = ["true"]
        if self.since is not None:
            parts.append(f"{column} >= {_ts(self.since)}")
            if dt:
                parts.append(f"dt >= '{self.since.date().isoformat()}'")
        if self.until is not None:
            parts.append(f"{column} < {_ts(self.until)}")
            if dt:
                parts.append(f"dt <= '{self.until.date().isoformat()}'")
        return " and ".join(parts)


def _ts(t: datetime) -> str:
    return f"TIMESTAMPTZ '{t.isoformat()}'"


def time_grain(first: datetime, last: datetime) -> str:
    """The bucket of the time axes: hours up to three days, days up to 90, else weeks."""
    span = last - first
    if span <= timedelta(days=3):
        return "hour"
    if span <= timedelta(days=90):
        return "day"
    return "week"


@dataclass
class ReportData:
    """The aggregates a report is drawn from (small frames; see the module docstring).

    ``classes``: bucket, category, source (``predicted`` / ``rated``), cls, n.
    ``lengths``: cls, words (5-word bins), n; ``length_stats``: cls, n, median_words,
    mean_words, median_chars. ``channels``: bucket, channel, n. ``confidence``: cls, bin
    (1/50 wide), n. ``terms``: category, negative, term, n (only terms seen at least 3 times
    in some category's negative reviews); ``term_totals``: category, negative, tokens.
    ``histograms``: bucket -> feature -> (3, bins) counts after the reference.
    ``prob_cells``: bucket, i, j, n (the EM grid). ``dead``: bucket, reason, n.
    ``alerts``: the alerts whose windows meet the span."""

    source: str
    kind: str  # "lake" | "csv"
    grain: str | None
    n: int
    labelled: int
    first: datetime | None
    last: datetime | None
    classes: pd.DataFrame
    lengths: pd.DataFrame
    length_stats: pd.DataFrame
    channels: pd.DataFrame
    confidence: pd.DataFrame
    terms: pd.DataFrame
    term_totals: pd.DataFrame
    dead: pd.DataFrame
    alerts: pd.DataFrame
    baseline: Baseline | None = None
    reference_end: datetime | None = None
    histograms: dict[Any, dict[str, np.ndarray[Any, np.dtype[np.int64]]]] = field(
        default_factory=dict
    )
    prob_cells: pd.DataFrame | None = None
    #: terms come from one review in this many (1: every review)
    term_sample: int = 1


_SENTIMENT_OF_RATING = (
    "case when rating is null then null when rating <= 2 then -1 when rating = 3 then 0 else 1 end"
)


def lake_view(con: duckdb.DuckDBPyConnection, span: Span) -> None:
    """Define ``r`` over the lake's ``reviews`` within ``span``."""
    con.execute("set TimeZone = 'UTC'")
    con.execute(
        f"""
        create or replace temp view r as
        select dt, review_id as id, event_time as t, product_category as category, channel,
               review_text as text,
               sentiment::INTEGER as pred, ({_SENTIMENT_OF_RATING})::INTEGER as truth,
               rating::INTEGER as rating,
               p_negative::DOUBLE as p_negative, p_neutral::DOUBLE as p_neutral,
               p_positive::DOUBLE as p_positive,
               greatest(p_negative, p_neutral, p_positive)::DOUBLE as confidence
        from reviews where {span.where("event_time")}
        """
    )


def csv_view(con: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
    """Define ``r`` over a training CSV's rows (``table``: product_category, channel,
    review_text, sentiment (the label, -1/0/1 or null), rating)."""
    con.register("csv_reviews", table)
    con.execute(
        """
        create or replace temp view r as
        select NULL::VARCHAR as dt, NULL::VARCHAR as id, NULL::TIMESTAMPTZ as t,
               product_category as category, channel,
               review_text as text, sentiment::INTEGER as pred, sentiment::INTEGER as truth,
               rating::INTEGER as rating, NULL::DOUBLE as p_negative,
               NULL::DOUBLE as p_neutral, NULL::DOUBLE as p_positive, NULL::DOUBLE as confidence
        from csv_reviews where sentiment is not null
        """
    )


def _days(con: duckdb.DuckDBPyConnection) -> list[str | None]:
    """The ``dt`` partitions of ``r`` (``[None]`` for a CSV): the text is read one day at a
    time, so that only one day's text is in memory at once."""
    rows = con.execute("select distinct dt from r order by dt").fetchall()
    return [row[0] for row in rows] or [None]


def _by_day(day: str | None) -> str:
    return "true" if day is None else f"dt = '{day}'"


def _narrow(con: duckdb.DuckDBPyConnection, grain: str | None, days: Sequence[str | None]) -> None:
    bucket = f"date_trunc('{grain}', t)" if grain else "NULL::TIMESTAMPTZ"
    select = rf"""
        select t, {bucket} as b, category, channel, pred, truth, rating, p_negative,
               p_neutral, p_positive, confidence,
               len(regexp_extract_all(text, '\S+')) as words, length(text) as chars
        from r"""
    con.execute(f"create or replace temp table rn as {select} limit 0")
    for day in days:
        con.execute(f"insert into rn {select} where {_by_day(day)}")


def _df(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    frame: pd.DataFrame = con.execute(sql).df()
    return frame


def _classes(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return _df(
        con,
        """
        select b as bucket, category, 'predicted' as source, pred as cls, count(*) as n
        from rn group by all
        union all
        select b as bucket, category, 'rated' as source, truth as cls, count(*) as n
        from rn where truth is not null group by all
        """,
    )


def term_sample(n: int) -> int:
    """Terms are counted over one review in this many, by review-id hash, so that the
    tokenising stays bounded (about :data:`TERM_REVIEWS` reviews) whatever the lake holds."""
    return max(1, -(-n // TERM_REVIEWS))


def _terms(
    con: duckdb.DuckDBPyConnection, where: str, days: Sequence[str | None]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    stop = ", ".join("'" + w.replace("'", "''") + "'" for w in sorted(STOPWORDS))
    pattern = TOKEN_PATTERN.replace("'", "''")
    con.execute(
        "create or replace temp table term_days "
        "(category VARCHAR, negative BOOLEAN, term VARCHAR, n BIGINT)"
    )
    for day in days:
        con.execute(
            f"""
            insert into term_days
            select category, pred = -1 as negative, term, count(*) as n
            from (select category, pred,
                         unnest(regexp_extract_all(lower(text), '{pattern}')) as term
                  from r where {where} and {_by_day(day)})
            where length(term) >= 3 and term not in ({stop})
            group by all
            """
        )
    con.execute(
        """create or replace temp table term_counts as
           select category, negative, term, sum(n)::BIGINT as n from term_days group by all"""
    )
    con.execute("drop table term_days")
    totals = _df(
        con,
        "select category, negative, sum(n)::BIGINT as tokens from term_counts group by all",
    )
    terms = _df(
        con,
        """
        select c.category, c.negative, c.term, c.n from term_counts c
        semi join (select category, term from term_counts where negative and n >= 3) k
          on c.category = k.category and c.term = k.term
        """,
    )
    con.execute("drop table term_counts")
    return terms, totals


class _Common(TypedDict):
    """The aggregates a lake report and a training-CSV report share (ReportData's fields)."""

    classes: pd.DataFrame
    lengths: pd.DataFrame
    length_stats: pd.DataFrame
    channels: pd.DataFrame
    confidence: pd.DataFrame


def _common(con: duckdb.DuckDBPyConnection, step: Callable[[str], None]) -> _Common:
    step("sentiment over time")
    classes = _classes(con)
    step("review lengths")
    lengths = _df(
        con,
        "select pred as cls, (words // 5) * 5 as words, count(*) as n from rn group by all",
    )
    length_stats = _df(
        con,
        """select pred as cls, count(*) as n, median(words) as median_words,
                  avg(words) as mean_words, median(chars) as median_chars
           from rn group by all order by cls""",
    )
    step("channel mix")
    channels = _df(con, "select b as bucket, channel, count(*) as n from rn group by all")
    step("model confidence")
    confidence = _df(
        con,
        f"""select pred as cls, floor(confidence * {PROB_GRID}) / {PROB_GRID} as bin, count(*) as n
            from rn where confidence is not null group by all""",
    )
    return _Common(
        classes=classes,
        lengths=lengths,
        length_stats=length_stats,
        channels=channels,
        confidence=confidence,
    )


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({c: [] for c in columns})


def _reference(
    con: duckdb.DuckDBPyConnection, span: Span, events: int
) -> tuple[Baseline | None, datetime | None]:
    """The monitors' baseline learnt from the first ``events`` reviews of the span (the
    pipeline's default when no baseline file is given), and the time of the last of them."""
    from monitors import Baseline
    from monitors.features import extract
    from stream.events import ScoredBatch

    # the time of the last of them from the narrow table, so that the read below skips
    # every later day's files
    last = con.execute(
        f"select max(t) from (select t from rn order by t limit {int(events)})"
    ).fetchall()[0][0]
    if last is None:
        return None, None
    until = Span(span.since, last + timedelta(microseconds=1))
    first: pa.Table = con.sql(
        f"""select * from reviews where {until.where("event_time")}
            order by event_time, review_id limit {int(events)}"""
    ).to_arrow_table()
    if first.num_rows == 0:
        return None, None
    batch = ScoredBatch.from_table(first)
    baseline = Baseline.from_features(extract(batch, None))
    end = first.column("event_time")[-1].as_py()
    return baseline, end


def _histograms(
    con: duckdb.DuckDBPyConnection, baseline: Baseline, after: str
) -> dict[Any, dict[str, np.ndarray[Any, np.dtype[np.int64]]]]:
    """Per bucket after the reference, the (3, bins) counts of every baseline feature,
    binned as :class:`monitors.FeatureReference` bins (numeric: edges, values on an edge go
    right; categorical: its values, then one bin for anything unseen)."""
    out: dict[Any, dict[str, np.ndarray[Any, np.dtype[np.int64]]]] = {}
    for name, ref in baseline.features.items():
        column = FEATURE_COLUMNS.get(name)
        if column is None:
            continue
        if ref.kind == "numeric":
            terms = [f"({column}::DOUBLE >= {float(e)!r})::INTEGER" for e in ref.edges]
            bin_sql = " + ".join(terms) if terms else "0"
            rows = con.execute(
                f"""select b, pred + 1 as k, {bin_sql} as bin, count(*) as n from rn
                    where {after} and {column} is not null group by all"""
            ).fetchall()
            binned = [(b, int(k), int(i), int(n)) for b, k, i, n in rows]
        else:
            rows = con.execute(
                f"""select b, pred + 1 as k, {column} as v, count(*) as n from rn
                    where {after} group by all"""
            ).fetchall()
            index = {v: i for i, v in enumerate(ref.values)}
            binned = [(b, int(k), index.get(v, len(ref.values)), int(n)) for b, k, v, n in rows]
        for b, k, i, n in binned:
            per = out.setdefault(b, {})
            h = per.setdefault(name, np.zeros((3, ref.bins), dtype=np.int64))
            h[k, i] += n
    return out


def _prob_cells(con: duckdb.DuckDBPyConnection, after: str) -> pd.DataFrame:
    """Per bucket, reviews per cell of the monitors' EM probability grid (p_negative and
    p_neutral rounded half to even to 1/50, p_neutral capped so the three sum to 1)."""
    g = PROB_GRID
    return _df(
        con,
        f"""
        with c as (
          select b, least(greatest(round_even(p_negative * {g}, 0), 0), {g})::INTEGER as i,
                 least(greatest(round_even(p_neutral * {g}, 0), 0), {g})::INTEGER as j0
          from rn where {after})
        select b as bucket, i, least(j0, {g} - i) as j, count(*) as n from c group by all
        """,
    )


def read_lake_data(
    con: duckdb.DuckDBPyConnection,
    *,
    source: str,
    span: Span,
    baseline: Baseline | None,
    baseline_events: int,
    step: Callable[[str], None] = lambda _: None,
) -> ReportData:
    """Aggregate the lake behind ``con`` (views ``reviews``, ``dead_letters``, ``alerts``)
    within ``span``. ``baseline``: the monitors' reference (else learnt from the first
    ``baseline_events`` reviews). ``step`` is called with each of :data:`STEPS`."""
    lake_view(con, span)
    step("time span")
    n, labelled, first, last = con.execute(
        "select count(*), count(truth), min(t), max(t) from r"
    ).fetchall()[0]
    grain = time_grain(first, last) if first is not None and last is not None else "day"
    step("review features")
    days = _days(con)
    _narrow(con, grain, days)
    parts = _common(con, step)
    step("reference (first reviews)")
    reference_end: datetime | None = None
    if baseline is None and n:
        baseline, reference_end = _reference(con, span, baseline_events)
    after = "true" if reference_end is None else f"t > {_ts(reference_end)}"
    step("drift histograms")
    histograms = {} if baseline is None else _histograms(con, baseline, after)
    step("prior estimates")
    cells = _prob_cells(con, after)
    step("terms")
    sample = term_sample(int(n))
    terms, totals = _terms(con, "true" if sample == 1 else f"hash(id) % {sample} = 0", days)
    step("dead letters")
    dead_span = span.where("received_at")
    dead = _df(
        con,
        f"""select date_trunc('{grain}', received_at) as bucket, reason, count(*) as n
            from dead_letters where {dead_span} group by all""",
    )
    step("alerts")
    alert_where = ["true"]
    if span.since is not None:
        alert_where.append(f"window_end >= {_ts(span.since)}")
    if span.until is not None:
        alert_where.append(f"window_start < {_ts(span.until)}")
    alerts = _df(
        con,
        f"""select name, status, severity, category, window_start, window_end, raised_at,
                   summary
            from alerts where {" and ".join(alert_where)}
            order by window_end, name, category""",
    )
    return ReportData(
        source=source,
        kind="lake",
        **parts,
        grain=grain,
        n=int(n),
        labelled=int(labelled),
        first=first,
        last=last,
        terms=terms,
        term_totals=totals,
        dead=dead,
        alerts=alerts,
        baseline=baseline,
        reference_end=reference_end,
        histograms=histograms,
        prob_cells=cells,
        term_sample=sample,
    )


def read_csv_data(
    con: duckdb.DuckDBPyConnection,
    table: pa.Table,
    *,
    source: str,
    step: Callable[[str], None] = lambda _: None,
) -> ReportData:
    """Aggregate a training CSV's rows (see :func:`csv_view`) the same way."""
    csv_view(con, table)
    step("review features")
    _narrow(con, None, [None])
    n, labelled = con.execute("select count(*), count(truth) from rn").fetchall()[0]
    parts = _common(con, step)
    step("terms")
    terms, totals = _terms(con, "true", [None])
    return ReportData(
        source=source,
        kind="csv",
        **parts,
        grain=None,
        n=int(n),
        labelled=int(labelled),
        first=None,
        last=None,
        terms=terms,
        term_totals=totals,
        dead=_empty(["bucket", "reason", "n"]),
        alerts=_empty(["name", "status", "severity", "category", "window_start", "window_end"]),
    )
