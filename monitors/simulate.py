"""Seeded synthetic streams of scored reviews with known change points (tests, benchmarks).

Pure: a stream is a list of :class:`stream.events.ScoredReview` built from a numpy generator.
Each review's true class is drawn from the priors in force (per category, possibly changing at
``change_at``); the model is right with probability ``accuracy`` and otherwise picks one of the
two other classes; the text mixes class words with filler words, its length drawn from a
lognormal distribution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from monitors.catalog import DEFAULT_CATEGORIES, STEADY_MIX
from stream.events import CHANNELS, ReviewEvent, ScoredReview, SourcePosition

__all__ = ["DEFAULT_CATEGORIES", "StreamSpec", "batches", "make_review", "synthetic_stream"]

_WORDS = {
    -1: ("returned", "disappointed", "cheap", "poor", "itchy", "ripped", "awful", "refund"),
    0: ("okay", "fine", "average", "decent", "alright", "mixed", "meh", "so-so"),
    1: ("love", "perfect", "gorgeous", "comfortable", "great", "flattering", "soft", "beautiful"),
}
_FILLER = ("fabric", "size", "color", "fit", "wear", "ordered", "store", "length", "waist", "top")
_T0 = datetime(2024, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class StreamSpec:
    """What a synthetic stream looks like before and after ``change_at`` (event index).

    ``priors``: true class shares (negative, neutral, positive); ``category_priors``
    overrides them per category; ``*_after`` apply from ``change_at`` on (None: unchanged).
    ``words_mean``: mean text length in words; ``channels``: channel shares in
    :data:`stream.events.CHANNELS` order.
    """

    events: int
    seed: int = 0
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    #: category shares (None: uniform)
    category_weights: tuple[float, ...] | None = None
    priors: tuple[float, float, float] = STEADY_MIX
    category_priors: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)
    change_at: int | None = None
    priors_after: tuple[float, float, float] | None = None
    category_priors_after: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)
    accuracy: float = 0.85
    words_mean: float = 40.0
    words_mean_after: float | None = None
    channels: tuple[float, ...] = (0.4, 0.3, 0.1, 0.05, 0.05, 0.05, 0.05)
    channels_after: tuple[float, ...] | None = None
    spacing: timedelta = timedelta(seconds=3)
    rating_share: float = 0.5
    start: datetime = _T0


def make_review(
    i: int,
    *,
    time: datetime,
    category: str = "Dresses",
    sentiment: int = 1,
    text: str = "love it",
    channel: str = "web",
    rating: int | None = None,
    probabilities: tuple[float, float, float] | None = None,
    review_id: str | None = None,
) -> ScoredReview:
    """One scored review (probabilities default to 0.8 on the predicted class)."""
    if probabilities is None:
        probabilities = tuple(0.8 if k == sentiment else 0.1 for k in (-1, 0, 1))  # type: ignore[assignment]
    assert probabilities is not None  # noqa: S101 - narrowed above
    event = ReviewEvent(
        review_id=review_id or f"r{i}",
        product_id=f"p{i % 97}",
        product_category=category,
        review_text=text,
        channel=channel,
        event_time=time,
        rating=rating,
    )
    return ScoredReview(
        event=event,
        sentiment=sentiment,
        p_negative=probabilities[0],
        p_neutral=probabilities[1],
        p_positive=probabilities[2],
        model_name="synthetic",
        model_version="1",
        scored_at=time,
        endpoint_latency_ms=1.0,
        position=SourcePosition("replay", "synthetic", "0", i),
    )


def _rating_of(true: int, u: float) -> int:
    if true == -1:
        return 1 if u < 0.5 else 2
    return 3 if true == 0 else (4 if u < 0.4 else 5)


def _draws(spec: StreamSpec, change: int) -> dict[str, Any]:
    """Every per-event random draw of ``spec``, in the generator's fixed order."""
    rng = np.random.default_rng(spec.seed)
    n = spec.events
    if spec.category_weights is None:
        cats = rng.integers(0, len(spec.categories), size=n)
    else:
        w = np.asarray(spec.category_weights, dtype=np.float64)
        cats = rng.choice(len(spec.categories), size=n, p=w / w.sum())
    out: dict[str, Any] = {"cats": cats}
    out["u"], out["err"] = rng.random(n), rng.random(n)
    out["other"] = rng.integers(1, 3, size=n)
    out["conf"], out["ur"] = rng.beta(6, 2, size=n), rng.random(n)
    out["has_rating"] = rng.random(n) < spec.rating_share
    words_after = spec.words_mean if spec.words_mean_after is None else spec.words_mean_after
    lengths = np.where(
        np.arange(n) < change,
        rng.lognormal(np.log(spec.words_mean) - 0.125, 0.5, size=n),
        rng.lognormal(np.log(words_after) - 0.125, 0.5, size=n),
    )
    out["lengths"] = np.maximum(1, np.round(lengths)).astype(int)
    out["channel_draw"] = rng.random(n)
    return out


def _priors_of(spec: StreamSpec, category: str, after: bool) -> tuple[float, float, float]:
    if after:
        return spec.category_priors_after.get(
            category, spec.priors_after or spec.category_priors.get(category, spec.priors)
        )
    return spec.category_priors.get(category, spec.priors)


def synthetic_stream(spec: StreamSpec) -> list[ScoredReview]:
    """The reviews of ``spec``, in event-time order (``spacing`` apart)."""
    n = spec.events
    change = n if spec.change_at is None else spec.change_at
    d = _draws(spec, change)
    ch_before = np.asarray(spec.channels) / np.sum(spec.channels)
    ch_after = ch_before if spec.channels_after is None else np.asarray(spec.channels_after)
    ch_after = ch_after / ch_after.sum()
    word_rng = np.random.default_rng(spec.seed + 1)
    out: list[ScoredReview] = []
    for i in range(n):
        cat = spec.categories[int(d["cats"][i])]
        after = i >= change
        cum = np.cumsum(_priors_of(spec, cat, after))
        true = min(int(np.searchsorted(cum / cum[-1], d["u"][i], side="right")) - 1, 1)
        pred = true if d["err"][i] < spec.accuracy else (true + 1 + int(d["other"][i])) % 3 - 1
        p_top = float(0.34 + 0.66 * d["conf"][i])
        probs = [(1 - p_top) / 2] * 3
        probs[pred + 1] = p_top
        k = int(d["lengths"][i])
        n_class = max(1, k // 5)
        words = list(word_rng.choice(_WORDS[true], size=n_class)) + list(
            word_rng.choice(_FILLER, size=k - n_class)
        )
        ch = ch_after if after else ch_before
        channel = CHANNELS[min(int(np.searchsorted(np.cumsum(ch), d["channel_draw"][i])), 6)]
        rating = _rating_of(true, float(d["ur"][i])) if d["has_rating"][i] else None
        out.append(
            make_review(
                i,
                time=spec.start + spec.spacing * i,
                category=cat,
                sentiment=pred,
                text=" ".join(words),
                channel=channel,
                rating=rating,
                probabilities=(probs[0], probs[1], probs[2]),
            )
        )
    return out


def batches(reviews: Sequence[ScoredReview], size: int) -> list[Sequence[ScoredReview]]:
    """``reviews`` cut into consecutive batches of ``size``."""
    return [reviews[i : i + size] for i in range(0, len(reviews), size)]
