"""Turn a micro-batch of scored reviews into column arrays, once per batch.

Everything downstream (windows, detectors, drift tests) works on these arrays. A batch comes
either as Arrow columns (``stream.events.ScoredBatch``: :func:`extract` reads its ``table``
without building a review object per row) or as a plain sequence of
:class:`~stream.events.ScoredReview` (read attribute by attribute). The per-text Python left is
the text features (length, the model's tokens for the out-of-vocabulary rate) and, for alert
evidence, tokenising the texts that need terms (predicted negatives once there is a baseline).

``oov_rate`` is the share of the model's own tokens (:data:`MODEL_WORD_PATTERN` on the
lower-cased text, as ``endpoint.model`` tokenises) that are not in its vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from endpoint.tokens import ascii_texts, ascii_word_ids, column_bytes, per_text
from monitors._stats import FloatArray, IntArray
from monitors.contributions import Explainer
from monitors.terms import tokenize
from monitors.windows import to_us
from stream.events import ScoredBatch, ScoredReview, sentiments_from_ratings, source_offsets

__all__ = [
    "CATEGORICAL_FEATURES",
    "FEATURES",
    "MODEL_WORD_PATTERN",
    "NUMERIC_FEATURES",
    "BatchFeatures",
    "ModelVocabulary",
    "TextFeatures",
    "concat",
    "extract",
    "features_from_state",
    "features_state",
    "model_tokens",
    "oov_rate",
    "partitions",
    "text_features",
    "true_classes",
]

#: Monitored numeric features (name -> meaning); the unit is in the name.
NUMERIC_FEATURES: dict[str, str] = {
    "review_words": "review length in words",
    "review_chars": "review length in characters",
    "rating": "star rating (labelled reviews only)",
    "oov_rate": "share of tokens outside the model's vocabulary",
    "confidence": "model confidence (largest class probability)",
}
#: Monitored categorical features.
CATEGORICAL_FEATURES: dict[str, str] = {
    "channel": "channel the review arrived through",
    "product_category": "product category mix",
}
FEATURES: tuple[str, ...] = (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES)

#: The model's word tokens: runs of two or more word characters of the lower-cased text
#: (scikit-learn's default ``token_pattern``, ``endpoint.model.DEFAULT_WORD_PATTERN``, which a
#: unit test keeps equal to this).
MODEL_WORD_PATTERN = r"(?u)\b\w\w+\b"
_MODEL_WORD = re.compile(MODEL_WORD_PATTERN)
#: ASCII characters that are not word characters, to spaces: on ASCII text, splitting the
#: translation on whitespace gives the word runs of :data:`MODEL_WORD_PATTERN`, several times
#: faster than the regex engine.
_ASCII_NON_WORD = str.maketrans(
    {c: " " for c in map(chr, range(128)) if not (c.isalnum() or c == "_")}
)


@dataclass(frozen=True, slots=True)
class BatchFeatures:
    """Column view of a batch. Class indices are ``sentiment + 1`` (0 negative, 1 neutral,
    2 positive); ``true`` is -1 and ``rating`` NaN without a rating; ``oov_rate`` is NaN
    without a vocabulary or tokens; ``tokens`` are the evidence tokens (empty for reviews
    that were not tokenised); ``texts`` the review texts and ``contributions`` each review's
    per-term contributions to the model's negative score (empty mappings for reviews that were
    not explained; both lists empty when unknown, e.g. restored from a state)."""

    review_ids: list[str]
    t_us: IntArray
    category: list[str]
    channel: list[str]
    predicted: IntArray
    true: IntArray
    probabilities: FloatArray
    review_words: FloatArray
    review_chars: FloatArray
    rating: FloatArray
    oov_rate: FloatArray
    confidence: FloatArray
    tokens: list[list[str]]
    texts: list[str] = field(default_factory=list)
    contributions: list[Mapping[str, float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.review_ids)

    def numeric(self, name: str) -> FloatArray:
        value: FloatArray = getattr(self, name)
        return value

    def categorical(self, name: str) -> list[str]:
        return self.channel if name == "channel" else self.category

    def take(self, mask: np.ndarray[tuple[int], np.dtype[np.bool_]]) -> BatchFeatures:
        """The events where ``mask`` is true."""
        idx = np.flatnonzero(mask)
        return BatchFeatures(
            review_ids=[self.review_ids[i] for i in idx],
            t_us=self.t_us[idx],
            category=[self.category[i] for i in idx],
            channel=[self.channel[i] for i in idx],
            predicted=self.predicted[idx],
            true=self.true[idx],
            probabilities=self.probabilities[idx],
            review_words=self.review_words[idx],
            review_chars=self.review_chars[idx],
            rating=self.rating[idx],
            oov_rate=self.oov_rate[idx],
            confidence=self.confidence[idx],
            tokens=[self.tokens[i] for i in idx],
            texts=[self.texts[i] for i in idx] if self.texts else [],
            contributions=[self.contributions[i] for i in idx] if self.contributions else [],
        )


# -- text ------------------------------------------------------------------------------------


def model_tokens(text: str) -> list[str]:
    """The model's word tokens of ``text`` (see :data:`MODEL_WORD_PATTERN`)."""
    low = text.lower()
    if low.isascii():
        return [w for w in low.translate(_ASCII_NON_WORD).split() if len(w) > 1]
    return _MODEL_WORD.findall(low)


