"""Batch features: the Arrow path equals the row path, and the OOV rate counts the model's
own tokens."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from endpoint.inference import default_model_dir
from endpoint.model import DEFAULT_WORD_PATTERN, SentimentModel
from monitors import MonitorConfig, MonitorSuite
from monitors.features import (
    MODEL_WORD_PATTERN,
    extract,
    model_tokens,
    oov_rate,
    partitions,
    text_features,
)
from monitors.simulate import DEFAULT_CATEGORIES, StreamSpec, batches, make_review, synthetic_stream
from stream.events import ScoredBatch, ScoredReview, SourcePosition, scored_table

T0 = datetime(2024, 3, 1, tzinfo=UTC)
VOCAB = frozenset(
    {"love", "this", "dress", "café", "fits", "x1", "_a", "a", "i"}
)  # one-letter terms: no model token has one letter


def test_the_word_pattern_is_the_models() -> None:
    assert MODEL_WORD_PATTERN == DEFAULT_WORD_PATTERN
    model = SentimentModel.load(default_model_dir())
    text = "I LOVE this Dress -- it's perfect; naïve café, size 10, x_y!"
    assert model_tokens(text) == model.tokenize(text)


def test_oov_rate_counts_tokens_outside_the_vocabulary() -> None:
    texts = ["Love this dress!", "I love it", "café x1 _a ok", "a b", ""]
    f = text_features(texts, VOCAB)
    assert model_tokens("I love it") == ["love", "it"]
    expected = [0.0, 0.5, 0.25, float("nan"), float("nan")]
    np.testing.assert_array_equal(f.oov, expected)
    assert f.words.tolist() == [3.0, 3.0, 4.0, 2.0, 0.0]
    assert f.chars.tolist() == [16.0, 9.0, 13.0, 3.0, 0.0]


_TEXT = (
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)
    | st.text(alphabet=st.characters(max_codepoint=127), max_size=60)
    | st.lists(
        st.sampled_from(["love", "Dress", "café", " ", "\u00a0", "\t", "--", "x1", "İ", "ß", "_"]),
        max_size=12,
    ).map("".join)
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(texts=st.lists(_TEXT, max_size=8))
def test_text_features_follow_the_definitions(texts: list[str]) -> None:
    f = text_features(texts, VOCAB)
    assert f.words.tolist() == [float(len(t.split())) for t in texts]
    assert f.chars.tolist() == [float(len(t)) for t in texts]
    tokens = [re.findall(DEFAULT_WORD_PATTERN, t.lower()) for t in texts]
    assert [model_tokens(t) for t in texts] == tokens
    expected = [oov_rate(tok, VOCAB) for tok in tokens]
    np.testing.assert_array_equal(f.oov, expected)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(texts=st.lists(_TEXT, max_size=8), pad=st.integers(0, 3))
def test_text_features_of_an_arrow_column_equal_the_definitions(texts: list[str], pad: int) -> None:
    """The bytes of a column are measured where they lie: a slice of a longer array (its
    offsets start past zero), chunks, large strings and string views give the definitions."""
    longer = pa.array(["Pad text, x1!"] * pad + texts + ["café tail"], pa.string())
    half = len(texts) // 2
    columns = [
        longer.slice(pad, len(texts)),
        pa.chunked_array([longer.slice(pad, half), longer.slice(pad + half, len(texts) - half)]),
        longer.slice(pad, len(texts)).cast(pa.large_string()),
        longer.slice(pad, len(texts)).cast(pa.string_view()),
    ]
    expected = [oov_rate(model_tokens(t), VOCAB) for t in texts]
    for column in columns:
        f = text_features(texts, VOCAB, column)
        assert f.words.tolist() == [float(len(t.split())) for t in texts], column.type
        assert f.chars.tolist() == [float(len(t)) for t in texts], column.type
        np.testing.assert_array_equal(f.oov, expected, err_msg=str(column.type))
        np.testing.assert_array_equal(text_features(texts, None, column).oov, np.nan)


def test_texts_that_are_not_utf8_do_not_raise() -> None:
    texts = ["love \ud800 dress", "fine"]
    f = text_features(texts, VOCAB)
    assert f.words.tolist() == [3.0, 1.0]
    np.testing.assert_array_equal(f.oov, [0.0, 1.0])


def _rows() -> list[ScoredReview]:
    rows = synthetic_stream(StreamSpec(events=300, seed=4))
    rows[5] = make_review(5, time=T0, text="Love  this\u00a0café, x1!", rating=2, sentiment=-1)
    return rows


def test_extract_from_a_table_equals_extract_from_rows() -> None:
    batch = ScoredBatch.from_table(scored_table(_rows()))
    rows = list(batch)  # the same values, float32 probabilities included
    for all_tokens in (True, False):
        a = extract(rows, VOCAB, all_tokens=all_tokens)
        b = extract(batch, VOCAB, all_tokens=all_tokens)
        for name in a.__slots__:
            x, y = getattr(a, name), getattr(b, name)
            if isinstance(x, np.ndarray):
                np.testing.assert_array_equal(x, y, err_msg=name)
            else:
                assert x == y, name
    assert sum(1 for t in extract(batch, VOCAB, all_tokens=False).tokens if t) == sum(
        1 for r in rows if r.sentiment == -1
    )


def test_partitions_of_rows_and_of_a_table_agree() -> None:
    rows = [
        replace(r, position=SourcePosition("kafka", "reviews", str(i % 3), i))
        for i, r in enumerate(_rows())
    ]
    codes, names = partitions(rows)
    tcodes, tnames = partitions(ScoredBatch.from_table(scored_table(rows)))
    assert names == tnames == ["kafka/reviews/0", "kafka/reviews/1", "kafka/reviews/2"]
    assert codes.tolist() == tcodes.tolist() == [i % 3 for i in range(len(rows))]


@pytest.mark.parametrize("vocabulary", [None, VOCAB])
def test_suite_on_columns_equals_suite_on_rows(vocabulary: frozenset[str] | None) -> None:
    spec = StreamSpec(
        events=9000, seed=21, change_at=6000, category_priors_after={"Dresses": (0.6, 0.15, 0.25)}
    )
    tables = [ScoredBatch.from_table(scored_table(b)) for b in batches(synthetic_stream(spec), 250)]
    config = MonitorConfig(categories=DEFAULT_CATEGORIES)
    by_rows, by_columns = (
        MonitorSuite(config, vocabulary=vocabulary),
        MonitorSuite(config, vocabulary=vocabulary),
    )
    a, b = [], []
    for t in tables:
        now = T0 + timedelta(days=1)
        a += by_rows.observe(list(t), now)
        b += by_columns.observe(t, now)
    assert [x.to_json_dict() for x in a] == [x.to_json_dict() for x in b]
    assert [x.name for x in b if x.status == "firing"] == ["SentimentShift"]
    assert json.dumps(by_rows.state()) == json.dumps(by_columns.state())


def test_a_column_whose_bytes_are_not_utf8_is_measured_text_by_text() -> None:
    texts = ["love x1", "fine"]
    column = pa.array([b"love x1", b"\xff"], pa.binary())  # does not cast to strings
    f = text_features(texts, VOCAB, column)
    assert f.words.tolist() == [2.0, 1.0] and f.chars.tolist() == [7.0, 4.0]
    np.testing.assert_array_equal(f.oov, [0.0, 1.0])
