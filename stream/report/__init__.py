"""Exploration reports: one self-contained HTML page of plots over the lake
(``sentiment-monitor report``) or over a training CSV (``sentiment-monitor explore``).

* :mod:`stream.report.data` aggregates in SQL (DuckDB) and hands back small frames: the
  report never holds one row per review, whatever the lake holds.
* :mod:`stream.report.sections` turns the aggregates into sections (a plot, a one-line
  reading, tables) with the monitors' own functions (Clarify bias metrics, drift tests, prior
  estimates, distinctive terms).
* :mod:`stream.report.page` renders the page: PNG plots inlined as ``data:`` URIs, no script,
  and a content security policy that forbids every request.

matplotlib, seaborn and pandas load only when a report is made, never at CLI start.
"""

__all__: list[str] = []