def oov_rate(tokens: Sequence[str], vocabulary: Collection[str]) -> float:
    """Share of ``tokens`` not in ``vocabulary`` (NaN for no tokens)."""
    if not tokens:
        return float("nan")
    return sum(1 for t in tokens if t not in vocabulary) / len(tokens)


@dataclass(frozen=True, slots=True)
class TextFeatures:
    """Per-text numeric features: words (whitespace-separated, as ``str.split``), characters
    (code points) and the out-of-vocabulary rate of the model's tokens (NaN without a
    vocabulary or tokens)."""

    words: FloatArray
    chars: FloatArray
    oov: FloatArray


class ModelVocabulary:
    """The terms a model knows that one of its tokens can be (two characters or more), with a
    fast out-of-vocabulary rate. Build it once per vocabulary (:func:`extract` accepts either)."""

    __slots__ = ("_arrow", "_contains", "terms")

    def __init__(self, terms: Collection[str]) -> None:
        self.terms = frozenset(t for t in terms if len(t) > 1)
        self._contains = self.terms.__contains__
        self._arrow: pa.Array | None = None

    @property
    def arrow(self) -> pa.Array:
        """The terms as an Arrow string array (the value set of a vectorised lookup)."""
        if self._arrow is None:
            self._arrow = pa.array(sorted(self.terms), pa.string())
        return self._arrow

    def oov_rate(self, text: str) -> float:
        """``oov_rate(model_tokens(text), self.terms)``, counted without building the token
        list on ASCII text."""
        low = text.lower()
        if not low.isascii():
            return oov_rate(_MODEL_WORD.findall(low), self.terms)
        words = low.translate(_ASCII_NON_WORD).split()
        tokens = len(words) - list(map(len, words)).count(1)
        if not tokens:
            return float("nan")
        return (tokens - sum(map(self._contains, words))) / tokens


_U8 = np.uint8


