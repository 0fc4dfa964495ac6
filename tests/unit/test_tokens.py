"""The vectorised word tokens (endpoint.tokens) against Python's ``re``, and the model's
features with them against the features ``re`` alone gives."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from endpoint import tokens
from endpoint.model import DEFAULT_WORD_PATTERN, FeatureBlock

WORD = re.compile(DEFAULT_WORD_PATTERN)

#: ASCII-heavy texts with the characters that decide a token's bounds, and now and then
#: a letter, digit, mark or space outside ASCII, a control byte or a lone surrogate
_CHARS = st.one_of(
    st.sampled_from(list("aZ_9 \t\n'-.x")),
    st.sampled_from(["é", "ß", "İ", "\u0301", "٣", "\u00a0", "\x00", "\x7f", "😀", "\ud800"]),
)
TEXTS = st.lists(st.text(_CHARS, max_size=40), max_size=30)


def _by_row(texts: list[str], column: pa.Array, lowercase: bool = True) -> list[list[str | None]]:
    """Each text's tokens by :func:`tokens.ascii_word_ids`, looked up in the set of every
    token ``re`` finds in ``texts`` (plus one that is in none): a token ``re`` does not find
    comes back as None."""
    terms = sorted({t for x in texts for t in WORD.findall(x.lower() if lowercase else x)})
    terms.append("not-a-token")
    found = tokens.ascii_word_ids(column, tokens.value_set(terms), lowercase=lowercase)
    assert np.all(np.diff(found.rows) >= 0)
    out: list[list[str | None]] = [[] for _ in range(len(column))]
    for row, i in zip(found.rows.tolist(), found.ids.tolist(), strict=True):
        out[row].append(terms[i] if i >= 0 else None)
    return out


@settings(max_examples=300, deadline=None)
@given(TEXTS, st.booleans())
def test_ascii_texts_give_the_tokens_re_gives(texts: list[str], lowercase: bool) -> None:
    column = tokens.to_column(texts)
    if column is None:  # a lone surrogate: Arrow holds no such text
        assert any("\ud800" in t for t in texts)
        return
    found = tokens.ascii_word_ids(column, tokens.value_set([]), lowercase=lowercase)
    assert found.ascii_rows.tolist() == [t.isascii() for t in texts]
    assert set(found.ids.tolist()) <= {-1}
    got = _by_row(texts, column, lowercase)
    for text, row in zip(texts, got, strict=True):
        expected = WORD.findall(text.lower() if lowercase else text) if text.isascii() else []
        assert row == expected, text


def test_slices_and_large_strings_are_read_from_their_own_bytes() -> None:
    texts = ["skip me", "Runs SMALL, returned it", "", "a b cd", "ok_ok 42x"]
    expected = [WORD.findall(t.lower()) for t in texts[1:]]
    for column in (
        pa.array(texts, pa.string()).slice(1),
        pa.array(texts, pa.large_string()).slice(1),
    ):
        assert _by_row(texts[1:], column) == expected


def test_lookup_gives_the_index_in_the_value_set_or_minus_one() -> None:
    values = tokens.value_set(["fit", "small", "runs"])
    got = tokens.lookup(pa.array(["runs", "big", "fit", "fit"]), values)
    assert got.tolist() == [2, -1, 0, 0]
    assert got.dtype == np.int64


@pytest.mark.parametrize("ngrams", [(1, 1), (1, 2)])
@settings(max_examples=150, deadline=None)
@given(texts=TEXTS)
def test_model_features_are_the_same_with_or_without_the_byte_tokens(
    ngrams: tuple[int, int], texts: list[str]
) -> None:
    terms = ("zz", "ax", "a_", "99", "ax zz", "zz ax", "é9", "x9 ax")
    vector = FeatureBlock(terms=terms, ngram_range=ngrams)
    plain = FeatureBlock(terms=terms, ngram_range=ngrams)
    object.__setattr__(plain, "_vector", False)
    assert vector._vector  # pyarrow is installed here: the byte path is the one tested
    for got, expected in zip(vector.transform(texts), plain.transform(texts), strict=True):
        assert np.array_equal(got, expected)
