"""Turn a micro-batch of scored reviews into column arrays, once per batch.

Everything downstream (windows, detectors, drift tests) works on these arrays; this is the
only per-event Python loop of the monitors (attribute access, ``len``, one regex per text).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitors._stats import FloatArray, IntArray
from monitors.terms import tokenize
from monitors.windows import to_us
from stream.events import ScoredReview

__all__ = [
    "CATEGORICAL_FEATURES",
    "FEATURES",
    "NUMERIC_FEATURES",
    "BatchFeatures",
    "concat",
    "extract",
    "features_from_state",
    "features_state",
    "oov_rate",
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


@dataclass(frozen=True, slots=True)
class BatchFeatures:
    """Column view of a batch. Class indices are ``sentiment + 1`` (0 negative, 1 neutral,
    2 positive); ``true`` is -1 and ``rating`` NaN without a rating; ``oov_rate`` is NaN
    without a vocabulary or tokens."""

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
        )


def oov_rate(tokens: Sequence[str], vocabulary: Collection[str]) -> float:
    """Share of ``tokens`` not in ``vocabulary`` (NaN for no tokens)."""
    if not tokens:
        return float("nan")
    return sum(1 for t in tokens if t not in vocabulary) / len(tokens)


def extract(
    batch: Sequence[ScoredReview],
    vocabulary: Collection[str] | None,
    *,
    all_tokens: bool = True,
) -> BatchFeatures:
    """Columns of one batch (see :class:`BatchFeatures`). With ``all_tokens`` false and no
    vocabulary, only predicted-negative reviews are tokenised (the others get no tokens):
    after the baseline, tokens serve only the evidence of negative-share alerts."""
    n = len(batch)
    t_us = np.fromiter((to_us(s.event.event_time) for s in batch), dtype=np.int64, count=n)
    predicted = np.fromiter((s.sentiment + 1 for s in batch), dtype=np.int64, count=n)
    ratings = [s.event.rating for s in batch]
    rating = np.array([np.nan if r is None else float(r) for r in ratings], dtype=np.float64)
    true = np.where(np.isnan(rating), -1, np.select([rating <= 2, rating == 3], [0, 1], 2)).astype(
        np.int64
    )
    probs = np.array(
        [(s.p_negative, s.p_neutral, s.p_positive) for s in batch], dtype=np.float64
    ).reshape(n, 3)
    texts = [s.event.review_text for s in batch]
    if all_tokens or vocabulary is not None:
        tokens = [tokenize(t) for t in texts]
    else:
        tokens = [
            tokenize(t) if s.sentiment == -1 else [] for t, s in zip(texts, batch, strict=True)
        ]
    if vocabulary is None:
        oov = np.full(n, np.nan)
    else:
        oov = np.array([oov_rate(tok, vocabulary) for tok in tokens], dtype=np.float64)
    return BatchFeatures(
        review_ids=[s.event.review_id for s in batch],
        t_us=t_us,
        category=[s.event.product_category for s in batch],
        channel=[s.event.channel for s in batch],
        predicted=predicted,
        true=true,
        probabilities=probs,
        review_words=np.array([len(t.split()) for t in texts], dtype=np.float64),
        review_chars=np.array([len(t) for t in texts], dtype=np.float64),
        rating=rating,
        oov_rate=oov,
        confidence=probs.max(axis=1) if n else np.zeros(0),
        tokens=tokens,
    )


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