def _ascii_space(raw: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """Which bytes are ASCII whitespace as ``str.split`` knows it (``\\x1c``-``\\x1f`` too).
    Comparisons on wrapping bytes: several times faster than a lookup table."""
    out: npt.NDArray[np.bool_] = (
        (raw == _U8(32)) | (raw - _U8(9) <= _U8(4)) | (raw - _U8(28) <= _U8(3))
    )
    return out


def text_features(
    texts: Sequence[str],
    vocabulary: ModelVocabulary | Collection[str] | None,
    column: pa.Array | pa.ChunkedArray | None = None,
) -> TextFeatures:
    """:class:`TextFeatures` of ``texts``. ``column``: the same texts as an Arrow string
    column, when the caller has one (a batch's table); the ASCII texts are then measured on
    its bytes, a batch at a time (:func:`_ascii_features`), and only the others one by one."""
    n = len(texts)
    vocab = (
        None
        if vocabulary is None
        else vocabulary
        if isinstance(vocabulary, ModelVocabulary)
        else ModelVocabulary(vocabulary)
    )
    if column is None:
        try:
            column = pa.array(texts, pa.string())
        except (pa.ArrowException, UnicodeError):  # lone surrogates: no UTF-8 for Arrow
            column = None
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column is not None and not (
        pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    ):
        try:  # another string layout (a view): offsets and bytes
            column = column.cast(pa.string())
        except (pa.ArrowException, ValueError):  # bytes that are not UTF-8: one by one
            column = None
    if column is None or len(column) != n or column.null_count:
        return _python_features(texts, vocab)
    ascii_rows, words, chars, oov = _ascii_features(column, vocab)
    for i in np.flatnonzero(~ascii_rows).tolist():
        text = texts[i]
        words[i], chars[i] = len(text.split()), len(text)
        oov[i] = np.nan if vocab is None else vocab.oov_rate(text)
    return TextFeatures(words, chars, oov)


def _python_features(texts: Sequence[str], vocab: ModelVocabulary | None) -> TextFeatures:
    """:func:`text_features`, one text at a time (texts Arrow cannot hold)."""
    n = len(texts)
    if vocab is None:
        oov = np.full(n, np.nan)
    else:
        oov = np.fromiter((vocab.oov_rate(t) for t in texts), np.float64, n)
    return TextFeatures(
        np.fromiter((len(t.split()) for t in texts), np.float64, n),
        np.fromiter((len(t) for t in texts), np.float64, n),
        oov,
    )


def _ascii_features(
    column: pa.Array, vocab: ModelVocabulary | None
) -> tuple[np.ndarray[Any, np.dtype[np.bool_]], FloatArray, FloatArray, FloatArray]:
    """Which texts of a string column are ASCII, and their words, characters and OOV rate
    (the other texts' entries are to be filled in by the caller). On ASCII text a byte is a
    character: word starts come from byte masks over the column's data buffer, and the model's
    tokens and their lookup in the vocabulary from :func:`endpoint.tokens.ascii_word_ids`."""
    n = len(column)
    raw, begin, end = column_bytes(column)
    first = np.zeros(len(raw), np.bool_)
    first[begin[end > begin]] = True  # each text's first byte
    space = _ascii_space(raw)
    after_space = np.concatenate(([True], space[:-1])) | first
    words = per_text(np.flatnonzero(~space & after_space), begin, end).astype(np.float64)
    chars = (end - begin).astype(np.float64)
    if vocab is None:
        return ascii_texts(raw, begin, end), words, chars, np.full(n, np.nan)
    found = ascii_word_ids(column, vocab.arrow)
    total = np.bincount(found.rows, minlength=n)
    inside = np.bincount(found.rows[found.ids >= 0], minlength=n)
    oov = np.where(total > 0, (total - inside) / np.maximum(total, 1), np.nan)
    return found.ascii_rows, words, chars, oov


def _evidence_tokens(
    texts: Sequence[str], wanted: np.ndarray[Any, np.dtype[np.bool_]]
) -> list[list[str]]:
    return [tokenize(t) if w else [] for t, w in zip(texts, wanted.tolist(), strict=True)]


# -- batches ---------------------------------------------------------------------------------


def true_classes(rating: FloatArray) -> IntArray:
    """The true class index (0/1/2: negative/neutral/positive) of each rating, -1 where
    there is none (NaN)."""
    return sentiments_from_ratings(rating, missing=-2) + 1


def _from_table(table: pa.Table) -> dict[str, Any]:
    """The plain columns of an Arrow batch (``SCORED_SCHEMA``)."""

    def np_col(name: str, dtype: Any) -> Any:
        col = table.column(name)
        if col.null_count:
            col = pc.fill_null(col.cast(pa.float64()), np.nan)
        return np.asarray(col.to_numpy(), dtype=dtype)

    probs = np.stack([np_col(c, np.float64) for c in ("p_negative", "p_neutral", "p_positive")], 1)
    cols = {
        "review_ids": table.column("review_id").to_pylist(),
        "t_us": np_col("event_time", np.int64) if table.num_rows else np.zeros(0, np.int64),
        "category": table.column("product_category").to_pylist(),
        "channel": table.column("channel").to_pylist(),
        "sentiment": np_col("sentiment", np.int64),
        "rating": np_col("rating", np.float64),
        "probabilities": probs.reshape(table.num_rows, 3),
        "texts": table.column("review_text").to_pylist(),
    }
    return cols


def _from_rows(batch: Sequence[ScoredReview]) -> dict[str, Any]:
    """The plain columns of a sequence of reviews."""
    n = len(batch)
    ratings = [s.event.rating for s in batch]
    return {
        "review_ids": [s.event.review_id for s in batch],
        "t_us": np.fromiter((to_us(s.event.event_time) for s in batch), dtype=np.int64, count=n),
        "category": [s.event.product_category for s in batch],
        "channel": [s.event.channel for s in batch],
        "sentiment": np.fromiter((s.sentiment for s in batch), dtype=np.int64, count=n),
        "rating": np.array([np.nan if r is None else float(r) for r in ratings], np.float64),
        "probabilities": np.array(
            [(s.p_negative, s.p_neutral, s.p_positive) for s in batch], dtype=np.float64
        ).reshape(n, 3),
        "texts": [s.event.review_text for s in batch],
    }


def extract(
    batch: Sequence[ScoredReview],
    vocabulary: ModelVocabulary | Collection[str] | None,
    *,
    all_tokens: bool = True,
    explainer: Explainer | None = None,
) -> BatchFeatures:
    """Columns of one batch (see :class:`BatchFeatures`); a ``ScoredBatch`` is read from its
    Arrow table. With ``all_tokens`` false, only predicted-negative reviews get evidence tokens:
    after the baseline, tokens serve only the evidence of negative-share alerts. With an
    ``explainer``, the predicted-negative reviews get their contributions (one call per
    batch)."""
    cols = _from_table(batch.table) if isinstance(batch, ScoredBatch) else _from_rows(batch)
    texts: list[str] = cols["texts"]
    predicted: IntArray = cols["sentiment"] + 1
    probs: FloatArray = cols["probabilities"]
    column = batch.table.column("review_text") if isinstance(batch, ScoredBatch) else None
    text = text_features(texts, vocabulary, column)
    return BatchFeatures(
        review_ids=cols["review_ids"],
        t_us=cols["t_us"],
        category=cols["category"],
        channel=cols["channel"],
        predicted=predicted,
        true=true_classes(cols["rating"]),
        probabilities=probs,
        review_words=text.words,
        review_chars=text.chars,
        rating=cols["rating"],
        oov_rate=text.oov,
        confidence=probs.max(axis=1) if len(texts) else np.zeros(0),
        tokens=_evidence_tokens(texts, np.full(len(texts), True) if all_tokens else predicted == 0),
        texts=texts,
        contributions=_negative_contributions(texts, predicted, explainer),
    )


def _negative_contributions(
    texts: list[str], predicted: IntArray, explainer: Explainer | None
) -> list[Mapping[str, float]]:
    """Per review, its contributions to the negative score (predicted negatives only)."""
    if explainer is None:
        return []
    out: list[Mapping[str, float]] = [{}] * len(texts)
    idx = np.flatnonzero(predicted == 0).tolist()
    if idx:
        rows = explainer([texts[i] for i in idx])
        if len(rows) != len(idx):
            raise ValueError(f"the explainer answered {len(rows)} of {len(idx)} texts")
        for i, row in zip(idx, rows, strict=True):
            out[i] = row
    return out


def partitions(batch: Sequence[ScoredReview]) -> tuple[IntArray, list[str]]:
    """Each event's source partition (``"source/stream/partition"`` of its position) as an
    index into the returned names, in order of first appearance."""
    if isinstance(batch, ScoredBatch):
        t = batch.table
        keys = pc.binary_join_element_wise(
            t.column("source"), t.column("source_stream"), t.column("source_partition"), "/"
        )
        codes = pc.dictionary_encode(keys).combine_chunks()
        return (
            np.asarray(codes.indices.to_numpy(zero_copy_only=False), dtype=np.int64),
            [str(k) for k in codes.dictionary.to_pylist()],
        )
    names: dict[str, int] = {}
    out = np.fromiter(
        (names.setdefault("/".join(s.position.key), len(names)) for s in batch),
        dtype=np.int64,
        count=len(batch),
    )
    return out, list(names)


def offsets(batch: Sequence[ScoredReview]) -> np.ndarray[tuple[int], np.dtype[Any]]:
    """Each event's source offset: int64, or Python ints where one does not fit."""
    if isinstance(batch, ScoredBatch):
        return source_offsets(batch.table)
    values = [s.position.offset for s in batch]
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError:
        return np.array(values, dtype=object)


def concat(parts: Sequence[BatchFeatures]) -> BatchFeatures:
    """One column view of several (in order)."""
    if len(parts) == 1:
        return parts[0]

    def cat_f(name: str) -> FloatArray:
        if not parts:
            return np.zeros(0)
        out: FloatArray = np.concatenate([getattr(p, name) for p in parts])
        return out

    def cat_i(name: str) -> IntArray:
        if not parts:
            return np.zeros(0, dtype=np.int64)
        out: IntArray = np.concatenate([getattr(p, name) for p in parts]).astype(np.int64)
        return out

    return BatchFeatures(
        review_ids=[x for p in parts for x in p.review_ids],
        t_us=cat_i("t_us"),
        category=[x for p in parts for x in p.category],
        channel=[x for p in parts for x in p.channel],
        predicted=cat_i("predicted"),
        true=cat_i("true"),
        probabilities=(
            np.concatenate([p.probabilities for p in parts]) if parts else np.zeros((0, 3))
        ),
        review_words=cat_f("review_words"),
        review_chars=cat_f("review_chars"),
        rating=cat_f("rating"),
        oov_rate=cat_f("oov_rate"),
        confidence=cat_f("confidence"),
        tokens=[x for p in parts for x in p.tokens],
        texts=(
            [x for p in parts for x in p.texts]
            if all(len(p.texts) == len(p) for p in parts)
            else []
        ),
        contributions=(
            [x for p in parts for x in p.contributions]
            if all(len(p.contributions) == len(p) for p in parts)
            else []
        ),
    )


def _json_floats(a: FloatArray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in a.tolist()]


def _floats(xs: Sequence[float | None]) -> FloatArray:
    return np.array([np.nan if v is None else float(v) for v in xs], dtype=np.float64)


def features_state(f: BatchFeatures) -> dict[str, object]:
    """A JSON-able dict of ``f`` without ids and tokens (NaN as null)."""
    return {
        "t_us": f.t_us.tolist(),
        "category": list(f.category),
        "channel": list(f.channel),
        "predicted": f.predicted.tolist(),
        "true": f.true.tolist(),
        "probabilities": f.probabilities.tolist(),
        "review_words": _json_floats(f.review_words),
        "review_chars": _json_floats(f.review_chars),
        "rating": _json_floats(f.rating),
        "oov_rate": _json_floats(f.oov_rate),
        "confidence": _json_floats(f.confidence),
    }


def features_from_state(d: Mapping[str, Any]) -> BatchFeatures:
    """The inverse of :func:`features_state` (ids are positions, tokens empty)."""
    n = len(d["predicted"])
    return BatchFeatures(
        review_ids=[str(i) for i in range(n)],
        t_us=np.asarray(d["t_us"], dtype=np.int64).reshape(n),
        category=[str(c) for c in d["category"]],
        channel=[str(c) for c in d["channel"]],
        predicted=np.asarray(d["predicted"], dtype=np.int64).reshape(n),
        true=np.asarray(d["true"], dtype=np.int64).reshape(n),
        probabilities=np.asarray(d["probabilities"], dtype=np.float64).reshape(n, 3),
        review_words=_floats(d["review_words"]),
        review_chars=_floats(d["review_chars"]),
        rating=_floats(d["rating"]),
        oov_rate=_floats(d["oov_rate"]),
        confidence=_floats(d["confidence"]),
        tokens=[[] for _ in range(n)],
    )
