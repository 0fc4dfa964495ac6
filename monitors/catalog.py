"""The shop both synthetic generators simulate: its product categories and class mix.

:mod:`monitors.simulate` (scored reviews as arrays, for the monitors' tests and benchmarks) and
:mod:`stream.synthetic` (the records a producer publishes, for demos and end-to-end tests)
draw from these; nothing here imports numpy or scipy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["CATEGORY_WEIGHTS", "DEFAULT_CATEGORIES", "STEADY_MIX"]

#: Share of each product category in the stream: real shops sell far more dresses than
#: leggings, flattened here so that every category sees enough reviews to be monitored.
CATEGORY_WEIGHTS: Final[Mapping[str, float]] = {
    "Dresses": 0.14,
    "Knits": 0.11,
    "Blouses": 0.09,
    "Sweaters": 0.07,
    "Pants": 0.06,
    "Jeans": 0.06,
    "Fine gauge": 0.05,
    "Skirts": 0.05,
    "Jackets": 0.04,
    "Outerwear": 0.04,
    "Shorts": 0.04,
    "Lounge": 0.04,
    "Swim": 0.04,
    "Sleep": 0.03,
    "Trend": 0.03,
    "Legwear": 0.03,
    "Intimates": 0.02,
    "Layering": 0.02,
}

#: The 18 product categories, in :data:`CATEGORY_WEIGHTS` order.
DEFAULT_CATEGORIES: Final[tuple[str, ...]] = tuple(CATEGORY_WEIGHTS)

#: The stationary (negative, neutral, positive) mix of true sentiment.
STEADY_MIX: Final[tuple[float, float, float]] = (0.20, 0.20, 0.60)
