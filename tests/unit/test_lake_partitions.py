"""Partition directory names: bounded, escaped where Hive would misread them, distinct for
distinct values, and the exact value read back through the query layer."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
from hypothesis import given
from hypothesis import strategies as st

from sinks.lake import (
    MAX_PARTITION_VALUE_BYTES,
    OTHER_CATEGORY_DIRECTORY,
    LakeSink,
    LocalLakeWriter,
    partition_dir_value,
    partition_value,
)
from sinks.query import DuckDBLake
from stream.events import Batch, ScoredReview
from tests.lake_rows import scored_review

HOSTILE = [
    "Fine gauge",
    "é" * 300,  # 600 bytes of UTF-8, 1,800 quoted: ENAMETOOLONG and an S3 key over 1,024
    "x" * 120,
    "x" * 121,
    "__HIVE_DEFAULT_PARTITION__",
    "__hive_default_partition__",
    "",
    ".",
    "..",
    "a/b",
    "../../etc",
    "a~b",
    "%7E",
    "Dresses",
    "DRESSES",
    "tab\there",
]


def review(offset: int, category: str) -> ScoredReview:
    return scored_review(offset, category)


def test_ordinary_values_keep_their_quoted_names() -> None:
    assert partition_dir_value("Fine gauge") == "Fine%20gauge"
    assert partition_dir_value("Dresses") == "Dresses"
    assert partition_dir_value("a/b") == "a%2Fb"
    assert partition_dir_value("..") == "%2E%2E"  # never a path's parent, even alone
    assert partition_dir_value("a~b") == "a%7Eb"
    assert partition_dir_value("x" * 120) == "x" * 120
    for value in ("Fine gauge", "a/b", "a~b", "..", "x" * 120):
        assert partition_value(partition_dir_value(value)) == value


def test_long_empty_and_hive_null_values_get_a_prefix_and_a_hash() -> None:
    long = partition_dir_value("x" * 121)
    assert long == "x" * 103 + "~" + long[-16:]
    assert len(long) == MAX_PARTITION_VALUE_BYTES
    assert partition_dir_value("") == "~" + partition_dir_value("")[1:]
    assert len(partition_dir_value("")) == 17
    hive_null = partition_dir_value("__HIVE_DEFAULT_PARTITION__")
    assert hive_null.startswith("__HIVE_DEFAULT_PARTITION__~")
    assert partition_dir_value("__hive_default_partition__").startswith("__hive_default_")
    # a prefix never ends inside a %XX escape
    accents = partition_dir_value("é" * 300)
    assert accents.split("~")[0].endswith("%A9")
    assert (partition_dir_value("."), partition_dir_value("..")) == ("%2E", "%2E%2E")
    assert partition_value("%2E") == "." and partition_dir_value("%2E") == "%252E"
    for value in ("x" * 121, "", "__HIVE_DEFAULT_PARTITION__", "é" * 300):
        assert partition_value(partition_dir_value(value)) is None


@given(st.text(), st.text())
def test_names_are_bounded_safe_and_distinct(a: str, b: str) -> None:
    name = partition_dir_value(a)
    assert name.isascii() and "/" not in name and name not in ("", ".", "..")
    assert len(name.encode()) <= MAX_PARTITION_VALUE_BYTES
    assert name.upper() != "__HIVE_DEFAULT_PARTITION__"
    assert partition_value(name) in (a, None)
    if a != b:
        assert name != partition_dir_value(b)


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400))
def test_a_prefix_stays_distinct_from_every_ordinary_name(value: str) -> None:
    # an ordinary value never looks like a shortened one
    name = partition_dir_value(value)
    assert ("~" in name) == (partition_value(name) is None)


async def test_hostile_categories_are_written_and_read_back_exactly(tmp_path: Path) -> None:
    sink = LakeSink(LocalLakeWriter(tmp_path))
    rows = [review(i, c) for i, c in enumerate(HOSTILE)]
    await sink.write(Batch(scored=rows, dead=[], positions={}))
    await sink.close()
    names = sorted(p.parent.name for p in (tmp_path / "reviews").rglob("*.parquet"))
    assert len(set(names)) == len(HOSTILE)
    assert all(len(n.encode()) <= len("product_category=") + 120 for n in names)
    got = DuckDBLake(str(tmp_path)).query(
        "SELECT review_id, product_category FROM reviews ORDER BY review_id"
    )
    expected = sorted((f"r-{i}", c) for i, c in enumerate(HOSTILE))
    assert sorted(zip(*got.to_pydict().values(), strict=True)) == expected
    one = DuckDBLake(str(tmp_path)).query(
        "SELECT review_id FROM reviews WHERE product_category = '__HIVE_DEFAULT_PARTITION__'"
    )
    assert one.column("review_id").to_pylist() == ["r-4"]
    # pyarrow reading the files alone (no partitioning) agrees
    table = ds.dataset(tmp_path / "reviews", format="parquet").to_table()
    assert sorted(table.column("product_category").to_pylist()) == sorted(HOSTILE)


async def test_categories_outside_the_list_share_one_directory(tmp_path: Path) -> None:
    """Given the configured categories, every other category's reviews go to one directory
    (one file per source partition, not one per value: a producer sending a new category a
    review made a directory, a file and a catalog partition a review); each keeps its value
    in the files, so queries read it back exactly."""
    sink = LakeSink(LocalLakeWriter(tmp_path), categories=("Dresses", "Knits"))
    categories = ["Dresses" if i % 4 == 0 else f"unlisted {i}" for i in range(60)]
    categories += ["u1", "u2"] * 10  # interleaved: both under one mark of one directory
    categories += HOSTILE
    rows = [review(i, c) for i, c in enumerate(categories)]
    for first in range(0, len(rows), 25):
        chunk = rows[first : first + 25]
        await sink.write(Batch(scored=chunk, dead=[], positions={}))
    await sink.close()
    files = sorted(p.relative_to(tmp_path).parent for p in tmp_path.rglob("*.parquet"))
    assert [f.name for f in files] == ["product_category=Dresses", "product_category=~other"]
    got = DuckDBLake(str(tmp_path)).query(
        "SELECT review_id, product_category FROM reviews ORDER BY review_id"
    )
    expected = sorted((f"r-{i}", c) for i, c in enumerate(categories))
    assert sorted(zip(*got.to_pydict().values(), strict=True)) == expected
    # the shared directory's catalog value; no value's own name is that directory's
    assert partition_value(OTHER_CATEGORY_DIRECTORY) == "other"
    assert partition_dir_value(OTHER_CATEGORY_DIRECTORY) == "%7Eother"
    assert OTHER_CATEGORY_DIRECTORY not in {partition_dir_value(c) for c in categories}
