"""``sentiment-monitor run`` prints what the data holds, never what it would make the terminal
do: categories that look like rich markup or carry ANSI escapes are shown as text, and the
closing summary is printed after the work is done (it used to crash on ``[/bold]``).

The summary names only the configured categories (the rest count as ``other``), so the run
is configured with these; unconfigured, they are ``other`` and never printed."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

CATEGORIES = {
    "[/bold]": "[/bold]",
    "[red]Dresses[/red]": "[red]Dresses[/red]",
    "Tops\x1b[2J\x1b[31m": "Tops\\x1b[2J\\x1b[31m",
    "Knits\u202etxt.exe": "Knits\\u202etxt.exe",
}
TEXTS = (
    (1, "love it, fits perfectly and the colour is great"),
    (-1, "cheap fabric, seams came apart, returned it"),
    (0, "it is ok, nothing special"),
)


def _run(tmp_path: Path, **env: str) -> str:
    """``run`` over a CSV holding every category of :data:`CATEGORIES`; its output."""
    data = tmp_path / "reviews.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["sentiment", "review_body", "product_category"])
        for category in CATEGORIES:
            for _ in range(5):
                for sentiment, text in TEXTS:
                    writer.writerow([sentiment, text, category])
    command = [
        sys.executable, "-m", "stream", "run", "--data", str(data),
        "--lake", str(tmp_path / "lake"), "--alerts", str(tmp_path / "alerts.jsonl"),
        "--metrics-port", "0", "--no-progress",
    ]  # fmt: skip
    proc = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "PYTHONPATH": str(ROOT), **env},
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "\x1b" not in output and "\u202e" not in output
    assert "Run summary" in output
    return output


def test_summary_shows_markup_and_escapes_in_categories_as_text(tmp_path: Path) -> None:
    output = _run(tmp_path, SENTIMENT_CATEGORIES=json.dumps(list(CATEGORIES)))
    lake = ds.dataset(tmp_path / "lake" / "reviews", format="parquet", partitioning="hive")
    stored = set(lake.to_table(columns=["product_category"]).column(0).to_pylist())
    assert stored, output
    for category in stored:
        assert CATEGORIES[category] in output, (category, output)
    assert "categories outside SENTIMENT_CATEGORIES" not in output


def test_categories_outside_the_list_are_summed_as_other(tmp_path: Path) -> None:
    output = _run(tmp_path)  # the default list: none of these categories
    for shown in CATEGORIES.values():
        assert shown not in output, (shown, output)
    assert "other: categories outside SENTIMENT_CATEGORIES" in output
    [row] = [line for line in output.splitlines() if line.startswith("│ other ")]
    # 3 categories x 15 reviews (the one with control characters makes dead letters)
    assert row.split("│")[2].strip() == "45", row
