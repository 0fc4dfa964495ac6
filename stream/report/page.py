"""The report page: sections of plots, readings and tables, as one self-contained HTML file.

Plots are PNGs inlined as ``data:`` URIs; the page has no script, no external reference, and
a ``Content-Security-Policy`` that lets it load nothing but its own inline images and style.
Every number in a table cell carries its exact value in ``data-value`` (the text shows it
rounded), so a check can compare the page with a query.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["CSP", "Cell", "Section", "Table", "num", "pct", "png", "render", "text"]

#: Nothing may be fetched: images only from data: URIs, style only inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass(frozen=True, slots=True)
class Cell:
    """A table cell: its text, and for a number the exact value."""

    text: str
    value: float | int | None = None


def text(value: object) -> Cell:
    return Cell("" if value is None else str(value))


def num(value: float | int, digits: int = 3) -> Cell:
    """A number: integers with thousands separators, floats to ``digits`` places."""
    if isinstance(value, int):
        return Cell(f"{value:,}", value)
    if math.isnan(value):
        return Cell("n/a", value)
    return Cell(f"{value:.{digits}f}", value)


def pct(value: float) -> Cell:
    return Cell("n/a" if math.isnan(value) else f"{value:.1%}", value)


@dataclass(frozen=True)
class Table:
    """A named table (``data-table`` on the page)."""

    name: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Cell]]


@dataclass(frozen=True)
class Section:
    """A report section: a title, a one-line reading, plots (PNG bytes) and tables."""

    title: str
    reading: str
    images: Sequence[bytes] = ()
    tables: Sequence[Table] = field(default_factory=tuple)


def png(fig: Figure, dpi: int = 72) -> bytes:
    """The figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
p.reading { font-style: italic; color: #333; }
p.meta { color: #666; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 2px 8px; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; }
"""


def _value(value: float | int) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return repr(value)


def _table(t: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
    rows = []
    for row in t.rows:
        cells = []
        for c in row:
            if c.value is None:
                cells.append(f"<td>{html.escape(c.text)}</td>")
            else:
                cells.append(
                    f'<td class="n" data-value="{_value(c.value)}">{html.escape(c.text)}</td>'
                )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table data-table="{html.escape(t.name)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def render(title: str, meta: str, sections: Sequence[Section]) -> str:
    """The whole page."""
    body = [f"<h1>{html.escape(title)}</h1>", f'<p class="meta">{html.escape(meta)}</p>']
    for s in sections:
        body.append(f"<section><h2>{html.escape(s.title)}</h2>")
        body.append(f'<p class="reading">{html.escape(s.reading)}</p>')
        for image in s.images:
            data = base64.b64encode(image).decode("ascii")
            body.append(f'<img alt="{html.escape(s.title)}" src="data:image/png;base64,{data}">')
        body.extend(_table(t) for t in s.tables)
        body.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
