"""The model's word tokens of many texts at once, from the bytes of an Arrow string column.

scikit-learn's default ``token_pattern`` ``(?u)\\b\\w\\w+\\b`` finds the maximal runs of two
or more word characters. On ASCII text a character is a byte and ``\\w`` is ``[A-Za-z0-9_]``,
so the runs come from byte masks over the column's data buffer, a batch at a time, with no
Python object per token. Texts with other characters are left to the caller (Python's
``re`` knows Unicode's word characters; the ``ascii_rows`` mask says which texts are covered).

The scorer (:mod:`endpoint.model`) and the monitors' out-of-vocabulary rate
(:mod:`monitors.features`) both tokenise this way. pyarrow is optional here: the model
container installs numpy only, and there :func:`available` is False and callers keep to ``re``.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "WordIds",
    "ascii_lower",
    "ascii_texts",
    "ascii_word",
    "ascii_word_ids",
    "available",
    "column_bytes",
    "lookup",
    "per_text",
    "to_column",
    "value_set",
]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
_U8 = np.uint8


def available() -> bool:
    """Whether pyarrow is installed (the vectorised path needs its string arrays)."""
    return importlib.util.find_spec("pyarrow") is not None


def ascii_word(raw: npt.NDArray[np.uint8]) -> BoolArray:
    """Which bytes are ASCII word characters (``\\w``: letters, digits, ``_``). Comparisons
    on wrapping bytes: several times faster than a lookup table."""
    out: BoolArray = (
        ((raw | _U8(32)) - _U8(97) <= _U8(25)) | (raw - _U8(48) <= _U8(9)) | (raw == _U8(95))
    )
    return out


def ascii_lower(raw: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """ASCII upper-case letters lower-cased (``str.lower`` on ASCII text)."""
    upper = raw - _U8(65) <= _U8(25)
    lowered: npt.NDArray[np.uint8] = raw | (upper.view(np.uint8) << _U8(5))
    return lowered


class WordIds(NamedTuple):
    """The word tokens of a column's ASCII texts, in text order, as indices in a value set."""

    ascii_rows: BoolArray  #: which texts are ASCII (only their tokens are below)
    rows: IntArray  #: the text of each token (ascending)
    ids: IntArray  #: each token's index in the value set, -1 where it is not there


def column_bytes(column: pa.Array) -> tuple[npt.NDArray[np.uint8], IntArray, IntArray]:
    """A string column's data bytes and each text's ``begin`` and ``end`` in them."""
    import pyarrow as pa

    n = len(column)
    _, offset_buffer, data = column.buffers()
    width = np.int64 if pa.types.is_large_string(column.type) else np.int32
    at = column.offset * np.dtype(width).itemsize
    offsets: IntArray = np.frombuffer(offset_buffer, width, n + 1, at).astype(np.int64)
    lo, hi = int(offsets[0]), int(offsets[-1])
    raw = np.frombuffer(data, np.uint8, hi - lo, lo) if hi > lo else np.zeros(0, np.uint8)
    return raw, offsets[:-1] - lo, offsets[1:] - lo


def per_text(positions: IntArray, begin: IntArray, end: IntArray) -> IntArray:
    """How many of these (sorted) byte positions fall in each text (``begin``, ``end``)."""
    out: IntArray = np.searchsorted(positions, end) - np.searchsorted(positions, begin)
    return out


def ascii_texts(raw: npt.NDArray[np.uint8], begin: IntArray, end: IntArray) -> BoolArray:
    """Which texts (``begin``, ``end`` in ``raw``) have only ASCII bytes."""
    out: BoolArray = per_text(np.flatnonzero(raw >= 128), begin, end) == 0
    return out


def ascii_word_ids(
    column: pa.Array, values: pa.Array, *, lowercase: bool = True, min_len: int = 2
) -> WordIds:
    """The runs of at least ``min_len`` word bytes of each ASCII text of ``column`` (a string
    or large-string array without nulls), ``re.findall(r"(?u)\\b\\w\\w+\\b", text)`` for
    ``min_len=2`` (on ``text.lower()`` when ``lowercase``), as their indices in ``values``
    (:func:`value_set`)."""
    import pyarrow as pa

    raw, begin, end = column_bytes(column)
    ascii_rows = ascii_texts(raw, begin, end)
    word = ascii_word(raw)  # a non-ASCII byte is not one: its text is left out below
    first = np.zeros(len(raw), np.bool_)
    first[begin[end > begin]] = True  # each text's first byte: no run goes on across texts
    starts = word & (np.concatenate(([False], ~word[:-1])) | first)
    kept = raw[word]  # the word bytes alone, end to end
    if lowercase:
        kept = ascii_lower(kept)
    bounds = np.append(np.flatnonzero(starts[word]), len(kept))
    large = len(kept) >= 2**31  # offsets past int32: Arrow's large strings
    runs = (pa.LargeStringArray if large else pa.StringArray).from_buffers(
        len(bounds) - 1,
        pa.py_buffer(bounds.astype(np.int64 if large else np.int32)),
        pa.py_buffer(kept),
    )
    ids = lookup(runs, values)  # every run (fewer copies than leaving the short ones out first)
    rows = np.repeat(
        np.arange(len(begin), dtype=np.int64), per_text(np.flatnonzero(starts), begin, end)
    )
    wanted = (np.diff(bounds) >= min_len) & ascii_rows[rows]
    return WordIds(ascii_rows, rows[wanted], ids[wanted])


def to_column(texts: Any) -> pa.Array | None:
    """``texts`` (a sequence of str) as an Arrow string column; None where Arrow cannot hold
    them in one (a lone surrogate has no UTF-8; past 2 GiB of text pyarrow returns chunks)."""
    import pyarrow as pa

    try:
        column = pa.array(texts, pa.string())
    except (pa.ArrowException, UnicodeError):
        return None
    return column if isinstance(column, pa.Array) else None


def value_set(terms: Any) -> pa.Array:
    """``terms`` (a sequence of str) as the value set of :func:`lookup`."""
    import pyarrow as pa

    return pa.array(terms, pa.string())


def lookup(tokens: pa.Array, values: pa.Array) -> IntArray:
    """Each token's index in ``values`` (:func:`value_set`), -1 where it is not there: one
    hash lookup a token, in Arrow."""
    import pyarrow.compute as pc

    found = pc.index_in(tokens, value_set=values).fill_null(-1)
    out: IntArray = found.to_numpy(zero_copy_only=False).astype(np.int64)
    return out
